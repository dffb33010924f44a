//! Cluster networking II in the lab: the vxlan overlay (flat, routed,
//! DirectRouting), the MTU it needs, and dual-stack.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{TestLab, cells};
use serde_json::Value;

/// The routes podnetd installed in each node: (node, dst, via).
fn routes(lab: &TestLab) -> Vec<(String, String, String)> {
    let (_, status) = lab.json(&["status"]);
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| {
            let name = n["name"].as_str().unwrap().to_owned();
            n["routes"].as_array().unwrap().iter().map(move |r| {
                (
                    name.clone(),
                    r[0].as_str().unwrap().to_owned(),
                    r[1].as_str().unwrap().to_owned(),
                )
            })
        })
        .collect()
}

fn families(report: &Value) -> Vec<u64> {
    let mut f: Vec<u64> = report["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["family"].as_u64().unwrap())
        .collect();
    f.sort();
    f.dedup();
    f
}

#[test]
fn privileged_vxlan_lab_check_passes() {
    let lab = TestLab::up_with(2, 1, &["--backend", "vxlan"]);
    lab.check_until_ok("vxlan");
    // Peers are reached through the overlay: via the peer subnet's address.
    for (_, dst, via) in routes(&lab) {
        assert_eq!(
            dst.split('/').next().unwrap(),
            via,
            "not a vxlan route: {dst} via {via}"
        );
    }
    let (_, status) = lab.json(&["status"]);
    assert_eq!(status["nodes"][0]["mtu"], 1450);
}

#[test]
fn privileged_vxlan_over_a_routed_underlay() {
    let lab = TestLab::up_with(3, 1, &["--backend", "vxlan", "--routed"]);
    let (_, status) = lab.json(&["status"]);
    assert_eq!(
        status["nodes"][1]["addrs"][0], "192.168.2.2",
        "each node in its own segment"
    );
    lab.check_until_ok("vxlan --routed");
    // DirectRouting finds no peer on its segment here: still all vxlan.
    let dr = TestLab::up_with(
        2,
        1,
        &["--backend", "vxlan", "--routed", "--direct-routing"],
    );
    dr.check_until_ok("vxlan --routed + DirectRouting");
    assert!(
        routes(&dr)
            .iter()
            .all(|(_, dst, via)| dst.starts_with(via.as_str()))
    );
    // host-gw cannot cross a router, and says so.
    let refused = TestLab::empty();
    let (ok, text) = refused.ctl(&["up", "--routed", "--backend", "host-gw"]);
    assert!(
        !ok && text.contains("use an overlay (vxlan or wireguard) with --routed"),
        "{text}"
    );
    // A backend podnet does not have is named with the ones it has.
    let (ok, text) = refused.ctl(&["up", "--backend", "geneve"]);
    assert!(
        !ok && text.contains(r#"not supported (use "host-gw", "vxlan", "wireguard")"#),
        "{text}"
    );
}

#[test]
fn privileged_vxlan_direct_routing_on_one_segment() {
    let lab = TestLab::up_with(2, 1, &["--backend", "vxlan", "--direct-routing"]);
    lab.check_until_ok("vxlan + DirectRouting");
    // Same L2 segment: direct routes via the peer node, no encapsulation.
    for (_, _, via) in routes(&lab) {
        assert!(
            via.starts_with("192.168.1."),
            "expected a direct route, got via {via}"
        );
    }
}

#[test]
fn privileged_dual_stack_seeds_scenario_host_gw_and_vxlan() {
    for backend in ["host-gw", "vxlan"] {
        let lab = TestLab::up_with(2, 1, &["--backend", backend, "--dual-stack"]);
        let report = lab.check_until_ok(&format!("dual-stack {backend}"));
        assert_eq!(families(&report), [4, 6], "{backend}: both families probed");
        for c in cells(&report, "pod-to-pod") {
            // No NAT in either family: the receiver saw the sender's pod IP.
            let seen = c["seen"].as_str().unwrap();
            assert!(
                seen.starts_with("10.244.") || seen.starts_with("fd00:244:"),
                "{c}"
            );
        }
        let record = lab.record();
        for pod in record["pods"].as_array().unwrap() {
            assert_eq!(pod["ips"].as_array().unwrap().len(), 2, "{pod}");
        }
    }
}

/// `ping -M do` (DF) from a pod with `size` bytes of ICMP payload.
fn df_ping(pod_ns: &str, to: &str, size: usize) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            pod_ns,
            "ping",
            "-M",
            "do",
            "-c",
            "1",
            "-W",
            "2",
            "-s",
            &size.to_string(),
            to,
        ])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn privileged_vxlan_mtu_is_what_makes_the_path_work() {
    let lab = TestLab::up_with(2, 1, &["--backend", "vxlan"]);
    lab.check_until_ok("vxlan for MTU");
    let record = lab.record();
    let pods = record["pods"].as_array().unwrap();
    let ns = |i: usize| pods[i]["ns"].as_str().unwrap().to_owned();
    let ip = |i: usize| pods[i]["ips"][0].as_str().unwrap().to_owned();
    let (_, status) = lab.json(&["status"]);
    let mtu = status["nodes"][0]["mtu"].as_u64().unwrap() as usize;
    assert_eq!(mtu, 1500 - 50);

    // 28 bytes of IPv4 + ICMP headers: this packet is exactly the pod MTU.
    assert!(
        df_ping(&ns(0), &ip(1), mtu - 28),
        "a full-size DF packet did not cross 1 -> 2"
    );
    assert!(
        df_ping(&ns(1), &ip(0), mtu - 28),
        "a full-size DF packet did not cross 2 -> 1"
    );

    // Force the pods up to the uplink's MTU: a full-size packet no longer
    // fits the tunnel, so the computed MTU is what made the path work.
    for (i, node) in record["nodes"].as_array().unwrap().iter().enumerate() {
        let node_ns = node["ns"].as_str().unwrap();
        let links = Command::new("ip")
            .args(["-n", node_ns, "-o", "link", "show"])
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&links.stdout).lines() {
            let name = line.split(": ").nth(1).unwrap().split('@').next().unwrap();
            if name.starts_with("pn") || name == "podnet0" {
                let ok = Command::new("ip")
                    .args(["-n", node_ns, "link", "set", name, "mtu", "1500"])
                    .status()
                    .unwrap();
                assert!(ok.success());
            }
        }
        let ok = Command::new("ip")
            .args(["-n", &ns(i), "link", "set", "eth0", "mtu", "1500"])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    assert!(
        !df_ping(&ns(0), &ip(1), 1500 - 28),
        "a 1500-byte DF packet crossed a 1450-byte tunnel?"
    );
    assert!(
        df_ping(&ns(0), &ip(1), mtu - 28),
        "smaller packets still flow"
    );
}
