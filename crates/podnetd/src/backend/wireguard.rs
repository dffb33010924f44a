//! wireguard: a device per entry of `DEVICES` the mode wants, and on each
//! one peer per node. The device is the kernel's where it has WireGuard;
//! otherwise a userspace `wireguard-go`, which podnetd starts (and starts
//! again should it die), or adopts: after a restart of podnetd, or when it
//! runs beside podnetd (the DaemonSet's own container for it). Peers are
//! configured through one trait, [`Configure`], with two thin sides from
//! the wireguard-uapi crate: generic netlink for the kernel's device, the
//! UAPI socket for wireguard-go's. The private key lives in `--state-dir`.

mod configure;
mod host;
mod keys;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use ipnet::IpNet;
use podnet_core::cluster::backend::Decide;
use podnet_core::cluster::backend::wireguard::{
    DEVICES, Key, Peer, Peers, Wireguard, format_key, public_key,
};
use podnet_core::cluster::desired::{Datapath, family_index};
use podnet_core::cluster::lease::LeaseAttrs;
use podnet_linux::netlink::Netlink;

use super::{Apply, Node, Overlay};
use keys::{key_path, load_or_make_key, public_of, read_key};

/// This node's private key, in `--state-dir`.
pub const KEY_FILE: &str = "wireguard.key";
/// Where wireguard-go opens its UAPI sockets (fixed when it is built).
pub const SOCKET_DIR: &str = "/var/run/wireguard";
/// The wireguard-go podnetd may start: a path, or `off` when it runs
/// beside podnetd instead (default: `wireguard-go` from `PATH`).
pub const USERSPACE_ENV: &str = "PODNET_WIREGUARD_GO";
/// How long a started wireguard-go has to open its socket.
const START_CAP: Duration = Duration::from_secs(5);

/// A device as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec<'a> {
    pub name: &'a str,
    pub private_key: Key,
    pub port: u16,
    /// Its net-conf field, for an error about the port.
    pub port_field: &'static str,
    pub mtu: u32,
    /// The node subnets whose network address the device holds.
    pub subnets: Vec<IpNet>,
}

/// A peer as a device holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    pub key: Key,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub keepalive: u16,
    pub psk: Option<Key>,
}

/// One change to a device's peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOp {
    /// Add the peer, or make it this (its allowed IPs replaced).
    Set(PeerState),
    Remove(Key),
}

/// The WireGuard devices as the agent sees them.
pub trait Tunnels {
    /// Makes, adopts or repairs `spec`'s device (its key, port, MTU,
    /// addresses, up); returns its index.
    fn ensure_tunnel(&mut self, spec: &DeviceSpec<'_>) -> Result<u32>;
    fn tunnel_peers(&mut self, device: &str) -> Result<Vec<PeerState>>;
    fn apply_tunnel(&mut self, device: &str, ops: &[PeerOp]) -> Result<()>;
}

impl<K: Tunnels> Apply<K> for Wireguard {
    fn identity(&self, node: &Node) -> Result<Option<String>> {
        let key = load_or_make_key(&node.state_dir)?;
        Ok(Some(format_key(&public_of(&key))))
    }

    fn ensure_devices(
        &self,
        k: &mut K,
        me: &LeaseAttrs,
        node: &Node,
        subnets: &[IpNet],
    ) -> Result<Overlay> {
        let path = key_path(&node.state_dir);
        let private_key = read_key(&path)?.ok_or_else(|| {
            anyhow!(
                "{} is gone: restart podnetd to make and announce a new key",
                path.display()
            )
        })?;
        let announced = [true, false].into_iter().find_map(|v4| public_key(me, v4));
        if announced != Some(public_of(&private_key)) {
            bail!(
                "the key in {} is not the one this node's lease announces: restart podnetd to announce it",
                path.display()
            );
        }
        let mut overlay = Overlay::default();
        for (device, name) in DEVICES.iter().enumerate() {
            let own: Vec<IpNet> = subnets
                .iter()
                .filter(|s| self.device_of(s.addr().is_ipv4()) == device)
                .copied()
                .collect();
            let Some(overhead) = own.iter().map(|s| self.overhead(s.addr().is_ipv4())).max() else {
                continue;
            };
            let spec = DeviceSpec {
                name,
                private_key,
                port: self.port_of(device),
                port_field: if device == 1 {
                    "ListenPortV6"
                } else {
                    "ListenPort"
                },
                mtu: node.mtu.saturating_sub(overhead),
                subnets: own.clone(),
            };
            let index = k.ensure_tunnel(&spec)?;
            for s in own {
                overlay[family_index(s.addr().is_ipv4())] = Some(index);
            }
        }
        Ok(overlay)
    }

    fn reconcile_entries(&self, k: &mut K, overlay: &Overlay, want: &Datapath) -> Result<usize> {
        let none = Peers::default();
        let want = want.objects::<Peers>().unwrap_or(&none);
        let (mut changed, mut first_error) = (0, None);
        for (device, name) in DEVICES.iter().enumerate() {
            let present = [true, false]
                .into_iter()
                .any(|v4| self.device_of(v4) == device && overlay[family_index(v4)].is_some());
            if !present {
                continue;
            }
            let result = k.tunnel_peers(name).and_then(|have| {
                let ops = plan(&want.devices[device], self, &have);
                k.apply_tunnel(name, &ops).map(|()| ops.len())
            });
            match result {
                Ok(n) => changed += n,
                Err(e) => {
                    first_error.get_or_insert(e.context(format!("peers of {name}")));
                }
            }
        }
        first_error.map_or(Ok(changed), Err)
    }

    fn unwatched(&self) -> bool {
        true
    }
}

/// What to change on a device so that it holds exactly the peers wanted,
/// each with the cluster's keepalive and pre-shared key.
pub fn plan(want: &BTreeMap<Key, Peer>, settings: &Wireguard, have: &[PeerState]) -> Vec<PeerOp> {
    let have: BTreeMap<Key, &PeerState> = have.iter().map(|p| (p.key, p)).collect();
    let mut ops: Vec<PeerOp> = want
        .iter()
        .map(|(key, p)| PeerState {
            key: *key,
            endpoint: Some(p.endpoint),
            allowed_ips: p.allowed_ips.iter().copied().collect(),
            keepalive: settings.keepalive(),
            psk: settings.psk(),
        })
        .filter(|p| have.get(&p.key) != Some(&p))
        .map(PeerOp::Set)
        .collect();
    ops.extend(
        have.keys()
            .filter(|k| !want.contains_key(*k))
            .map(|k| PeerOp::Remove(*k)),
    );
    ops
}

/// Where a device comes from, when it has to be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Kernel,
    Userspace(PathBuf),
}

/// The kernel's device if it has one, else wireguard-go if podnetd may
/// start one; else an error that says what is missing.
pub fn source(kernel: bool, userspace: Option<PathBuf>, device: &str) -> Result<Source> {
    match (kernel, userspace) {
        (true, _) => Ok(Source::Kernel),
        (false, Some(path)) => Ok(Source::Userspace(path)),
        (false, None) => bail!(
            "no WireGuard for {device}: this kernel has none (CONFIG_WIREGUARD, Linux 5.6 and \
             later), podnetd may start no wireguard-go ({USERSPACE_ENV}, else `wireguard-go` on \
             PATH), and none serves {SOCKET_DIR}/{device}.sock"
        ),
    }
}

/// The wireguard-go podnetd may start, from [`USERSPACE_ENV`] and `PATH`.
fn userspace_binary() -> Option<PathBuf> {
    match std::env::var_os(USERSPACE_ENV) {
        Some(v) if v == "off" => None,
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("wireguard-go"))
                .find(|p| p.is_file())
        }),
    }
}

/// Removes both devices with their peers; a wireguard-go exits once its
/// device is gone.
pub fn cleanup(nl: &mut Netlink) -> Result<()> {
    for name in DEVICES {
        if let Some(link) = nl.link(name)? {
            nl.delete_link(link.index)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
