//! The kernel state the agent wants in its node, and the difference to what
//! is there. Everything the agent owns is decided here; the shell applies.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::lease::Lease;
use super::netconf::{BackendType, ClusterConf};
use super::vxlan::VxlanData;
use crate::ipam::RangeConf;
use crate::subnet_file::{SUBNET_FILE_VERSION, SubnetFile};

/// The route protocol number podnetd tags its routes with, so that it can
/// tell its own routes from everyone else's and never touch the others.
pub const ROUTE_PROTOCOL: u8 = 112;

/// VXLAN's encapsulation overhead per underlay family (outer IP + UDP +
/// VXLAN + inner Ethernet).
pub const VXLAN_OVERHEAD_V4: u32 = 50;
pub const VXLAN_OVERHEAD_V6: u32 = 70;

/// A route the agent owns: a peer's pod subnet, either via the peer's
/// underlay address (host-gw) or via the peer's subnet address on this
/// family's vxlan device, onlink.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerRoute {
    pub dst: IpNet,
    pub via: IpAddr,
    pub vxlan: bool,
}

/// A permanent neighbour entry on a vxlan device: the peer subnet's
/// address resolves to the peer's VTEP MAC.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Neighbour {
    pub ip: IpAddr,
    pub mac: String,
}

/// A permanent FDB entry on a vxlan device: the VTEP MAC lives at the
/// peer's underlay address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fdb {
    pub mac: String,
    pub dst: IpAddr,
}

/// Everything the agent owns in its node's datapath.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Datapath {
    pub routes: BTreeSet<PeerRoute>,
    /// Per vxlan device: IPv4 (`podnet.vxlan`) and IPv6 (`podnet.vxlan6`).
    pub neighbours: [BTreeSet<Neighbour>; 2],
    pub fdb: [BTreeSet<Fdb>; 2],
}

/// Index of a family in [`Datapath`]'s per-device arrays.
pub fn family_index(v4: bool) -> usize {
    usize::from(!v4)
}

/// This node's view: who it is and which underlay segments it sits on
/// (DirectRouting sends to peers on them without encapsulation).
pub struct Me<'a> {
    pub name: &'a str,
    pub segments: &'a [IpNet],
}

pub fn desired<'a>(
    me: &Me<'_>,
    conf: &ClusterConf,
    leases: impl IntoIterator<Item = &'a Lease>,
    now: u64,
) -> Datapath {
    let mut out = Datapath::default();
    // A peer of another backend type cannot be reached this way: skipped.
    let backend = conf.backend.kind.as_str();
    for peer in leases
        .into_iter()
        .filter(|l| l.node != me.name && !l.expired(now) && l.attrs.backend_type == backend)
    {
        for subnet in &peer.subnets {
            let v4 = subnet.addr().is_ipv4();
            let Some(underlay) = peer.attrs.underlay(v4) else {
                continue;
            };
            let direct = conf.backend.kind == BackendType::HostGw
                || (conf.backend.direct_routing
                    && me.segments.iter().any(|s| s.contains(&underlay)));
            if direct {
                out.routes.insert(PeerRoute {
                    dst: *subnet,
                    via: underlay,
                    vxlan: false,
                });
                continue;
            }
            let Some(VxlanData { vtep_mac: mac, .. }) = VxlanData::of(&peer.attrs, v4) else {
                continue;
            };
            let gateway = subnet.network();
            out.routes.insert(PeerRoute {
                dst: *subnet,
                via: gateway,
                vxlan: true,
            });
            out.neighbours[family_index(v4)].insert(Neighbour {
                ip: gateway,
                mac: mac.clone(),
            });
            out.fdb[family_index(v4)].insert(Fdb { mac, dst: underlay });
        }
    }
    out
}

/// What to change so that `actual` becomes `desired`: add or replace what
/// is missing or different, delete what is ours but no longer wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff<T> {
    pub replace: Vec<T>,
    pub delete: Vec<T>,
}

impl<T> Diff<T> {
    pub fn is_empty(&self) -> bool {
        self.replace.is_empty() && self.delete.is_empty()
    }
}

/// A set diff keyed by `key`: entries whose key is still wanted are
/// replaced in place (never deleted first), so traffic is not interrupted.
pub fn diff<T: Ord + Clone, K: Ord>(
    desired: &BTreeSet<T>,
    actual: &[T],
    key: impl Fn(&T) -> K,
) -> Diff<T> {
    let have: BTreeSet<&T> = actual.iter().collect();
    let wanted: BTreeSet<K> = desired.iter().map(&key).collect();
    Diff {
        replace: desired
            .iter()
            .filter(|d| !have.contains(d))
            .cloned()
            .collect(),
        delete: actual
            .iter()
            .filter(|a| !wanted.contains(&key(a)))
            .cloned()
            .collect(),
    }
}

/// The pod MTU: `Backend.MTU` if set, else the uplink's minus the largest
/// encapsulation overhead among the enabled families (none for host-gw).
pub fn pod_mtu(conf: &ClusterConf, uplink_mtu: u32) -> u32 {
    if let Some(mtu) = conf.backend.mtu {
        return mtu;
    }
    let overhead = match conf.backend.kind {
        BackendType::HostGw => 0,
        BackendType::Vxlan => [
            (conf.ipv4.is_some(), VXLAN_OVERHEAD_V4),
            (conf.ipv6.is_some(), VXLAN_OVERHEAD_V6),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, o)| *o)
        .max()
        .unwrap_or(0),
    };
    uplink_mtu.saturating_sub(overhead)
}

/// Egress masquerade: pod traffic leaving for anything that is neither a
/// cluster CIDR nor a node is NATed to the node; the rest never is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasqPlan {
    pub cluster_cidrs: Vec<IpNet>,
    pub node_ips: BTreeSet<IpAddr>,
    /// The overlay's UDP port, whose packets need no connection tracking.
    pub vxlan_port: Option<u16>,
}

pub fn masq_plan<'a>(conf: &ClusterConf, leases: impl IntoIterator<Item = &'a Lease>) -> MasqPlan {
    MasqPlan {
        vxlan_port: (conf.backend.kind == BackendType::Vxlan).then_some(conf.backend.port),
        cluster_cidrs: conf.cluster_cidrs(),
        node_ips: leases
            .into_iter()
            .flat_map(|l| [Some(l.attrs.public_ip), l.attrs.public_ipv6])
            .flatten()
            .collect(),
    }
}

/// Addresses (with their link) that lie in the cluster but in none of
/// this node's subnets: a bridge's gateway from a subnet the node held
/// before (its lease went to another node while it was away). Pods'
/// traffic to that subnet belongs to the other node now.
pub fn stale_gateways(
    addrs: &[(u32, IpNet)],
    cluster: &[IpNet],
    own: &[IpNet],
) -> Vec<(u32, IpNet)> {
    addrs
        .iter()
        .filter(|(_, a)| cluster.iter().any(|c| c.contains(&a.addr())))
        .filter(|(_, a)| !own.iter().any(|s| s.contains(&a.addr())))
        .copied()
        .collect()
}

/// The subnet file the plugin reads: our subnets with their gateways.
pub fn subnet_file(conf: &ClusterConf, lease: &Lease, mtu: u32) -> SubnetFile {
    SubnetFile {
        version: SUBNET_FILE_VERSION,
        cluster_cidrs: conf
            .cluster_cidrs()
            .iter()
            .map(ToString::to_string)
            .collect(),
        node_subnets: lease
            .subnets
            .iter()
            .map(|s| RangeConf {
                subnet: s.to_string(),
                ..RangeConf::default()
            })
            .collect(),
        mtu: Some(mtu),
    }
}

#[cfg(test)]
mod tests;
