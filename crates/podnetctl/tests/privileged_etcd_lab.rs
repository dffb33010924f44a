//! The lab on a real 3-member etcd: the same matrix as on the file store,
//! a killed leader, and every member frozen for 30 s.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{TestLab, Thaw, signal};
use serde_json::Value;

fn members(lab: &TestLab) -> Vec<Value> {
    let (ok, status) = lab.json(&["status"]);
    assert!(ok, "{status:#}");
    status["etcd"].as_array().unwrap().clone()
}

fn with_role<'a>(members: &'a [Value], role: &str) -> Vec<&'a Value> {
    members.iter().filter(|m| m["role"] == role).collect()
}

#[test]
fn privileged_etcd_lab_passes_and_survives_losing_its_leader() {
    let lab = TestLab::up_with(3, 1, &["--store", "etcd", "--backend", "vxlan"]);
    lab.check_until_ok("vxlan lab on etcd");
    let all = members(&lab);
    assert_eq!(all.len(), 3, "{all:?}");
    let leader = with_role(&all, "leader");
    assert_eq!(leader.len(), 1, "one leader: {all:?}");

    signal(&[leader[0]["pid"].as_i64().unwrap()], "-KILL");
    let started = Instant::now();
    let (ok, text) = lab.ctl(&["add-node"]);
    assert!(ok, "add-node after the leader died:\n{text}");
    lab.check_until_ok("a node joined through the remaining members");
    eprintln!("join after losing the leader: {:?}", started.elapsed());
    let after = members(&lab);
    assert_eq!(with_role(&after, "down").len(), 1, "{after:?}");
    assert_eq!(
        with_role(&after, "leader").len(),
        1,
        "a new leader: {after:?}"
    );
}

#[test]
fn privileged_frozen_etcd_loses_no_packet() {
    let lab = TestLab::up_with(2, 1, &["--store", "etcd"]);
    lab.check_until_ok("host-gw lab on etcd");
    let r = lab.record();
    let pod = |i: usize, field: &str| -> String {
        let p = &r["pods"][i];
        match field {
            "ns" => p["ns"].as_str().unwrap().to_owned(),
            _ => p["ips"][0].as_str().unwrap().to_owned(),
        }
    };
    let pids: Vec<i64> = members(&lab)
        .iter()
        .map(|m| m["pid"].as_i64().unwrap())
        .collect();

    // 36 s of pings at 20/s: 2 s before, 30 s with every member stopped.
    let ping = common::start_ping(&pod(0, "ns"), &pod(1, "ip"), 720);
    std::thread::sleep(Duration::from_secs(2));
    let _thaw = Thaw(pids.clone());
    signal(&pids, "-STOP");
    std::thread::sleep(Duration::from_secs(30));
    signal(&pids, "-CONT");
    let summary = common::ping_summary(ping);
    eprintln!("30 s with etcd frozen: {summary}");
    assert!(
        summary.starts_with("720 packets transmitted, 720 received"),
        "{summary}"
    );
    for node in ["node1", "node2"] {
        let down = common::log_lines(&lab, node, "store unavailable");
        eprintln!("{node}: {down} lines on the outage");
        assert!(
            (1..=2).contains(&down),
            "{node}: {down} lines on the outage"
        );
        assert_eq!(
            common::log_lines(&lab, node, "route removed"),
            0,
            "{node} dropped a route"
        );
    }
    // Thawed: a node that joins, and one that leaves, are seen by all.
    let (ok, text) = lab.ctl(&["add-node"]);
    assert!(ok, "add-node after the freeze:\n{text}");
    lab.check_until_ok("a node joined after the freeze");
    let (ok, text) = lab.ctl(&["remove-node", "node2"]);
    assert!(ok, "{text}");
    lab.check_until_ok("a node left after the freeze");
}

/// Each node's subnets, by name, as the lab's status reads them from the
/// store.
fn subnets(lab: &TestLab) -> Vec<(String, Value)> {
    let (ok, status) = lab.json(&["status"]);
    assert!(ok, "{status:#}");
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap().to_owned(), n["subnets"].clone()))
        .collect()
}

/// A member (the leader) cut off from the other two for 30 s under a
/// 20/s ping, with a LeaseTTL short enough that every agent renews
/// several times meanwhile: nothing is lost, no lease lapses, and the
/// agents whose calls went to the cut member carry on through the others.
#[test]
fn privileged_a_partitioned_etcd_member_loses_nothing() {
    let lab = TestLab::up_with(2, 1, &["--store", "etcd", "--lease-ttl", "8"]);
    lab.check_until_ok("host-gw lab on etcd");
    let before = subnets(&lab);
    let r = lab.record();
    let leader_pid = with_role(&members(&lab), "leader")[0]["pid"]
        .as_i64()
        .unwrap();
    let leader_ns = r["etcd"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["pid"].as_i64() == Some(leader_pid))
        .unwrap()["ns"]
        .as_str()
        .unwrap()
        .to_owned();
    let (from, to) = (
        r["pods"][0]["ns"].as_str().unwrap().to_owned(),
        r["pods"][1]["ips"][0].as_str().unwrap().to_owned(),
    );
    let ping = common::start_ping(&from, &to, 720);
    std::thread::sleep(Duration::from_secs(2));
    common::sh(&leader_ns, "ip link set eth0 down");
    std::thread::sleep(Duration::from_secs(30));
    common::sh(&leader_ns, "ip link set eth0 up");
    let summary = common::ping_summary(ping);
    eprintln!("30 s with the leader cut off: {summary}");
    assert!(
        summary.starts_with("720 packets transmitted, 720 received"),
        "{summary}"
    );
    for node in ["node1", "node2"] {
        for lost in [
            "route removed",
            "acquiring it again",
            "were given to another node",
        ] {
            assert_eq!(common::log_lines(&lab, node, lost), 0, "{node}: {lost}");
        }
    }
    assert_eq!(subnets(&lab), before, "no lease lapsed");
    let (ok, text) = lab.ctl(&["add-node"]);
    assert!(ok, "add-node after the partition:\n{text}");
    lab.check_until_ok("a node joined after the partition");
}

/// Every member frozen for longer than the LeaseTTL (10 s): on thaw, no
/// node has lost its subnet and none was given to another.
#[test]
fn privileged_etcd_frozen_past_the_lease_ttl_gives_no_subnet_away() {
    let lab = TestLab::up_with(2, 1, &["--store", "etcd", "--lease-ttl", "10"]);
    lab.check_until_ok("host-gw lab on etcd");
    let before = subnets(&lab);
    let pids: Vec<i64> = members(&lab)
        .iter()
        .map(|m| m["pid"].as_i64().unwrap())
        .collect();
    let thaw = Thaw(pids.clone());
    signal(&pids, "-STOP");
    std::thread::sleep(Duration::from_secs(15));
    drop(thaw);
    lab.check_until_ok("after the thaw");
    // Past a renewal or two: the subnets are where they were.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(subnets(&lab), before);
    for node in ["node1", "node2"] {
        for line in ["acquiring it again", "route removed", "store unavailable"] {
            eprintln!("{node}: {line}: {}", common::log_lines(&lab, node, line));
        }
        assert_eq!(
            common::log_lines(&lab, node, "were given to another node"),
            0,
            "{node}"
        );
    }
    lab.check_until_ok("a while after the thaw");
}
