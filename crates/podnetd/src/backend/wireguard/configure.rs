//! One device's configuration through one trait, [`Configure`], with two
//! thin sides from the wireguard-uapi crate: generic netlink for the
//! kernel's device, the UAPI socket for wireguard-go's.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use ipnet::IpNet;
use podnet_core::cluster::backend::wireguard::Key;
use podnet_linux::netlink::{Link, Netlink};
use wireguard_uapi::{DeviceInterface, WgSocket, get, linux, xplatform};

use super::{PeerOp, PeerState, SOCKET_DIR};

/// One device's configuration, whichever side holds it.
pub(super) trait Configure {
    fn get(&mut self) -> Result<get::Device>;
    fn set_device(&mut self, private_key: &Key, port: u16) -> Result<()>;
    fn set_peers(&mut self, ops: &[PeerOp]) -> Result<()>;
}

/// The kernel's device, over generic netlink.
struct KernelDevice(String);

/// wireguard-go's device, over its UAPI socket.
pub(super) struct UserspaceDevice(pub(super) xplatform::Client<PathBuf>);

pub(super) fn socket_path(device: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{device}.sock"))
}

impl Configure for KernelDevice {
    fn get(&mut self) -> Result<get::Device> {
        Ok(WgSocket::connect()?.get_device(DeviceInterface::from_name(self.0.as_str()))?)
    }

    fn set_device(&mut self, private_key: &Key, port: u16) -> Result<()> {
        let device = linux::set::Device::from_ifname(self.0.as_str())
            .private_key(private_key)
            .listen_port(port);
        Ok(WgSocket::connect()?.set_device(device)?)
    }

    fn set_peers(&mut self, ops: &[PeerOp]) -> Result<()> {
        let allowed: Vec<Vec<std::net::IpAddr>> = ops
            .iter()
            .map(|op| match op {
                PeerOp::Set(p) => p.allowed_ips.iter().map(IpNet::network).collect(),
                PeerOp::Remove(_) => Vec::new(),
            })
            .collect();
        let peers = ops
            .iter()
            .zip(&allowed)
            .map(|(op, addrs)| match op {
                PeerOp::Set(p) => {
                    let mut peer = linux::set::Peer::from_public_key(&p.key)
                        .flags(vec![linux::set::WgPeerF::ReplaceAllowedIps])
                        .persistent_keepalive_interval(p.keepalive)
                        .allowed_ips(
                            p.allowed_ips
                                .iter()
                                .zip(addrs)
                                .map(|(net, addr)| linux::set::AllowedIp {
                                    ipaddr: addr,
                                    cidr_mask: Some(net.prefix_len()),
                                })
                                .collect(),
                        );
                    if let Some(endpoint) = &p.endpoint {
                        peer = peer.endpoint(endpoint);
                    }
                    peer.preshared_key(p.psk.as_ref().unwrap_or(&ZERO_KEY))
                }
                PeerOp::Remove(key) => linux::set::Peer::from_public_key(key)
                    .flags(vec![linux::set::WgPeerF::RemoveMe]),
            })
            .collect();
        let device = linux::set::Device::from_ifname(self.0.as_str()).peers(peers);
        Ok(WgSocket::connect()?.set_device(device)?)
    }
}

/// "No pre-shared key", as both sides write it.
const ZERO_KEY: Key = [0; 32];

impl Configure for UserspaceDevice {
    fn get(&mut self) -> Result<get::Device> {
        Ok(self.0.get()?)
    }

    fn set_device(&mut self, private_key: &Key, port: u16) -> Result<()> {
        let device = xplatform::set::Device {
            private_key: Some(*private_key),
            listen_port: Some(port),
            ..Default::default()
        };
        Ok(self.0.set(device)?)
    }

    fn set_peers(&mut self, ops: &[PeerOp]) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let peers = ops
            .iter()
            .map(|op| match op {
                PeerOp::Set(p) => {
                    let mut peer = xplatform::set::Peer::from_public_key(p.key)
                        .replace_allowed_ips(true)
                        .persistent_keepalive_interval(p.keepalive)
                        .preshared_key(p.psk.unwrap_or(ZERO_KEY))
                        .allowed_ips(
                            p.allowed_ips
                                .iter()
                                .map(|net| xplatform::set::AllowedIp {
                                    ipaddr: net.network(),
                                    cidr_mask: net.prefix_len(),
                                })
                                .collect(),
                        );
                    if let Some(endpoint) = p.endpoint {
                        peer = peer.endpoint(endpoint);
                    }
                    peer
                }
                PeerOp::Remove(key) => xplatform::set::Peer::from_public_key(*key).remove(true),
            })
            .collect();
        let device = xplatform::set::Device {
            peers,
            ..Default::default()
        };
        Ok(self.0.set(device)?)
    }
}

/// The side that configures `link`, by its kind: the kernel's WireGuard
/// device, or a TUN device (wireguard-go's, if one answers on its socket).
pub(super) fn configurator(link: &Link) -> Option<Box<dyn Configure>> {
    match link.kind.as_deref() {
        Some("wireguard") => Some(Box::new(KernelDevice(link.name.clone()))),
        Some("tun") => Some(Box::new(UserspaceDevice(xplatform::Client::create(
            socket_path(&link.name),
        )))),
        _ => None,
    }
}

pub(super) fn device_link(nl: &mut Netlink, device: &str) -> Result<(Link, Box<dyn Configure>)> {
    let link = nl
        .link(device)?
        .ok_or_else(|| anyhow!("{device} is gone"))?;
    let conf = configurator(&link).ok_or_else(|| anyhow!("{device} is not a WireGuard device"))?;
    Ok((link, conf))
}

pub(super) fn peer_state(p: &get::Peer) -> PeerState {
    let mut allowed_ips: Vec<IpNet> = p
        .allowed_ips
        .iter()
        .filter_map(|a| IpNet::new(a.ipaddr, a.cidr_mask).ok())
        .collect();
    allowed_ips.sort();
    PeerState {
        key: p.public_key,
        endpoint: p.endpoint,
        allowed_ips,
        keepalive: p.persistent_keepalive_interval,
        psk: (p.preshared_key != ZERO_KEY).then_some(p.preshared_key),
    }
}
