//! ipMasq: a pod reaches a host outside the cluster only through
//! masquerade, the rule lives in podnet's own table, and DEL removes it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Node, TestNetns, outside, sh};
use serde_json::json;

#[test]
fn privileged_ip_masq_rewrites_egress_and_del_removes_the_rule() {
    let node = Node::new();
    let ext = outside(&node.ns);
    let mut conf = node.conf("10.244.30.0/24");
    conf["ipMasq"] = json!(true);
    let (a, b) = (TestNetns::new("pntest-pod"), TestNetns::new("pntest-pod"));
    node.add("c1", &a, &conf).expect_ok();
    let rb = node.add("c2", &b, &conf).expect_ok().json();

    assert!(a.ping("192.0.2.2"), "masqueraded egress failed");
    let rules = sh(&node.ns, "nft list table inet podnet-cni");
    assert!(
        rules.contains("masquerade") && rules.contains("10.244.30.2"),
        "{rules}"
    );
    // Pod-to-pod traffic stays unNATed: excluded by the rule's daddr match.
    assert!(rules.contains("!= 10.244.30.0/24"), "{rules}");
    assert!(a.ping(common::first_ip(&rb).as_str()));

    node.del("c1", &a.path(), &conf).expect_ok();
    let rules = sh(&node.ns, "nft list table inet podnet-cni");
    assert!(!rules.contains("10.244.30.2"), "{rules}");
    assert!(
        rules.contains("10.244.30.3"),
        "the other pod's rule stays: {rules}"
    );
    node.del("c2", &b.path(), &conf).expect_ok();
    node.del("c2", "", &conf).expect_ok();
    drop(ext);
}

#[test]
fn privileged_without_ip_masq_egress_is_not_rewritten() {
    let node = Node::new();
    let _ext = outside(&node.ns);
    let conf = node.conf("10.244.31.0/24");
    let pod = TestNetns::new("pntest-pod");
    node.add("c1", &pod, &conf).expect_ok();
    assert!(!pod.ping("192.0.2.2"), "reply arrived without masquerade?");
    // The anti-spoofing table only: no NAT.
    assert_eq!(sh(&node.ns, "nft list tables"), "table bridge podnet-guard");
}
