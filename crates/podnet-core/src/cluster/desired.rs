//! The kernel state the agent wants in its node, and the difference to what
//! is there. Everything the agent owns is decided here; the shell applies.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::lease::Lease;
use super::netconf::ClusterConf;
use crate::ipam::RangeConf;
use crate::subnet_file::{SUBNET_FILE_VERSION, SubnetFile};

/// The route protocol number podnetd tags its routes with, so that it can
/// tell its own routes from everyone else's and never touch the others.
pub const ROUTE_PROTOCOL: u8 = 112;

/// A route the agent owns: a peer's pod subnet via the peer's node address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerRoute {
    pub dst: IpNet,
    pub via: IpAddr,
}

/// host-gw: one route per peer subnet of our families, via the peer. Only
/// live leases of other nodes count; our own subnet is on the bridge.
pub fn host_gw_routes(me: &str, leases: &[Lease], now: u64) -> BTreeSet<PeerRoute> {
    leases
        .iter()
        .filter(|l| l.node != me && !l.expired(now))
        .flat_map(|l| {
            l.subnets
                .iter()
                .filter(move |s| s.addr().is_ipv4() == l.public_ip.is_ipv4())
                .map(move |s| PeerRoute {
                    dst: *s,
                    via: l.public_ip,
                })
        })
        .collect()
}

/// What to change so that `actual` (the routes carrying our protocol tag)
/// becomes `desired`: replace what is missing or different, delete the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteDiff {
    pub replace: Vec<PeerRoute>,
    pub delete: Vec<IpNet>,
}

impl RouteDiff {
    pub fn is_empty(&self) -> bool {
        self.replace.is_empty() && self.delete.is_empty()
    }
}

pub fn diff_routes(desired: &BTreeSet<PeerRoute>, actual: &[PeerRoute]) -> RouteDiff {
    let have: BTreeSet<&PeerRoute> = actual.iter().collect();
    RouteDiff {
        replace: desired
            .iter()
            .filter(|r| !have.contains(r))
            .cloned()
            .collect(),
        delete: actual
            .iter()
            .filter(|a| !desired.iter().any(|d| d.dst == a.dst))
            .map(|a| a.dst)
            .collect(),
    }
}

/// Egress masquerade: pod traffic leaving for anything that is neither a
/// cluster CIDR nor a node is NATed to the node; the rest never is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasqPlan {
    pub cluster_cidrs: Vec<IpNet>,
    pub node_ips: BTreeSet<IpAddr>,
}

pub fn masq_plan(conf: &ClusterConf, leases: &[Lease]) -> MasqPlan {
    MasqPlan {
        cluster_cidrs: conf.cluster_cidrs(),
        node_ips: leases.iter().map(|l| l.public_ip).collect(),
    }
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
mod tests {
    use super::*;

    fn lease(node: &str, ip: &str, subnet: &str, expires: u64) -> Lease {
        Lease {
            node: node.into(),
            public_ip: ip.parse().unwrap(),
            subnets: vec![subnet.parse().unwrap()],
            vtep_mac: None,
            expires,
        }
    }

    fn route(dst: &str, via: &str) -> PeerRoute {
        PeerRoute {
            dst: dst.parse().unwrap(),
            via: via.parse().unwrap(),
        }
    }

    #[test]
    fn routes_to_live_peers_only() {
        let leases = [
            lease("a", "192.168.1.2", "10.244.1.0/24", 100),
            lease("b", "192.168.1.3", "10.244.2.0/24", 100),
            lease("c", "192.168.1.4", "10.244.3.0/24", 5),
        ];
        let want = host_gw_routes("a", &leases, 10);
        assert_eq!(
            want.into_iter().collect::<Vec<_>>(),
            vec![route("10.244.2.0/24", "192.168.1.3")]
        );
    }

    #[test]
    fn diff_replaces_changed_and_deletes_departed() {
        let desired: BTreeSet<PeerRoute> = [
            route("10.244.2.0/24", "192.168.1.3"),
            route("10.244.3.0/24", "192.168.1.9"),
        ]
        .into();
        let actual = vec![
            route("10.244.2.0/24", "192.168.1.3"),
            route("10.244.3.0/24", "192.168.1.4"),
            route("10.244.4.0/24", "192.168.1.5"),
        ];
        let d = diff_routes(&desired, &actual);
        assert_eq!(d.replace, vec![route("10.244.3.0/24", "192.168.1.9")]);
        assert_eq!(d.delete, vec!["10.244.4.0/24".parse::<IpNet>().unwrap()]);
        assert!(diff_routes(&desired, &desired.iter().cloned().collect::<Vec<_>>()).is_empty());
    }

    #[test]
    fn subnet_file_carries_gateway_ready_ranges() {
        let conf = ClusterConf::parse(r#"{"Backend":{"Type":"host-gw"}}"#).unwrap();
        let f = subnet_file(&conf, &lease("a", "192.168.1.2", "10.244.1.0/24", 1), 1500);
        assert_eq!(f.node_subnets[0].subnet, "10.244.1.0/24");
        assert_eq!(f.cluster_cidrs, vec!["10.244.0.0/16"]);
        assert_eq!(f.mtu, Some(1500));
    }
}
