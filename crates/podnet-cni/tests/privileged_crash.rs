//! Crash safety on a real kernel: plugins killed with SIGKILL at arbitrary
//! instants of ADD never corrupt the IPAM state or hand out an address
//! twice, and the runtime's DELs afterwards leave nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Node, TestNetns, first_ip};

const PODS: usize = 16;

#[test]
fn privileged_killed_adds_neither_corrupt_nor_leak() {
    let node = Node::new();
    let conf = node.conf("10.244.40.0/24");
    let stdin = conf.to_string();
    let pods: Vec<TestNetns> = (0..PODS).map(|_| TestNetns::new("pntest-pod")).collect();
    let cid = |i: usize| format!("ctr-{i}");

    for round in 0..3 {
        let paths: Vec<String> = pods.iter().map(|p| p.path()).collect();
        let ids: Vec<String> = (0..PODS).map(cid).collect();
        let mut children: Vec<_> = (0..PODS)
            .map(|i| {
                node.spawn(
                    &Node::vars("ADD", &ids[i], &paths[i], "eth0"),
                    stdin.as_bytes(),
                )
            })
            .collect();
        // Kill them at staggered instants: some before they start, some
        // mid-transaction, some after they finish.
        for (i, child) in children.iter_mut().enumerate() {
            std::thread::sleep(Duration::from_micros(
                ((i * 7919 + round * 31) % 4000) as u64,
            ));
            let _ = child.kill();
        }
        for mut child in children {
            let _ = child.wait();
        }

        // The state is intact, and every allocation belongs to one of ours.
        let held = node.allocated();
        eprintln!(
            "round {round}: {} of {PODS} allocations survived the kills",
            held.len()
        );
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(node.data.path().join("testnet/state.json"))
                .unwrap_or("{\"allocations\":{}}".into()),
        )
        .unwrap();
        let owners: Vec<&str> = state["allocations"]
            .as_object()
            .unwrap()
            .values()
            .map(|a| a["containerId"].as_str().unwrap())
            .collect();
        let unique: HashSet<&&str> = owners.iter().collect();
        assert_eq!(
            unique.len(),
            owners.len(),
            "one container holds two addresses: {owners:?}"
        );

        // The runtime retries: DEL for every ADD that did not answer.
        for (i, pod) in pods.iter().enumerate() {
            node.del(&cid(i), &pod.path(), &conf).expect_ok();
        }
        assert!(
            node.allocated().is_empty(),
            "leaked: {:?}",
            node.allocated()
        );
        assert!(
            node.pod_veths().is_empty(),
            "leaked: {:?}",
            node.pod_veths()
        );
    }

    // And the node still works: every pod gets a distinct address.
    let ips: HashSet<String> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| first_ip(&node.add(&cid(i), pod, &conf).expect_ok().json()))
        .collect();
    assert_eq!(ips.len(), PODS);
    for (i, pod) in pods.iter().enumerate() {
        node.del(&cid(i), &pod.path(), &conf).expect_ok();
    }
}
