//! STATUS and GC (CNI 1.1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Node, TestNetns, first_ip, sh};
use serde_json::{Value, json};

fn status(node: &Node, conf: &Value) -> common::Outcome {
    node.invoke(
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/usr/lib/cni")],
        conf.to_string().as_bytes(),
    )
}

fn gc(node: &Node, conf: &Value, key: &str, valid: &[&str]) -> common::Outcome {
    let mut conf = conf.clone();
    conf[key] = valid
        .iter()
        .map(|c| json!({"containerID": c, "ifname": "eth0"}))
        .collect();
    node.invoke(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")],
        conf.to_string().as_bytes(),
    )
}

#[test]
fn privileged_status_reports_readiness() {
    let node = Node::new();
    // No ranges and no subnet file: no subnet is known.
    let mut bare = node.conf("unused");
    bare["cniVersion"] = json!("1.1.0");
    bare["ipam"] = json!({ "dataDir": node.data.path() });
    assert_eq!(status(&node, &bare).code(), 50);

    let mut conf = node.conf("10.244.80.0/24");
    conf["cniVersion"] = json!("1.1.0");
    conf["ipam"]["rangeStart"] = json!("10.244.80.10");
    conf["ipam"]["rangeEnd"] = json!("10.244.80.10");
    let out = status(&node, &conf).expect_ok();
    assert_eq!(out.stdout, "", "STATUS prints nothing on success");

    let pod = TestNetns::new("pntest-pod");
    node.add("c1", &pod, &conf).expect_ok();
    let out = status(&node, &conf);
    assert_eq!(out.code(), 50);
    assert!(out.json()["msg"].as_str().unwrap().contains("exhausted"));
    node.del("c1", "", &conf).expect_ok();
    status(&node, &conf).expect_ok();
}

#[test]
fn privileged_gc_releases_only_stale_attachments_of_its_own() {
    let node = Node::new();
    let mut conf = node.conf("10.244.81.0/24");
    conf["cniVersion"] = json!("1.1.0");
    conf["ipMasq"] = json!(true);
    let pods: Vec<TestNetns> = (0..3).map(|_| TestNetns::new("pntest-pod")).collect();
    let results: Vec<Value> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| node.add(&format!("c{i}"), p, &conf).expect_ok().json())
        .collect();

    // Things GC must leave alone: a foreign veth on our bridge, a
    // pn-named veth on another bridge, another network's IPAM state.
    node.ns.exec_ok(&[
        "ip", "link", "add", "foreign0", "type", "veth", "peer", "name", "foreign1",
    ]);
    node.ns
        .exec_ok(&["ip", "link", "set", "foreign0", "master", "podnet0"]);
    node.ns
        .exec_ok(&["ip", "link", "add", "otherbr", "type", "bridge"]);
    node.ns.exec_ok(&[
        "ip",
        "link",
        "add",
        "pnnotours0",
        "type",
        "veth",
        "peer",
        "name",
        "pnnotours1",
    ]);
    node.ns
        .exec_ok(&["ip", "link", "set", "pnnotours0", "master", "otherbr"]);
    let mut other_net = node.conf("10.244.82.0/24");
    other_net["name"] = json!("othernet");
    let other_pod = TestNetns::new("pntest-pod");
    other_net["bridge"] = json!("otherbr");
    node.add("other-c", &other_pod, &other_net).expect_ok();

    gc(&node, &conf, "cni.dev/valid-attachments", &["c0"]).expect_ok();

    let links = node.ns.links();
    let veth = |r: &Value| r["interfaces"][1]["name"].as_str().unwrap().to_owned();
    assert!(links.contains(&veth(&results[0])), "{links:?}");
    assert!(
        !links.contains(&veth(&results[1])) && !links.contains(&veth(&results[2])),
        "{links:?}"
    );
    for keep in ["foreign0", "pnnotours0", "otherbr"] {
        assert!(
            links.iter().any(|l| l == keep),
            "GC removed {keep}: {links:?}"
        );
    }
    assert_eq!(node.allocated(), [first_ip(&results[0])]);
    let other_state =
        std::fs::read_to_string(node.data.path().join("othernet/state.json")).unwrap();
    assert!(
        other_state.contains("10.244.82.2"),
        "another network's state was touched"
    );
    let rules = sh(&node.ns, "nft list table inet podnet-cni");
    assert!(rules.contains(&first_ip(&results[0])), "{rules}");
    assert!(!rules.contains(&first_ip(&results[1])), "{rules}");
    assert!(pods[1].links() == ["lo"]);
    // The survivor still works.
    node.check("c0", &pods[0], &conf, &results[0]).expect_ok();

    // The older key is accepted too, and an empty list releases all.
    gc(&node, &conf, "cni.dev/attachments", &[]).expect_ok();
    assert!(node.allocated().is_empty());
    assert!(!node.ns.links().contains(&veth(&results[0])));
}
