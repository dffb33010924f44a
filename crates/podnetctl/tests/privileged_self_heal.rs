//! Self-healing on the node: a subnet file deleted or cut short while the
//! agent runs, a node back from a reboot with another underlay address,
//! and a node whose leased subnet changed while it was away.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Instant;

use common::{TestLab, add_pod, log_lines, ns_of, sh, wait_for};
use podnet_testkit::TestNetns;
use serde_json::{Value, json};

#[test]
fn privileged_a_deleted_or_cut_subnet_file_is_rewritten_at_the_next_resync() {
    let lab = TestLab::up(2, 1);
    let file = lab.path().join("node1/run/subnet.json");
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    wait_for("a deleted subnet file rewritten", || {
        std::fs::read_to_string(&file).is_ok_and(|s| s == good)
    });
    std::fs::write(&file, &good[..good.len() / 2]).unwrap();
    wait_for("a cut subnet file rewritten", || {
        std::fs::read_to_string(&file).is_ok_and(|s| s == good)
    });
    assert_eq!(log_lines(&lab, "node1", "subnet file was missing"), 2);
    lab.check_until_ok("after the rewrites");
}

#[test]
fn privileged_a_node_back_with_another_address_is_followed_by_its_peers() {
    let lab = TestLab::up_with(2, 1, &["--backend", "vxlan"]);
    lab.check_until_ok("vxlan lab");
    let node2 = ns_of(&lab, "nodes", 1);
    let node1 = ns_of(&lab, "nodes", 0);
    let mut record = lab.record();
    let old: String = record["nodes"][1]["addrs"][0].as_str().unwrap().to_owned();
    let new = "192.168.1.77";

    // The node reboots: its agent and vxlan device are gone, and it comes
    // back with another address.
    let (ok, out) = lab.ctl(&["agent", "node2", "stop"]);
    assert!(ok, "{out}");
    sh(
        &node2,
        &format!(
            "ip link del podnet.vxlan; ip addr del {old}/24 dev eth0; ip addr add {new}/24 dev eth0"
        ),
    );
    record["nodes"][1]["addrs"][0] = json!(new);
    std::fs::write(lab.path().join("lab.json"), record.to_string()).unwrap();
    let started = Instant::now();
    let (ok, out) = lab.ctl(&["agent", "node2", "start"]);
    assert!(ok, "{out}");
    wait_for(
        "node1's FDB entry for node2 points at its new address",
        || {
            let fdb = sh(&node1, "bridge fdb show dev podnet.vxlan");
            fdb.contains(&format!("dst {new}")) && !fdb.contains(&format!("dst {old}"))
        },
    );
    eprintln!(
        "node2's new address followed {:?} after its agent started",
        started.elapsed()
    );
    lab.check_until_ok("after node2 came back");
}

#[test]
fn privileged_a_node_whose_subnet_changed_gets_its_gateway_fixed() {
    let lab = TestLab::up(2, 1);
    lab.check_until_ok("lab up");
    let node1 = ns_of(&lab, "nodes", 0);
    let status = |i: usize| -> String {
        let (_, s) = lab.json(&["status"]);
        s["nodes"][i]["subnets"][0].as_str().unwrap().to_owned()
    };
    let old = status(0);
    let old_pod: Value = lab.record()["pods"][0].clone();
    assert_eq!(old_pod["node"], "node1");

    // node1 is away long enough to lose its lease, and node3 takes its
    // subnet: node1 comes back with another.
    let (ok, out) = lab.ctl(&["agent", "node1", "stop"]);
    assert!(ok, "{out}");
    let store = format!("file:{}", lab.path().join("store").display());
    let out = Command::new(env!("CARGO_BIN_EXE_podnetctl"))
        .args(["node", "remove", "node1", "--store", &store])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (ok, out) = lab.ctl(&["add-node"]);
    assert!(ok, "{out}");
    assert_eq!(status(2), old, "node3 did not take node1's subnet");
    let (ok, out) = lab.ctl(&["agent", "node1", "start"]);
    assert!(ok, "{out}");
    wait_for("node1's new lease", || {
        std::fs::read_to_string(lab.path().join("node1/run/subnet.json"))
            .is_ok_and(|s| !s.contains(&old))
    });
    let new = status(0);
    assert_ne!(new, old);

    // The old gateway is gone from the bridge, the old pod is named ...
    let old_gateway = old.replace(".0/", ".1/");
    wait_for("the old gateway removed", || {
        !sh(&node1, "ip -br addr show podnet0").contains(&old_gateway)
    });
    let old_ip = old_pod["ips"][0].as_str().unwrap();
    assert_eq!(
        log_lines(&lab, "node1", "pod on the old subnet"),
        1,
        "{old_ip} not named"
    );
    assert!(log_lines(&lab, "node1", old_ip) >= 1);

    // ... and nothing is wedged: a new pod gets the new subnet and reaches
    // node3's pod, which holds an address of node1's old subnet.
    let pod = TestNetns::new("pntest-pod");
    let (ok, result) = add_pod(&lab, "node1", &node1, "after-the-move", &pod.path());
    assert!(ok, "{result}");
    let ip: ipnet::IpNet = result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let new_net: ipnet::IpNet = new.parse().unwrap();
    assert!(new_net.contains(&ip.addr()), "{ip} is not in {new}");
    let node3_pod = pod_ip_on(&lab, "node3");
    wait_for("the new pod reaches node3's pod", || pod.ping(&node3_pod));
}

#[test]
fn privileged_a_pod_waits_while_its_nodes_podnetd_is_down() {
    let lab = TestLab::up(2, 1);
    let node1 = ns_of(&lab, "nodes", 0);
    let run_dir = lab.path().join("node1/run");
    let (ok, out) = lab.ctl(&["agent", "node1", "stop", "--kill"]);
    assert!(ok, "{out}");
    // Its subnet file survives, as in a hostPath; the pod still waits.
    assert!(run_dir.join("subnet.json").exists());
    let pod = TestNetns::new("pntest-pod");
    let (ok, result) = add_pod(&lab, "node1", &node1, "while-down", &pod.path());
    assert!(!ok);
    assert_eq!(result["code"], 11, "{result}");
    assert!(
        result["msg"]
            .as_str()
            .unwrap()
            .contains("podnetd is not running"),
        "{result}"
    );
    assert_eq!(
        sh(pod.name(), "ip -o link show eth0 2>/dev/null"),
        "",
        "nothing attached"
    );
    // Back: a retry, as the runtime makes, attaches it, and it reaches
    // node2's pod.
    let (ok, out) = lab.ctl(&["agent", "node1", "start"]);
    assert!(ok, "{out}");
    wait_for("the pod attached once podnetd is back", || {
        add_pod(&lab, "node1", &node1, "while-down", &pod.path()).0
    });
    let node2_pod = pod_ip_on(&lab, "node2");
    wait_for("the pod reaches node2's pod", || pod.ping(&node2_pod));
}

/// The first address of the lab's pod on `node`.
fn pod_ip_on(lab: &TestLab, node: &str) -> String {
    lab.record()["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node"] == node)
        .unwrap()["ips"][0]
        .as_str()
        .unwrap()
        .to_owned()
}
