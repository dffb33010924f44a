//! wireguard: a peer's pod subnets are routed into this node's WireGuard
//! device, which encrypts them to the peer's public key and sends them to
//! the peer's underlay address. Settings, lease data, device names and
//! modes are flannel's, so a flannel-written net-conf and lease read as
//! they are.
//!
//! Its lease data: `{"PublicKey": "<base64>"}`, the same key in
//! `BackendData` and `BackendV6Data`. The private key never leaves the
//! node (podnetd's half keeps it in its state directory).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Decide, Settings};
use crate::cluster::desired::{Count, Datapath, Me, PeerRoute, family_index};
use crate::cluster::lease::LeaseAttrs;
use crate::cluster::netconf::NetConfError;

pub const TYPE: &str = "wireguard";

/// Outer IP (20 or 40) + UDP (8) + WireGuard's header (16) and tag (16).
pub const OVERHEAD_V4: u32 = 60;
pub const OVERHEAD_V6: u32 = 80;

/// The devices, by index in [`Peers::devices`]: the only one in the
/// single-device modes, or IPv4's in `separate` mode; and IPv6's there.
pub const DEVICES: [&str; 2] = ["podnet-wg", "podnet-wg-v6"];

/// How the tunnels are laid out, flannel's modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One device per pod family, each over the underlay of its family.
    #[default]
    Separate,
    /// One device for both families, over IPv4 unless a peer is only
    /// reachable over IPv6.
    Auto,
    /// One device for both families, over IPv4.
    Ipv4,
    /// One device for both families, over IPv6.
    Ipv6,
}

/// The wireguard backend's settings, flannel's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Wireguard {
    pub listen_port: u16,
    #[serde(rename = "ListenPortV6")]
    pub listen_port_v6: u16,
    /// A pre-shared key every pair of nodes mixes in (base64, 32 bytes);
    /// empty is none, as in flannel.
    #[serde(rename = "PSK")]
    pub psk: String,
    /// Seconds between keepalives; 0 is off.
    pub persistent_keepalive_interval: u64,
    pub mode: Mode,
}

impl Default for Wireguard {
    fn default() -> Self {
        Wireguard {
            listen_port: 51820,
            listen_port_v6: 51821,
            psk: String::new(),
            persistent_keepalive_interval: 0,
            mode: Mode::Separate,
        }
    }
}

/// A WireGuard key (public, private or pre-shared): 32 bytes.
pub type Key = [u8; 32];

/// A key as WireGuard writes it: base64 of 32 bytes.
pub fn parse_key(text: &str) -> Option<Key> {
    STANDARD.decode(text.trim()).ok()?.try_into().ok()
}

pub fn format_key(key: &Key) -> String {
    STANDARD.encode(key)
}

impl Wireguard {
    /// The pre-shared key, if one is set (validated at parse).
    pub fn psk(&self) -> Option<Key> {
        parse_key(&self.psk)
    }

    /// The keepalive in seconds, as WireGuard takes it (validated).
    pub fn keepalive(&self) -> u16 {
        u16::try_from(self.persistent_keepalive_interval).unwrap_or(u16::MAX)
    }

    /// The device a pod family's traffic goes through: IPv6's own only in
    /// `separate` mode.
    pub fn device_of(&self, v4_pods: bool) -> usize {
        match self.mode {
            Mode::Separate => family_index(v4_pods),
            _ => 0,
        }
    }

    /// The port a device listens on: IPv6's device in `separate` mode
    /// takes `ListenPortV6`; every other device `ListenPort`.
    pub fn port_of(&self, device: usize) -> u16 {
        if device == 1 {
            self.listen_port_v6
        } else {
            self.listen_port
        }
    }

    /// Whether the traffic of this pod family crosses an IPv4 underlay.
    fn v4_underlay(&self, v4_pods: bool) -> bool {
        match self.mode {
            Mode::Separate => v4_pods,
            Mode::Ipv4 => true,
            // Auto may reach a peer over either: the larger overhead.
            Mode::Auto | Mode::Ipv6 => false,
        }
    }

    /// The peer's address its tunnel is sent to, for this pod family.
    fn endpoint_ip(&self, peer: &LeaseAttrs, v4_pods: bool) -> Option<IpAddr> {
        match self.mode {
            Mode::Separate => peer.underlay(v4_pods),
            Mode::Ipv4 => peer.underlay(true),
            Mode::Ipv6 => peer.underlay(false),
            // flannel's choice: IPv4 unless only a global IPv6 address
            // looks reachable.
            Mode::Auto => match (peer.underlay(true), peer.underlay(false)) {
                (Some(v4), Some(v6)) if !is_global(v4) && is_global(v6) => Some(v6),
                (Some(v4), _) => Some(v4),
                (None, v6) => v6,
            },
        }
    }
}

/// Not private, loopback or link-local: a unicast address others reach.
fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_private() || v4.is_loopback() || v4.is_link_local()),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback() || first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80)
        }
    }
}

impl Settings for Wireguard {
    const TYPE: &'static str = TYPE;

    fn validate(self) -> Result<Wireguard, NetConfError> {
        for (field, port) in [
            ("ListenPort", self.listen_port),
            ("ListenPortV6", self.listen_port_v6),
        ] {
            if port == 0 {
                return Err(NetConfError(format!(
                    "Backend.{field} 0 is not a port (1..65535): peers must know where to send"
                )));
            }
        }
        if !self.psk.is_empty() && self.psk().is_none() {
            return Err(NetConfError(
                "Backend.PSK is not a WireGuard key: base64 of 32 bytes (`wg genpsk` makes one)"
                    .into(),
            ));
        }
        if self.persistent_keepalive_interval > u64::from(u16::MAX) {
            return Err(NetConfError(format!(
                "Backend.PersistentKeepaliveInterval {} is over 65535 seconds",
                self.persistent_keepalive_interval
            )));
        }
        Ok(self)
    }
}

/// One peer node on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub endpoint: SocketAddr,
    pub allowed_ips: BTreeSet<IpNet>,
}

/// The peers of each device ([`DEVICES`]), by public key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers {
    pub devices: [BTreeMap<Key, Peer>; 2],
}

impl Count for Peers {
    fn count(&self) -> usize {
        self.devices.iter().map(BTreeMap::len).sum()
    }
}

impl Decide for Wireguard {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn settings(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn overhead(&self, v4_pods: bool) -> u32 {
        if self.v4_underlay(v4_pods) {
            OVERHEAD_V4
        } else {
            OVERHEAD_V6
        }
    }

    fn lease_data(&self, _: bool, _: IpAddr, identity: Option<&str>) -> Value {
        match identity {
            Some(key) => serde_json::json!({ "PublicKey": key }),
            None => Value::Null,
        }
    }

    fn unknown_data_fields(&self, data: &Value) -> Vec<String> {
        data.as_object()
            .map(|o| o.keys().filter(|k| *k != "PublicKey").cloned().collect())
            .unwrap_or_default()
    }

    fn overlay_ports(&self) -> Vec<u16> {
        match self.mode {
            Mode::Separate => vec![self.listen_port, self.listen_port_v6],
            _ => vec![self.listen_port],
        }
    }

    fn peer(&self, _: &Me<'_>, peer: &LeaseAttrs, subnet: IpNet, _: IpAddr, out: &mut Datapath) {
        let v4 = subnet.addr().is_ipv4();
        let (Some(key), Some(ip)) = (public_key(peer, v4), self.endpoint_ip(peer, v4)) else {
            return;
        };
        let device = self.device_of(v4);
        let endpoint = SocketAddr::new(ip, self.port_of(device));
        out.routes.insert(PeerRoute {
            dst: subnet,
            via: subnet.network(),
            overlay: true,
        });
        // The peer node's own addresses too: its replies to this node's
        // pods (which reach it without NAT) come back through the tunnel.
        let families: &[bool] = match self.mode {
            Mode::Separate => &[v4],
            _ => &[true, false],
        };
        let nodes = families
            .iter()
            .filter_map(|f| peer.underlay(*f))
            .map(IpNet::from);
        out.edit_objects(|p: &mut Peers| {
            let allowed = &mut p.devices[device]
                .entry(key)
                .or_insert_with(|| Peer {
                    endpoint,
                    allowed_ips: BTreeSet::new(),
                })
                .allowed_ips;
            allowed.insert(subnet);
            allowed.extend(nodes);
        });
    }
}

/// A peer's public key from its data for this family (else the other's:
/// both hold the same key); `None` unless it runs wireguard and the key
/// is 32 bytes of base64.
pub fn public_key(peer: &LeaseAttrs, v4: bool) -> Option<Key> {
    if peer.backend_type != TYPE {
        return None;
    }
    [v4, !v4]
        .into_iter()
        .find_map(|family| parse_key(peer.backend_data(family).get("PublicKey")?.as_str()?))
}

#[cfg(test)]
mod tests;
