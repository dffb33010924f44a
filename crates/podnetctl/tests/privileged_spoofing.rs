//! Anti-spoofing across the cluster: a raw-socket sender in a pod on node1
//! forges another pod's address, an address of node3's subnet and one
//! outside the cluster, towards a pod on its own node and one on node2,
//! on host-gw and on vxlan, both families. Nothing forged arrives; the
//! pod's own traffic does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use std::time::{Duration, Instant};

use common::{TestLab, sh};
use ipnet::IpNet;
use podnet_testkit::forge::{self, Listener};
use serde_json::Value;

struct Pod {
    ns: String,
    path: String,
    node: String,
    ips: Vec<IpAddr>,
}

fn pods(lab: &TestLab) -> Vec<Pod> {
    lab.record()["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Pod {
            ns: p["ns"].as_str().unwrap().to_owned(),
            path: format!("/run/netns/{}", p["ns"].as_str().unwrap()),
            node: p["node"].as_str().unwrap().to_owned(),
            ips: p["ips"]
                .as_array()
                .unwrap()
                .iter()
                .map(|ip| ip.as_str().unwrap().parse().unwrap())
                .collect(),
        })
        .collect()
}

/// An address of `node`'s subnet of that family that no pod holds.
fn subnet_addr(status: &Value, node: &str, v4: bool) -> IpAddr {
    let n = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node)
        .unwrap();
    let net: IpNet = n["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().parse::<IpNet>().unwrap())
        .find(|s| s.addr().is_ipv4() == v4)
        .unwrap();
    net.hosts().nth(200).unwrap()
}

fn run(backend: &str) {
    let lab = TestLab::up_with(3, 2, &["--dual-stack", "--backend", backend]);
    lab.check_until_ok(backend);
    let (_, status) = lab.json(&["status"]);
    let pods = pods(&lab);
    let node_ns = |node: &str| {
        let rec = lab.record();
        let ns = rec["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == node)
            .unwrap()["ns"]
            .as_str()
            .unwrap()
            .to_owned();
        format!("/run/netns/{ns}")
    };
    let on = |node: &str| pods.iter().filter(|p| p.node == node).collect::<Vec<_>>();
    let node1 = pods[0].node.clone();
    let attacker = on(&node1)[0];
    let neighbour = on(&node1)[1];
    let node2 = status["nodes"][1]["name"].as_str().unwrap().to_owned();
    let node3 = status["nodes"][2]["name"].as_str().unwrap().to_owned();
    let remote = on(&node2)[0];
    let victim = on(&node3)[0];
    let mac = forge::mac(&attacker.path, "eth0");
    let gateway_mac = forge::mac(&node_ns(&node1), "podnet0");

    for (target, dst_mac) in [
        (neighbour, forge::mac(&neighbour.path, "eth0")),
        (remote, gateway_mac),
    ] {
        let listener = Listener::new(&target.path);
        let mut sent = Vec::new();
        for v4 in [true, false] {
            let pick = |p: &Pod| *p.ips.iter().find(|ip| ip.is_ipv4() == v4).unwrap();
            let suffix = if v4 { "" } else { "6" };
            for (what, src) in [
                ("own", pick(attacker)),
                ("another-pod", pick(victim)),
                ("node3-subnet", subnet_addr(&status, &node3, v4)),
                (
                    "outside",
                    if v4 { "192.0.2.7" } else { "2001:db8::7" }
                        .parse()
                        .unwrap(),
                ),
            ] {
                let label = format!("{what}{suffix}");
                let frame = forge::udp(
                    mac,
                    dst_mac,
                    src,
                    pick(target),
                    listener.port,
                    label.as_bytes(),
                );
                forge::send(&attacker.path, "eth0", &frame);
                sent.push((label, src));
            }
        }
        let got = listener.drain();
        for (src, label) in &got {
            let want = sent.iter().find(|(l, _)| l == label).unwrap().1;
            assert_eq!(*src, want, "{label} arrived from another source");
        }
        let labels: BTreeSet<String> = got.into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            labels,
            BTreeSet::from(["own".to_owned(), "own6".to_owned()]),
            "{backend}: from {} to a pod on {}",
            attacker.node,
            target.node
        );
        eprintln!(
            "{backend}: to {}: 6 forged dropped, 2 own delivered",
            target.node
        );
    }
    // Everything legitimate still flows.
    lab.check_until_ok(backend);

    // A pod's port gone without a DEL: its node's podnetd prunes the
    // port's elements.
    let node1_ns = node_ns(&node1);
    let ports = || {
        let name = node1_ns.trim_start_matches("/run/netns/");
        let listed: Value =
            serde_json::from_str(&sh(name, "nft -j list set bridge podnet-guard macs")).unwrap();
        listed["nftables"][1]["set"]["elem"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let before = ports();
    sh(&attacker.ns, "ip link del eth0");
    let started = Instant::now();
    while ports() >= before {
        assert!(started.elapsed() < Duration::from_secs(30), "never pruned");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "{backend}: a gone port pruned after {:?}",
        started.elapsed()
    );
}

#[test]
fn privileged_forged_sources_never_arrive_on_host_gw() {
    run("host-gw");
}

#[test]
fn privileged_forged_sources_never_arrive_on_vxlan() {
    run("vxlan");
}
