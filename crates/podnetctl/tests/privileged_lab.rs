//! The lab end to end: real agents and the real plugin in namespaces.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{TestLab, cells};
use ipnet::IpNet;
use serde_json::Value;

const CAP: Duration = Duration::from_secs(30);

#[test]
fn privileged_seeds_scenario_two_nodes_one_pod_each() {
    let lab = TestLab::up(2, 1);
    let (_, status) = lab.json(&["status"]);
    let nodes = status["nodes"].as_array().unwrap();
    let ips: Vec<&str> = nodes
        .iter()
        .map(|n| n["addrs"][0].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["192.168.1.2", "192.168.1.3"]);
    // Each node leased its own subnet of 10.244.0.0/16; they do not overlap.
    let cluster: IpNet = "10.244.0.0/16".parse().unwrap();
    let subnets: Vec<IpNet> = nodes
        .iter()
        .map(|n| n["subnets"][0].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(subnets.iter().all(|s| cluster.contains(s)));
    assert!(
        !subnets[0].contains(&subnets[1].network()) && !subnets[1].contains(&subnets[0].network())
    );
    // The pods got addresses from their own node's subnet: no collision.
    for (node, subnet) in nodes.iter().zip(&subnets) {
        let pod_ip: IpAddr = node["pods"][0][1][0].as_str().unwrap().parse().unwrap();
        assert!(subnet.contains(&pod_ip), "{pod_ip} not in {subnet}");
    }

    let report = lab.check_until_ok("seeds scenario");
    // Pod to pod across nodes: the receiver saw the sender's own pod IP.
    let p2p: Vec<&Value> = cells(&report, "pod-to-pod").collect();
    assert_eq!(p2p.len(), 2);
    for c in &p2p {
        assert_eq!(c["ok"], true);
        assert!(c["seen"].as_str().unwrap().starts_with("10.244."), "{c}");
    }
    // Each node reaches the other node's pod, seen as that node's address.
    for c in cells(&report, "node-to-pod") {
        let seen = c["seen"].as_str().unwrap();
        assert_eq!(c["ok"], true, "{c}");
        if !c["to"]
            .as_str()
            .unwrap()
            .starts_with(c["from"].as_str().unwrap())
        {
            assert!(seen.starts_with("192.168.1."), "{c}");
        }
    }
}

#[test]
fn privileged_three_nodes_two_pods_check_passes() {
    let lab = TestLab::up(3, 2);
    let report = lab.check_until_ok("3x2 lab");
    assert_eq!(
        report["cells"].as_array().unwrap().len(),
        6 * 5 + 3 * 6 + 6 * 3 + 6
    );
    // External traffic leaves masqueraded as the pod's node.
    for c in cells(&report, "pod-to-external") {
        assert!(c["seen"].as_str().unwrap().starts_with("192.168.1."), "{c}");
    }
    let (ok, text) = lab.ctl(&["up", "--nodes", "1"]);
    assert!(!ok && text.contains("already exists"), "{text}");
}

#[test]
fn privileged_nodes_join_and_leave_a_running_lab() {
    let lab = TestLab::up(2, 1);
    lab.check_until_ok("initial lab");
    // Convergence: from the join to every pod reaching node3's pod (and
    // node3's pod every other pod and node).
    let joined = Instant::now();
    let (ok, text) = lab.ctl(&["add-node"]);
    assert!(ok, "{text}");
    lab.check_until_ok("after node3 joined");
    eprintln!("node3 joined and converged in {:?}", joined.elapsed());

    let (_, status) = lab.json(&["status"]);
    let node2_subnet = status["nodes"][1]["subnets"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, text) = lab.ctl(&["remove-node", "node2"]);
    assert!(ok, "{text}");
    let started = Instant::now();
    loop {
        let (_, status) = lab.json(&["status"]);
        let stale = status["nodes"].as_array().unwrap().iter().any(|n| {
            n["routes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r[0] == node2_subnet.as_str())
        });
        if !stale {
            eprintln!("node2's routes gone after {:?}", started.elapsed());
            break;
        }
        assert!(
            started.elapsed() < CAP,
            "routes to {node2_subnet} outlived node2"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    lab.check_until_ok("after node2 left");
}
