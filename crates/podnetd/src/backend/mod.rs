//! Each backend's own part of the node: its devices (made, adopted and
//! repaired at every reconcile), its per-peer entries, its public
//! identity, and its clean-up. What a backend wants is decided in
//! `podnet_core::cluster::backend`; this applies it. Adding a backend: its
//! module here, and its line in the [`registry!`] call.

pub mod host_gw;
pub mod vxlan;
pub mod wireguard;

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use ipnet::IpNet;
use podnet_core::cluster::backend::Backend;
use podnet_core::cluster::desired::Datapath;
use podnet_core::cluster::lease::LeaseAttrs;
use podnet_linux::netlink::{Link, Netlink};

/// The overlay device of each family (index 0 IPv4, 1 IPv6), if the
/// backend has one there.
pub type Overlay = [Option<u32>; 2];

/// This node as its backend sees it: the underlay its devices sit on, and
/// where it keeps state.
#[derive(Debug, Clone)]
pub struct Node {
    /// The link holding each family's underlay address.
    pub links: [Option<u32>; 2],
    /// The IPv4 uplink's MTU.
    pub mtu: u32,
    /// `--state-dir`: what must outlive a reboot (WireGuard's key).
    pub state_dir: PathBuf,
}

/// A backend's devices and entries, on any kernel `K`.
pub trait Apply<K> {
    /// Makes or loads the public identity its peers need (WireGuard's
    /// public key), for its lease data. Called once, at start.
    fn identity(&self, _node: &Node) -> Result<Option<String>> {
        Ok(None)
    }

    /// Makes, adopts or repairs its devices for this node's `subnets`;
    /// cheap when they are as wanted, so it runs at every reconcile.
    fn ensure_devices(
        &self,
        k: &mut K,
        me: &LeaseAttrs,
        node: &Node,
        subnets: &[IpNet],
    ) -> Result<Overlay>;

    /// Makes its per-peer entries match `want`; returns how many changed.
    fn reconcile_entries(&self, k: &mut K, overlay: &Overlay, want: &Datapath) -> Result<usize>;

    /// Whether the kernel monitor cannot see its entries change
    /// (WireGuard's peers raise no notification): they are then read and
    /// repaired at every resync, not only at a full reconcile.
    fn unwatched(&self) -> bool {
        false
    }
}

/// Declares every backend's apply half, each by its module here and its
/// settings type in the core's module of the same name: [`Backends`],
/// which finds a backend's half for a kernel that every half can work on,
/// and [`cleanup`], which runs every backend's.
macro_rules! registry {
    ($($module:ident :: $settings:ident),+ $(,)?) => {
        /// A kernel every backend's apply half works on.
        pub trait Backends: Sized {
            /// The apply half of `backend`.
            fn apply_of(backend: &Backend) -> Result<&dyn Apply<Self>>;
        }

        impl<K> Backends for K
        where
            $(podnet_core::cluster::backend::$module::$settings: Apply<K>,)+
        {
            fn apply_of(backend: &Backend) -> Result<&dyn Apply<K>> {
                $(if let Some(b) =
                    backend.settings::<podnet_core::cluster::backend::$module::$settings>()
                {
                    return Ok(b);
                })+
                Err(anyhow!("backend {} has no apply half in this podnetd", backend.type_name()))
            }
        }

        /// `--cleanup`: every backend's devices, whichever the cluster
        /// runs (its net-conf may be gone by then).
        pub fn cleanup(nl: &mut Netlink) -> Result<()> {
            $($module::cleanup(nl)?;)+
            Ok(())
        }
    };
}

registry!(host_gw::HostGw, vxlan::Vxlan, wireguard::Wireguard);

/// The node subnet's network address on an overlay device, and the device
/// up: the node's own source address towards other nodes' pods.
pub fn ensure_address(nl: &mut Netlink, link: &Link, subnet: IpNet) -> Result<()> {
    let host = if subnet.addr().is_ipv4() { 32 } else { 128 };
    let addr = IpNet::new(subnet.network(), host)?;
    if !nl.addresses(link.index)?.contains(&addr) {
        nl.add_address(link.index, addr)?;
    }
    if !link.up {
        nl.set_up(link.index)?;
    }
    Ok(())
}
