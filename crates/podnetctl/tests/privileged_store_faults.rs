//! The store goes bad, the cluster does not: one corrupt lease record
//! costs only itself, and a store that cannot be read for 30 s costs no
//! packet.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::TestLab;
use serde_json::Value;

fn field(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|x| x[key].as_str().unwrap().to_owned())
        .collect()
}

/// A node's pod subnet, from the subnet file its agent wrote.
fn subnet_of(lab: &TestLab, node: &str) -> String {
    let raw = std::fs::read_to_string(lab.path().join(node).join("run/subnet.json")).unwrap();
    let file: Value = serde_json::from_str(&raw).unwrap();
    file["nodeSubnets"][0]["subnet"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// One lease record overwritten with garbage. Its node's agent repairs
/// it (its renewal rewrites it); meanwhile every other agent keeps the
/// last good version, so that node keeps its routes, and a node that
/// joins is reached by every pod. A record that stays bad (its agent is
/// stopped) is named by `lab check`, which still probes the whole matrix.
#[test]
fn privileged_a_corrupt_lease_record_costs_only_itself() {
    let lab = TestLab::up_with(3, 1, &["--backend", "vxlan"]);
    lab.check_until_ok("vxlan lab");
    let node_ns = field(&lab.record()["nodes"], "ns");
    let node2_subnet = subnet_of(&lab, "node2");

    std::fs::write(lab.path().join("store/leases/node2.json"), b"{ not json").unwrap();
    let corrupted = Instant::now();
    let (ok, text) = lab.ctl(&["add-node"]);
    assert!(ok, "add-node with a corrupt record in the store:\n{text}");
    let report = lab.check_until_ok("a node joined after node2's record went bad");
    let froms: std::collections::BTreeSet<&str> = report["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["from"].as_str())
        .collect();
    assert!(froms.contains("node4-pod1"), "the new node's pod is probed");
    for (ns, node) in [(&node_ns[0], "node1"), (&node_ns[2], "node3")] {
        let routes = common::sh(ns, "ip route show proto 112");
        assert!(
            routes.contains(&node2_subnet),
            "{ns} lost node2's route:\n{routes}"
        );
        assert_eq!(
            common::log_lines(&lab, node, "route removed"),
            0,
            "{node} dropped a route"
        );
    }

    // A record that stays bad: its agent is not there to repair it.
    let (ok, text) = lab.ctl(&["agent", "node3", "stop"]);
    assert!(ok, "{text}");
    std::fs::write(lab.path().join("store/leases/node3.json"), b"[]").unwrap();
    let (ok, text) = lab.ctl(&["check"]);
    assert!(ok, "lab check with an unreadable record:\n{text}");
    assert!(
        text.contains("probes ok")
            && text.contains("unreadable lease record in the store: leases/node3.json"),
        "the matrix and the record's name:\n{text}"
    );

    // Quiet logs: a record is reported when it goes bad and when it reads
    // again, never once per loop. And a record that stays bad keeps its
    // node reachable all along.
    let quiet = Duration::from_secs(30);
    std::thread::sleep(quiet.saturating_sub(corrupted.elapsed()));
    let (ok, report) = lab.json(&["check"]);
    assert!(ok, "30 s with node3's record unreadable: {report:#}");
    for node in ["node1", "node2", "node4"] {
        for record in ["node2.json", "node3.json"] {
            let n = common::log_lines(&lab, node, record);
            eprintln!("{node}: {n} log lines about {record} in {quiet:?}");
            assert!(n <= 2, "{node} logged {n} lines about {record}");
        }
    }
}

/// Root ignores permission bits, so a permission change would not stop
/// the agents from reading: the store directory is taken away instead,
/// which fails every read and write the way an unreadable store does.
/// With a 4 s lease TTL every lease runs out during the outage, so this
/// also proves that nobody is expired for it.
#[test]
fn privileged_an_unreadable_store_loses_no_packet() {
    let lab = TestLab::up_with(2, 1, &["--lease-ttl", "4"]);
    lab.check_until_ok("host-gw lab");
    let r = lab.record();
    let pod_ns = field(&r["pods"], "ns");
    let pod_ip: Vec<String> = r["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ips"][0].as_str().unwrap().to_owned())
        .collect();

    // 45 s of pings at 20/s, across nodes: 2 s before, 30 s without a
    // store, 13 s after (the leases are renewed and judged again).
    let ping = common::start_ping(&pod_ns[0], &pod_ip[1], 900);
    let store = lab.path().join("store");
    let away = lab.path().join("store.away");
    std::thread::sleep(Duration::from_secs(2));
    let _back = MoveBack(away.clone(), store.clone());
    std::fs::rename(&store, &away).unwrap();
    std::thread::sleep(Duration::from_secs(30));
    std::fs::rename(&away, &store).unwrap();

    let summary = common::ping_summary(ping);
    eprintln!("during 30 s without a store: {summary}");
    assert!(
        summary.starts_with("900 packets transmitted, 900 received"),
        "{summary}"
    );
    // Each agent said so once for its watch and once for its renewal, and
    // once each when they recovered: never once per retry.
    for node in ["node1", "node2"] {
        let down = common::log_lines(&lab, node, "store unavailable");
        let back = common::log_lines(&lab, node, "recovered after");
        eprintln!("{node}: {down} lines on the outage, {back} on recovering");
        assert!(
            (1..=2).contains(&down),
            "{node}: {down} lines on the outage"
        );
        assert!(
            (1..=2).contains(&back),
            "{node}: {back} lines on recovering"
        );
        assert_eq!(
            common::log_lines(&lab, node, "route removed"),
            0,
            "{node} dropped a route"
        );
    }
    let (ok, text) = lab.ctl(&["add-node"]);
    assert!(ok, "add-node after the outage:\n{text}");
    lab.check_until_ok("reconverged with a new node");
}

/// Puts the store back even if the test fails midway.
struct MoveBack(std::path::PathBuf, std::path::PathBuf);

impl Drop for MoveBack {
    fn drop(&mut self) {
        if Path::new(&self.0).exists() {
            let _ = std::fs::rename(&self.0, &self.1);
        }
    }
}
