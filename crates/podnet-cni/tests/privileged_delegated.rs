//! Delegated IPAM (the reference host-local and static plugins) and the
//! runtimeConfig `ips` and `mac` capabilities.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Node, TestNetns, first_ip};
use serde_json::{Value, json};

fn with_ipam(node: &Node, ipam: Value) -> Value {
    let mut conf = node.conf("unused");
    conf["ipam"] = ipam;
    conf
}

#[test]
fn privileged_host_local_ipam_is_delegated() {
    let node = Node::new();
    let hl = node.data.path().join("host-local");
    let conf = with_ipam(
        &node,
        json!({ "type": "host-local", "subnet": "10.244.95.0/24", "dataDir": hl }),
    );
    let (a, b) = (TestNetns::new("pntest-pod"), TestNetns::new("pntest-pod"));
    let ra = node.add("c1", &a, &conf).expect_ok().json();
    let rb = node.add("c2", &b, &conf).expect_ok().json();
    let ip = first_ip(&ra);
    assert!(ip.starts_with("10.244.95."), "{ra}");
    assert_eq!(ra["ips"][0]["interface"], 2);
    // host-local keeps its own state; podnet's built-in store is untouched.
    assert!(hl.join("testnet").join(&ip).exists());
    assert!(node.allocated().is_empty());
    assert!(a.ping(&first_ip(&rb)));
    node.check("c1", &a, &conf, &ra).expect_ok();

    // STATUS and GC (1.1): host-local predates them, which is not an error.
    let mut v11 = conf.clone();
    v11["cniVersion"] = json!("1.1.0");
    node.invoke(
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/usr/lib/cni")],
        v11.to_string().as_bytes(),
    )
    .expect_ok();
    v11["cni.dev/valid-attachments"] = json!([{ "containerID": "c1", "ifname": "eth0" }]);
    node.invoke(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")],
        v11.to_string().as_bytes(),
    )
    .expect_ok();
    assert_eq!(b.links(), ["lo"], "GC removed the stale pod's veth");

    node.del("c1", &a.path(), &conf).expect_ok();
    node.del("c2", &b.path(), &conf).expect_ok();
    assert!(
        !hl.join("testnet").join(&ip).exists(),
        "DEL released the host-local lease"
    );
    assert!(node.pod_veths().is_empty());
}

#[test]
fn privileged_static_ipam_is_delegated() {
    let node = Node::new();
    let conf = with_ipam(
        &node,
        json!({
            "type": "static",
            "addresses": [{ "address": "10.244.96.77/24", "gateway": "10.244.96.1" }],
        }),
    );
    let pod = TestNetns::new("pntest-pod");
    let r = node.add("c1", &pod, &conf).expect_ok().json();
    assert_eq!(r["ips"][0]["address"], "10.244.96.77/24");
    assert!(pod.ping("10.244.96.1"));
    node.del("c1", &pod.path(), &conf).expect_ok();
}

#[test]
fn privileged_failing_delegate_leaves_nothing() {
    let node = Node::new();
    let pod = TestNetns::new("pntest-pod");
    let missing = with_ipam(&node, json!({ "type": "no-such-ipam" }));
    let out = node.add("c1", &pod, &missing);
    assert_eq!(out.code(), 7);
    assert!(out.json()["msg"].as_str().unwrap().contains("no-such-ipam"));
    // host-local's own error code comes through.
    let bad = with_ipam(&node, json!({ "type": "host-local" }));
    let out = node.add("c1", &pod, &bad);
    assert!(!out.ok);
    assert!(
        out.json()["msg"].as_str().unwrap().contains("host-local"),
        "{}",
        out.stdout
    );
    assert!(
        node.ns.links().iter().all(|l| l == "lo"),
        "{:?}",
        node.ns.links()
    );
    assert_eq!(pod.links(), ["lo"]);
}

#[test]
fn privileged_runtime_config_ips_and_mac() {
    let node = Node::new();
    let mut conf = node.conf("10.244.97.0/24");
    conf["runtimeConfig"] = json!({ "ips": ["10.244.97.77/24"], "mac": "02:42:ac:11:00:77" });
    let pod = TestNetns::new("pntest-pod");
    let r = node.add("c1", &pod, &conf).expect_ok().json();
    assert_eq!(r["ips"][0]["address"], "10.244.97.77/24");
    assert_eq!(r["interfaces"][2]["mac"], "02:42:ac:11:00:77");
    assert_eq!(
        pod.ip_json(&["link", "show", "eth0"])[0]["address"],
        "02:42:ac:11:00:77"
    );
    // The same address for someone else is refused, and changes nothing.
    let other = TestNetns::new("pntest-pod");
    let out = node.add("c2", &other, &conf);
    assert!(out.json()["msg"].as_str().unwrap().contains("10.244.97.77"));
    assert_eq!(node.allocated(), ["10.244.97.77"]);
    assert_eq!(other.links(), ["lo"]);
}
