//! The netlink client against a real kernel, in a throwaway namespace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use podnet_linux::netlink::{Change, Netlink, Nexthop, RouteSpec};
use podnet_linux::netns::Netns;
use podnet_testkit::TestNetns;

const PROTO: u8 = 112;

fn routes_of(nl: &mut Netlink) -> usize {
    nl.routes()
        .unwrap()
        .iter()
        .filter(|r| r.protocol == PROTO)
        .count()
}

/// A namespace with an up veth pair, eth0 on 172.16.0.0/16, and a netlink
/// socket in it.
fn underlay(prefix: &str) -> (TestNetns, Netlink) {
    let ns = TestNetns::new(prefix);
    ns.exec_ok(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    ns.exec_ok(&["ip", "addr", "add", "172.16.0.1/16", "dev", "eth0"]);
    ns.exec_ok(&["ip", "link", "set", "eth0", "up"]);
    ns.exec_ok(&["ip", "link", "set", "eth1", "up"]);
    let nl = Netlink::open_in(&Netns::open(ns.path()).unwrap()).unwrap();
    (ns, nl)
}

/// The `i`th /24 of 10.0.0.0/8.
fn dst(i: u32) -> IpNet {
    IpNet::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24).unwrap()
}

#[test]
fn privileged_batched_changes_all_apply() {
    let (_ns, mut nl) = underlay("pntest-nl");
    // More than one chunk's worth.
    let adds: Vec<Change> = (0..300)
        .map(|i| {
            Change::replace_route(&RouteSpec {
                dst: dst(i),
                gw: Some(IpAddr::V4(Ipv4Addr::new(172, 16, 1, (i % 250 + 1) as u8))),
                oif: None,
                protocol: PROTO,
                onlink: false,
            })
        })
        .collect();
    nl.apply(&adds).unwrap();
    assert_eq!(routes_of(&mut nl), 300);
    // Replacing is idempotent; deleting the gone is tolerated.
    nl.apply(&adds).unwrap();
    let dels: Vec<Change> = (0..300)
        .map(|i| Change::delete_route(dst(i), PROTO))
        .collect();
    nl.apply(&dels).unwrap();
    assert_eq!(routes_of(&mut nl), 0);
    nl.apply(&dels).unwrap();
    // A real failure is reported.
    let bad = Change::replace_route(&RouteSpec {
        dst: dst(1),
        gw: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        oif: None,
        protocol: PROTO,
        onlink: false,
    });
    assert!(nl.apply(&[bad]).is_err());
}

#[test]
fn privileged_nexthop_objects_round_trip() {
    let (_ns, mut nl) = underlay("pntest-nh");
    let eth0 = nl.link("eth0").unwrap().unwrap().index;
    let hop = |i: u32| Nexthop {
        id: 1000 + i,
        gw: IpAddr::V4(Ipv4Addr::new(172, 16, 1, (i % 250 + 1) as u8)),
        oif: eth0,
        onlink: i.is_multiple_of(2),
        protocol: PROTO,
    };
    let mut changes: Vec<Change> = (0..200).map(|i| Change::replace_nexthop(&hop(i))).collect();
    changes.extend((0..200).map(|i| Change::replace_route_via_nexthop(dst(i), 1000 + i, PROTO)));
    nl.apply(&changes).unwrap();

    let mut got = nl.nexthops().unwrap();
    got.sort_by_key(|n| n.id);
    assert_eq!(got, (0..200).map(hop).collect::<Vec<_>>());
    let routes: Vec<_> = nl
        .routes()
        .unwrap()
        .into_iter()
        .filter(|r| r.protocol == PROTO)
        .collect();
    assert_eq!(routes.len(), 200);
    for i in 0..200 {
        let r = routes.iter().find(|r| r.dst == dst(i)).unwrap();
        assert_eq!(r.nexthop, Some(1000 + i));
    }

    // Deleting an object takes its routes along; deleting it twice is fine.
    let dels: Vec<Change> = (0..200).map(|i| Change::delete_nexthop(1000 + i)).collect();
    nl.apply(&dels).unwrap();
    nl.apply(&dels).unwrap();
    assert!(nl.nexthops().unwrap().is_empty());
    assert_eq!(routes_of(&mut nl), 0);
}
