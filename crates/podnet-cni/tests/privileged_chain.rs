//! podnet first in a conflist with the reference meta plugins (portmap,
//! bandwidth, tuning, firewall), pinned to 1.0.0 as they support no newer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Node, TestNetns, first_ip, outside, sh};
use serde_json::json;

#[test]
fn privileged_chain_with_reference_plugins_and_host_port() {
    let node = Node::new();
    // An outside host that reaches the node at 192.0.2.1.
    let ext = outside(&node.ns);

    let mut podnet = node.conf("10.244.90.0/24");
    podnet.as_object_mut().unwrap().remove("cniVersion");
    podnet.as_object_mut().unwrap().remove("name");
    let list = json!({
        "cniVersion": "1.0.0",
        "name": "testnet",
        "plugins": [
            podnet,
            { "type": "portmap", "capabilities": { "portMappings": true } },
            { "type": "bandwidth", "capabilities": { "bandwidth": true } },
            { "type": "tuning", "sysctl": { "net.core.somaxconn": "1234" } },
            { "type": "firewall", "backend": "iptables" },
        ],
    });
    let runtime = json!({
        "portMappings": [{ "hostPort": 8080, "containerPort": 80, "protocol": "tcp" }],
        "bandwidth": { "ingressRate": 100_000_000, "ingressBurst": 1_000_000,
                       "egressRate": 100_000_000, "egressBurst": 1_000_000 },
    });
    let pod = TestNetns::new("pntest-pod");
    let result = node
        .chain("ADD", "c1", &pod, &list, &runtime, None)
        .unwrap()
        .unwrap();
    let ip = first_ip(&result);
    assert_eq!(result["interfaces"][2]["name"], "eth0");

    // portmap: the outside host reaches the pod through the hostPort, and
    // the pod sees the outside host's own address.
    pod.serve_peer_addr("0.0.0.0:80");
    let seen = ext
        .seen_as("192.0.2.1:8080")
        .expect("hostPort 8080 did not reach the pod");
    assert_eq!(seen, "192.0.2.2");
    // bandwidth shaped the host veth; tuning set the pod's sysctl; the
    // firewall plugin admitted the pod's address.
    let host_veth = result["interfaces"][1]["name"].as_str().unwrap();
    assert!(sh(&node.ns, &format!("tc qdisc show dev {host_veth}")).contains("tbf"));
    assert_eq!(sh(&pod, "cat /proc/sys/net/core/somaxconn"), "1234");
    assert!(sh(&node.ns, "iptables -S CNI-FORWARD").contains(&ip));

    // Debian's portmap (1.1.x) fails CHECK on any pod by looking for IPv6
    // rules it never made (containernetworking/plugins#819), so CHECK runs
    // the list without it, as a runtime with disableCheck on portmap would.
    let mut checkable = list.clone();
    checkable["plugins"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["type"] != "portmap");
    node.chain("CHECK", "c1", &pod, &checkable, &runtime, Some(&result))
        .unwrap();
    node.chain("DEL", "c1", &pod, &list, &runtime, Some(&result))
        .unwrap();
    assert!(
        ext.seen_as("192.0.2.1:8080").is_err(),
        "the hostPort outlived DEL"
    );
    assert!(!sh(&node.ns, "iptables -S CNI-FORWARD").contains(&ip));
    assert!(node.pod_veths().is_empty() && node.allocated().is_empty());
    // DEL again, as runtimes do.
    node.chain("DEL", "c1", &pod, &list, &runtime, Some(&result))
        .unwrap();
}
