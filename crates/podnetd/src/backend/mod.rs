//! Each backend's own part of the node: its devices (made, adopted and
//! repaired at every reconcile) and its per-peer entries. What a backend
//! wants is decided in `podnet_core::cluster::backend`; this applies it.
//! Adding a backend: a module here, a line in [`of`] and in [`cleanup`].

pub mod host_gw;
pub mod vxlan;

use anyhow::Result;
use ipnet::IpNet;
use podnet_core::cluster::backend::Backend;
use podnet_core::cluster::desired::Datapath;
use podnet_core::cluster::lease::LeaseAttrs;
use podnet_linux::netlink::Netlink;

use crate::kernel::Kernel;

/// The overlay device of each family (index 0 IPv4, 1 IPv6), if the
/// backend has one there.
pub type Overlay = [Option<u32>; 2];

/// This node's underlay: what a backend's devices sit on.
#[derive(Debug, Clone)]
pub struct Underlay {
    /// The link holding each family's underlay address.
    pub links: [Option<u32>; 2],
    /// The IPv4 uplink's MTU.
    pub mtu: u32,
}

/// A backend's devices and entries, on any kernel `K`.
pub trait Apply<K> {
    /// Makes, adopts or repairs its devices for this node's `subnets`;
    /// cheap when they are as wanted, so it runs at every reconcile.
    fn ensure_devices(
        &self,
        k: &mut K,
        me: &LeaseAttrs,
        underlay: &Underlay,
        subnets: &[IpNet],
    ) -> Result<Overlay>;

    /// Makes its per-peer entries match `want`; returns how many changed.
    fn reconcile_entries(&self, k: &mut K, overlay: &Overlay, want: &Datapath) -> Result<usize>;
}

/// The backend's apply half.
pub fn of<K: Kernel>(backend: &Backend) -> &dyn Apply<K> {
    match backend {
        Backend::HostGw(b) => b,
        Backend::Vxlan(b) => b,
    }
}

/// `--cleanup`: every backend's devices, whichever the cluster runs (its
/// net-conf may be gone by then).
pub fn cleanup(nl: &mut Netlink) -> Result<()> {
    vxlan::cleanup(nl)
}
