use super::*;
use crate::cluster::backend::vxlan::{self, VxlanData};
use crate::cluster::lease::LeaseAttrs;
use serde_json::Value;

fn lease(node: &str, ip: &str, subnet: &str, expires: u64) -> Lease {
    let public_ip: IpAddr = ip.parse().unwrap();
    Lease {
        node: node.into(),
        subnets: vec![subnet.parse().unwrap()],
        expires,
        attrs: LeaseAttrs {
            public_ip,
            public_ipv6: None,
            backend_type: "vxlan".into(),
            backend_data: VxlanData {
                vni: 1,
                vtep_mac: format!("02:00:00:00:00:{:02x}", node.len()),
            }
            .to_value(),
            backend_v6_data: Value::Null,
        },
    }
}

/// The same lease as a host-gw node writes it.
fn host_gw(mut l: Lease) -> Lease {
    l.attrs.backend_type = "host-gw".into();
    l.attrs.backend_data = Value::Null;
    l
}

fn route(dst: &str, via: &str, vxlan: bool) -> PeerRoute {
    PeerRoute {
        dst: dst.parse().unwrap(),
        via: via.parse().unwrap(),
        overlay: vxlan,
    }
}

/// The vxlan entries a datapath wants (none: empty).
fn entries(d: &Datapath) -> &vxlan::Entries {
    static NONE: vxlan::Entries = vxlan::Entries {
        neighbours: [BTreeSet::new(), BTreeSet::new()],
        fdb: [BTreeSet::new(), BTreeSet::new()],
    };
    d.objects::<vxlan::Entries>().unwrap_or(&NONE)
}

fn conf(json: &str) -> ClusterConf {
    ClusterConf::parse(json).unwrap()
}

const ME: Me<'static> = Me {
    name: "a",
    segments: &[],
};

#[test]
fn host_gw_routes_to_live_peers_only() {
    let mut wireguard = lease("d", "192.168.1.5", "10.244.4.0/24", 100);
    wireguard.attrs.backend_type = "wireguard".into();
    let leases = [
        host_gw(lease("a", "192.168.1.2", "10.244.1.0/24", 100)),
        host_gw(lease("b", "192.168.1.3", "10.244.2.0/24", 100)),
        host_gw(lease("c", "192.168.1.4", "10.244.3.0/24", 5)),
        wireguard,
    ];
    let d = desired(&ME, &conf(r#"{"Backend":{"Type":"host-gw"}}"#), &leases, 10);
    assert_eq!(
        d.routes.iter().cloned().collect::<Vec<_>>(),
        vec![route("10.244.2.0/24", "192.168.1.3", false)]
    );
    assert!(entries(&d).fdb[0].is_empty() && entries(&d).neighbours[0].is_empty());
}

#[test]
fn vxlan_gives_route_neighbour_and_fdb_per_peer() {
    let leases = [
        lease("a", "192.168.1.2", "10.244.1.0/24", 100),
        lease("bb", "192.168.2.2", "10.244.2.0/24", 100),
    ];
    let d = desired(&ME, &conf(r#"{"Backend":{"Type":"vxlan"}}"#), &leases, 10);
    assert_eq!(
        d.routes.iter().next().unwrap(),
        &route("10.244.2.0/24", "10.244.2.0", true)
    );
    let n = entries(&d).neighbours[0].iter().next().unwrap();
    assert_eq!(
        (n.ip.to_string(), n.mac.as_str()),
        ("10.244.2.0".into(), "02:00:00:00:00:02")
    );
    let f = entries(&d).fdb[0].iter().next().unwrap();
    assert_eq!(
        (f.mac.as_str(), f.dst.to_string()),
        ("02:00:00:00:00:02", "192.168.2.2".into())
    );
}

#[test]
fn direct_routing_skips_encapsulation_on_the_same_segment() {
    let leases = [
        lease("a", "192.168.1.2", "10.244.1.0/24", 100),
        lease("b", "192.168.1.3", "10.244.2.0/24", 100),
        lease("c", "192.168.9.2", "10.244.3.0/24", 100),
    ];
    let segments: Vec<IpNet> = vec!["192.168.1.0/24".parse().unwrap()];
    let me = Me {
        name: "a",
        segments: &segments,
    };
    let d = desired(
        &me,
        &conf(r#"{"Backend":{"Type":"vxlan","DirectRouting":true}}"#),
        &leases,
        10,
    );
    assert!(
        d.routes
            .contains(&route("10.244.2.0/24", "192.168.1.3", false))
    );
    assert!(
        d.routes
            .contains(&route("10.244.3.0/24", "10.244.3.0", true))
    );
    assert_eq!(entries(&d).fdb[0].len(), 1);
}

#[test]
fn dual_stack_uses_each_familys_underlay_and_device() {
    let mut b = lease("b", "192.168.1.3", "10.244.2.0/24", 100);
    b.subnets.push("fd00:244:0:2::/64".parse().unwrap());
    b.attrs.public_ipv6 = Some("fd00:1::3".parse().unwrap());
    b.attrs.backend_v6_data = serde_json::json!({"VNI": 1, "VtepMAC": "02:00:00:00:06:06"});
    let c = conf(r#"{"EnableIPv6":true,"IPv6Network":"fd00:244::/56","Backend":{"Type":"vxlan"}}"#);
    let d = desired(&ME, &c, &[b.clone()], 10);
    assert!(
        d.routes
            .contains(&route("fd00:244:0:2::/64", "fd00:244:0:2::", true))
    );
    assert_eq!(
        entries(&d).fdb[1].iter().next().unwrap().dst.to_string(),
        "fd00:1::3"
    );
    let hg =
        conf(r#"{"EnableIPv6":true,"IPv6Network":"fd00:244::/56","Backend":{"Type":"host-gw"}}"#);
    let d = desired(&ME, &hg, &[host_gw(b)], 10);
    assert!(
        d.routes
            .contains(&route("fd00:244:0:2::/64", "fd00:1::3", false))
    );
    assert_eq!(d.routes.len(), 2);
}

#[test]
fn diff_replaces_changed_and_deletes_departed() {
    let desired: BTreeSet<PeerRoute> = [
        route("10.244.2.0/24", "192.168.1.3", false),
        route("10.244.3.0/24", "192.168.1.9", false),
    ]
    .into();
    let actual = vec![
        route("10.244.2.0/24", "192.168.1.3", false),
        route("10.244.3.0/24", "192.168.1.4", false),
        route("10.244.4.0/24", "192.168.1.5", false),
    ];
    let by_dst = |r: &PeerRoute| r.dst;
    let d = diff(&desired, &actual, by_dst);
    assert_eq!(
        d.replace,
        vec![route("10.244.3.0/24", "192.168.1.9", false)]
    );
    assert_eq!(d.delete, vec![route("10.244.4.0/24", "192.168.1.5", false)]);
    assert!(
        diff(
            &desired,
            &desired.iter().cloned().collect::<Vec<_>>(),
            by_dst
        )
        .is_empty()
    );
}

#[test]
fn mtu_subtracts_the_largest_overhead() {
    assert_eq!(
        pod_mtu(&conf(r#"{"Backend":{"Type":"host-gw"}}"#), 1500),
        1500
    );
    assert_eq!(
        pod_mtu(&conf(r#"{"Backend":{"Type":"vxlan"}}"#), 1500),
        1450
    );
    let dual = conf(r#"{"EnableIPv6":true,"IPv6Network":"fd00::/56","Backend":{"Type":"vxlan"}}"#);
    assert_eq!(pod_mtu(&dual, 1500), 1430);
    assert_eq!(
        pod_mtu(&conf(r#"{"Backend":{"Type":"vxlan","MTU":1400}}"#), 9000),
        1400
    );
}

#[test]
fn subnet_file_carries_gateway_ready_ranges() {
    let c = conf(r#"{"Backend":{"Type":"host-gw"}}"#);
    let f = subnet_file(&c, &lease("a", "192.168.1.2", "10.244.1.0/24", 1), 1500);
    assert_eq!(f.node_subnets[0].subnet, "10.244.1.0/24");
    assert_eq!(f.cluster_cidrs, vec!["10.244.0.0/16"]);
    assert_eq!(f.mtu, Some(1500));
}

#[test]
fn stale_gateways_are_cluster_addresses_outside_our_subnets() {
    let net = |s: &str| s.parse::<IpNet>().unwrap();
    let addrs = [
        (3, net("10.244.1.1/24")),
        (3, net("10.244.7.1/24")),
        (2, net("192.168.1.2/24")),
        (4, net("10.244.7.0/32")),
        (3, net("fd00:1::1/64")),
    ];
    let stale = stale_gateways(
        &addrs,
        &[net("10.244.0.0/16"), net("fd00::/16")],
        &[net("10.244.7.0/24"), net("fd00:7::/64")],
    );
    assert_eq!(
        stale,
        vec![(3, net("10.244.1.1/24")), (3, net("fd00:1::1/64"))]
    );
}
