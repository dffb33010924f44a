//! The kernel state the agent wants in its node, and the difference to what
//! is there. Everything the agent owns is decided here; the shell applies.

use std::any::Any;
use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::lease::Lease;
use super::netconf::ClusterConf;
use crate::ipam::RangeConf;
use crate::subnet_file::{SUBNET_FILE_VERSION, SubnetFile};

/// The route protocol number podnetd tags its routes with, so that it can
/// tell its own routes from everyone else's and never touch the others.
pub const ROUTE_PROTOCOL: u8 = 112;

/// A route the agent owns: a peer's pod subnet, either via the peer's
/// underlay address, or via `via` onlink through this family's overlay
/// device (the backend's).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerRoute {
    pub dst: IpNet,
    pub via: IpAddr,
    pub overlay: bool,
}

impl PeerRoute {
    /// Straight to the peer's underlay address, no encapsulation.
    pub fn direct(dst: IpNet, underlay: IpAddr) -> Self {
        PeerRoute {
            dst,
            via: underlay,
            overlay: false,
        }
    }
}

/// Everything the agent owns in its node's datapath: the routes, and the
/// backend's own per-peer objects, which only the backend reads.
#[derive(Debug, Default)]
pub struct Datapath {
    pub routes: BTreeSet<PeerRoute>,
    objects: Option<Box<dyn Objects>>,
}

/// A backend's per-peer objects (vxlan's entries, WireGuard's peers): any
/// comparable value that can count itself.
pub trait Objects: Any + fmt::Debug + Send + Sync {
    /// How many objects: a figure for the metrics.
    fn count(&self) -> usize;
    fn boxed(&self) -> Box<dyn Objects>;
    fn same(&self, other: &dyn Objects) -> bool;
}

/// What a backend's objects type provides; [`Objects`] follows.
pub trait Count {
    fn count(&self) -> usize;
}

impl<T: Count + Clone + PartialEq + fmt::Debug + Send + Sync + 'static> Objects for T {
    fn count(&self) -> usize {
        Count::count(self)
    }

    fn boxed(&self) -> Box<dyn Objects> {
        Box::new(self.clone())
    }

    fn same(&self, other: &dyn Objects) -> bool {
        let other: &dyn Any = other;
        other.downcast_ref::<T>() == Some(self)
    }
}

impl Clone for Datapath {
    fn clone(&self) -> Self {
        Datapath {
            routes: self.routes.clone(),
            objects: self.objects.as_ref().map(|o| o.boxed()),
        }
    }
}

impl PartialEq for Datapath {
    fn eq(&self, other: &Self) -> bool {
        self.routes == other.routes
            && match (&self.objects, &other.objects) {
                (None, None) => true,
                (Some(a), Some(b)) => a.same(b.as_ref()),
                _ => false,
            }
    }
}

impl Eq for Datapath {}

impl Datapath {
    /// How many per-peer objects the backend wants besides routes.
    pub fn backend_objects(&self) -> usize {
        self.objects.as_ref().map_or(0, |o| o.count())
    }

    /// The backend's objects, if it made some of type `T`.
    pub fn objects<T: Objects>(&self) -> Option<&T> {
        let any: &dyn Any = self.objects.as_deref()?;
        any.downcast_ref()
    }

    /// Changes the backend's objects of type `T` (empty at first).
    pub fn edit_objects<T: Objects + Default>(&mut self, edit: impl FnOnce(&mut T)) {
        let mut objects = self
            .objects
            .take()
            .and_then(|o| {
                let any: Box<dyn Any> = o;
                any.downcast::<T>().ok()
            })
            .unwrap_or_default();
        edit(&mut objects);
        self.objects = Some(objects);
    }
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
    let backend = conf.backend.decide();
    // A peer of another backend type cannot be reached this way: skipped.
    for peer in leases.into_iter().filter(|l| {
        l.node != me.name && !l.expired(now) && l.attrs.backend_type == backend.type_name()
    }) {
        for subnet in &peer.subnets {
            if let Some(underlay) = peer.attrs.underlay(subnet.addr().is_ipv4()) {
                backend.peer(me, &peer.attrs, *subnet, underlay, &mut out);
            }
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
/// encapsulation overhead among the enabled families.
pub fn pod_mtu(conf: &ClusterConf, uplink_mtu: u32) -> u32 {
    if let Some(mtu) = conf.mtu {
        return mtu;
    }
    let backend = conf.backend.decide();
    let overhead = [(conf.ipv4.is_some(), true), (conf.ipv6.is_some(), false)]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, v4)| backend.overhead(*v4))
        .max()
        .unwrap_or(0);
    uplink_mtu.saturating_sub(overhead)
}

/// Egress masquerade: pod traffic leaving for anything that is neither a
/// cluster CIDR nor a node is NATed to the node; the rest never is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasqPlan {
    pub cluster_cidrs: Vec<IpNet>,
    pub node_ips: BTreeSet<IpAddr>,
    /// The overlay's UDP ports, whose packets need no connection tracking.
    pub overlay_ports: Vec<u16>,
}

pub fn masq_plan<'a>(conf: &ClusterConf, leases: impl IntoIterator<Item = &'a Lease>) -> MasqPlan {
    MasqPlan {
        overlay_ports: conf.backend.decide().overlay_ports(),
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
