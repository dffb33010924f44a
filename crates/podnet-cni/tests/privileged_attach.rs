//! The plugin on a real kernel: each test builds a node namespace and pod
//! namespaces, runs the real binary, and checks netlink state on both sides.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Node, TestNetns, first_ip, sh};
use serde_json::json;

#[test]
fn privileged_two_pods_on_one_node_reach_each_other() {
    let node = Node::new();
    let conf = node.conf("10.244.1.0/24");
    let (a, b) = (TestNetns::new("pntest-pod"), TestNetns::new("pntest-pod"));
    let ra = node.add("ctr-a", &a, &conf).expect_ok().json();
    let rb = node.add("ctr-b", &b, &conf).expect_ok().json();
    let (ip_a, ip_b) = (first_ip(&ra), first_ip(&rb));
    assert_ne!(ip_a, ip_b);

    // The result's shape, which chained plugins rely on.
    assert_eq!(ra["cniVersion"], "1.0.0");
    let ifaces = ra["interfaces"].as_array().unwrap();
    assert_eq!(ifaces.len(), 3);
    assert_eq!(ifaces[0]["name"], "podnet0");
    assert!(ifaces[1]["name"].as_str().unwrap().starts_with("pn"));
    assert_eq!(ifaces[2]["name"], "eth0");
    assert_eq!(ifaces[2]["sandbox"], a.path());
    assert!(ifaces[0].get("sandbox").is_none() && ifaces[1].get("sandbox").is_none());
    assert_eq!(ra["ips"][0]["interface"], 2);
    assert_eq!(ra["ips"][0]["gateway"], "10.244.1.1");

    // Node side: the bridge holds the gateway, has the MAC it was given
    // (not a port's), and the host veth is an up, hairpinned bridge port.
    let br = &node.ns.ip_json(&["-d", "addr", "show", "podnet0"])[0];
    assert!(
        br["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == "10.244.1.1" && a["prefixlen"] == 24)
    );
    assert_eq!(br["address"], ifaces[0]["mac"]);
    assert_ne!(br["address"], ifaces[1]["mac"]);
    let host_veth = ifaces[1]["name"].as_str().unwrap();
    let port = &node.ns.ip_json(&["-d", "link", "show", host_veth])[0];
    assert_eq!(port["master"], "podnet0");
    assert_eq!(port["linkinfo"]["info_slave_data"]["hairpin"], true);
    assert_eq!(port["operstate"], "UP");

    // Pod side: address, default route via the gateway, arp_notify.
    let pod = &a.ip_json(&["addr", "show", "eth0"])[0];
    assert!(
        pod["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["local"] == ip_a.as_str())
    );
    assert_eq!(pod["address"], ifaces[2]["mac"]);
    let default = a.ip_json(&["route", "show", "default"]);
    assert_eq!(default[0]["gateway"], "10.244.1.1");
    assert_eq!(sh(&a, "cat /proc/sys/net/ipv4/conf/eth0/arp_notify"), "1");

    assert!(a.ping(&ip_b), "pod a cannot reach pod b at {ip_b}");
    assert!(b.ping(&ip_a), "pod b cannot reach pod a at {ip_a}");
    assert!(a.ping("10.244.1.1"), "pod a cannot reach its gateway");

    node.del("ctr-a", &a.path(), &conf).expect_ok();
    node.del("ctr-b", &b.path(), &conf).expect_ok();
    assert!(node.pod_veths().is_empty());
    assert!(node.allocated().is_empty());
    assert_eq!(a.links(), ["lo"], "the pod end went with the host end");
}

#[test]
fn privileged_add_again_returns_the_same_ip_and_check_passes() {
    let node = Node::new();
    let conf = node.conf("10.244.2.0/24");
    let pod = TestNetns::new("pntest-pod");
    let first = node.add("ctr", &pod, &conf).expect_ok().json();
    let again = node.add("ctr", &pod, &conf).expect_ok().json();
    assert_eq!(first_ip(&first), first_ip(&again));
    assert_eq!(node.allocated().len(), 1);
    assert_eq!(node.pod_veths().len(), 1);
    node.check("ctr", &pod, &conf, &again).expect_ok();
}

#[test]
fn privileged_check_reports_drift() {
    let node = Node::new();
    let conf = node.conf("10.244.3.0/24");
    let pod = TestNetns::new("pntest-pod");
    let prev = node.add("ctr", &pod, &conf).expect_ok().json();
    node.check("ctr", &pod, &conf, &prev).expect_ok();

    pod.exec_ok(&["ip", "route", "del", "default"]);
    let out = node.check("ctr", &pod, &conf, &prev);
    assert_eq!(out.code(), 102);
    assert!(out.json()["msg"].as_str().unwrap().contains("0.0.0.0/0"));

    pod.exec_ok(&["ip", "route", "add", "default", "via", "10.244.3.1"]);
    node.check("ctr", &pod, &conf, &prev).expect_ok();
    let ip = format!("{}/24", first_ip(&prev));
    pod.exec_ok(&["ip", "addr", "del", &ip, "dev", "eth0"]);
    let out = node.check("ctr", &pod, &conf, &prev);
    assert!(
        out.json()["msg"].as_str().unwrap().contains(&ip),
        "{}",
        out.stdout
    );
}

#[test]
fn privileged_del_is_idempotent_and_needs_no_netns() {
    let node = Node::new();
    let conf = node.conf("10.244.4.0/24");

    // Repeated DEL, with the netns still there and without prevResult.
    let pod = TestNetns::new("pntest-pod");
    node.add("c1", &pod, &conf).expect_ok();
    node.del("c1", &pod.path(), &conf).expect_ok();
    node.del("c1", &pod.path(), &conf).expect_ok();

    // DEL after the netns is gone, and DEL with an empty CNI_NETNS (as
    // containerd sends the second time).
    let gone = TestNetns::new("pntest-pod");
    node.add("c2", &gone, &conf).expect_ok();
    let gone_path = gone.path();
    drop(gone);
    node.del("c2", &gone_path, &conf).expect_ok();
    let pod3 = TestNetns::new("pntest-pod");
    node.add("c3", &pod3, &conf).expect_ok();
    node.del("c3", "", &conf).expect_ok();
    node.del("c3", "", &conf).expect_ok();

    // DEL of something never added.
    node.del("never", "", &conf).expect_ok();

    assert!(node.allocated().is_empty(), "{:?}", node.allocated());
    assert!(node.pod_veths().is_empty(), "{:?}", node.pod_veths());
}

#[test]
fn privileged_del_with_prev_result_releases_too() {
    let node = Node::new();
    let conf = node.conf("10.244.5.0/24");
    let pod = TestNetns::new("pntest-pod");
    let prev = node.add("c1", &pod, &conf).expect_ok().json();
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = prev;
    node.del("c1", &pod.path(), &with_prev).expect_ok();
    assert!(node.allocated().is_empty());
}

#[test]
fn privileged_failed_add_leaves_nothing_behind() {
    let node = Node::new();
    // The extra route's gateway is unreachable, so the pod side fails after
    // the veth exists and the address is allocated.
    let mut conf = node.conf("10.244.6.0/24");
    conf["ipam"]["routes"] = json!([{ "dst": "10.99.0.0/16", "gw": "10.77.0.1" }]);
    let pod = TestNetns::new("pntest-pod");
    let out = node.add("c1", &pod, &conf);
    assert!(!out.ok);
    assert!(out.code() >= 100, "{}", out.stdout);
    assert!(node.pod_veths().is_empty(), "{:?}", node.pod_veths());
    assert_eq!(pod.links(), ["lo"]);
    assert!(node.allocated().is_empty());

    // An interface of the same name already in the pod: refused, no leak.
    let conf = node.conf("10.244.6.0/24");
    pod.exec_ok(&["ip", "link", "add", "eth0", "type", "bridge"]);
    let out = node.add("c2", &pod, &conf);
    assert!(
        out.json()["msg"].as_str().unwrap().contains("eth0"),
        "{}",
        out.stdout
    );
    assert!(node.pod_veths().is_empty());
    assert!(node.allocated().is_empty());
}

#[test]
fn privileged_bad_netns_is_code_4_and_changes_nothing() {
    let node = Node::new();
    let conf = node.conf("10.244.7.0/24");
    let out = node.run(
        "ADD",
        "c1",
        "/var/run/netns/pntest-does-not-exist",
        "eth0",
        &conf,
    );
    assert_eq!(out.code(), 4);
    // A file that is not a namespace.
    let file = node.data.path().join("not-a-netns");
    std::fs::write(&file, b"").unwrap();
    let out = node.run("ADD", "c1", file.to_str().unwrap(), "eth0", &conf);
    assert_eq!(out.code(), 4);
    assert!(node.allocated().is_empty());
    assert!(
        node.ns.links().iter().all(|l| l == "lo"),
        "{:?}",
        node.ns.links()
    );
}

#[test]
fn privileged_dual_stack_mtu_and_extra_routes() {
    let node = Node::new();
    let mut conf = node.conf("10.244.8.0/24");
    conf["mtu"] = json!(1400);
    conf["ipam"] = json!({
        "dataDir": node.data.path(),
        "ranges": [[{ "subnet": "10.244.8.0/24" }], [{ "subnet": "fd00:8::/64" }]],
        "routes": [{ "dst": "192.168.100.0/24" }],
    });
    let (a, b) = (TestNetns::new("pntest-pod"), TestNetns::new("pntest-pod"));
    let ra = node.add("c1", &a, &conf).expect_ok().json();
    let rb = node.add("c2", &b, &conf).expect_ok().json();
    assert_eq!(ra["ips"].as_array().unwrap().len(), 2);
    let v6 = ra["ips"][1]["address"].as_str().unwrap();
    assert!(v6.starts_with("fd00:8::"), "{v6}");

    let eth0 = &a.ip_json(&["addr", "show", "eth0"])[0];
    assert_eq!(eth0["mtu"], 1400);
    let host_veth = ra["interfaces"][1]["name"].as_str().unwrap();
    assert_eq!(
        node.ns.ip_json(&["link", "show", host_veth])[0]["mtu"],
        1400
    );
    // nodad: the address is usable at once, never "tentative".
    let v6_info = eth0["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["family"] == "inet6" && x["scope"] == "global")
        .unwrap()
        .clone();
    assert!(v6_info.get("tentative").is_none(), "{v6_info}");

    let routes = a.ip_json(&["route", "show"]);
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "192.168.100.0/24" && r["gateway"] == "10.244.8.1")
    );
    let routes6 = a.ip_json(&["-6", "route", "show", "default"]);
    assert_eq!(routes6[0]["gateway"], "fd00:8::1");

    let b6 = rb["ips"][1]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(a.ping(&b6), "pod a cannot reach pod b at {b6}");
    node.del("c1", "", &conf).expect_ok();
    node.del("c2", "", &conf).expect_ok();
    assert!(node.allocated().is_empty());
}

#[test]
fn privileged_mtu_defaults_to_the_default_route_interface() {
    let node = Node::new();
    // Give the node an uplink with MTU 1450 that carries its default route.
    node.ns.exec_ok(&[
        "ip", "link", "add", "uplink0", "mtu", "1450", "type", "veth", "peer", "name", "uplink1",
    ]);
    node.ns.exec_ok(&["ip", "link", "set", "uplink0", "up"]);
    node.ns
        .exec_ok(&["ip", "addr", "add", "192.0.2.2/24", "dev", "uplink0"]);
    node.ns
        .exec_ok(&["ip", "route", "add", "default", "via", "192.0.2.1"]);
    let conf = node.conf("10.244.9.0/24");
    let pod = TestNetns::new("pntest-pod");
    node.add("c1", &pod, &conf).expect_ok();
    assert_eq!(pod.ip_json(&["link", "show", "eth0"])[0]["mtu"], 1450);
}

#[test]
fn privileged_logs_never_reach_stdout() {
    let node = Node::new();
    let mut conf = node.conf("10.244.10.0/24");
    let log = node.data.path().join("podnet.log");
    conf["logFile"] = json!(log);
    let pod = TestNetns::new("pntest-pod");
    let out = node.add("c1", &pod, &conf).expect_ok();
    out.json(); // stdout is exactly one JSON document
    let bad = node.run("ADD", "c2", "/nonexistent", "eth0", &conf);
    bad.json();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("invoked") && logged.contains("c1"),
        "{logged}"
    );
    assert!(logged.contains("/nonexistent"), "{logged}");
}

#[test]
fn privileged_subnet_file_supplies_pool_and_mtu_else_try_again_later() {
    let node = Node::new();
    let mut conf = node.conf("unused");
    conf["ipam"] = json!({ "dataDir": node.data.path() });
    let file = node.data.path().join("subnet.json");
    conf["subnetFile"] = json!(file);
    let pod = TestNetns::new("pntest-pod");

    // No ranges and no subnet file yet: the node is not ready.
    let out = node.add("c1", &pod, &conf);
    assert_eq!(out.code(), 11, "{}", out.stdout);
    assert!(node.pod_veths().is_empty());
    // A file cut short (or empty) is not ready either: podnetd rewrites it.
    for cut in ["", "{\"version\": 1, \"clusterCi"] {
        std::fs::write(&file, cut).unwrap();
        let out = node.add("c1", &pod, &conf);
        assert_eq!(out.code(), 11, "{}", out.stdout);
        assert!(node.pod_veths().is_empty());
    }

    std::fs::write(
        &file,
        json!({
            "version": 1,
            "clusterCidrs": ["10.244.0.0/16"],
            "nodeSubnets": [{ "subnet": "10.244.50.0/24" }],
            "mtu": 1300,
        })
        .to_string(),
    )
    .unwrap();
    let r = node.add("c1", &pod, &conf).expect_ok().json();
    assert_eq!(first_ip(&r), "10.244.50.2");
    assert_eq!(r["ips"][0]["gateway"], "10.244.50.1");
    assert_eq!(pod.ip_json(&["link", "show", "eth0"])[0]["mtu"], 1300);

    // Ranges in the config win over the file, but must lie in the lease.
    let other = TestNetns::new("pntest-pod");
    let mut inside = conf.clone();
    inside["ipam"]["subnet"] = json!("10.244.50.0/24");
    inside["ipam"]["rangeStart"] = json!("10.244.50.100");
    let r = node.add("c2", &other, &inside).expect_ok().json();
    assert_eq!(first_ip(&r), "10.244.50.100");
    let mut outside = conf.clone();
    outside["ipam"]["subnet"] = json!("10.244.51.0/24");
    let out = node.add("c3", &TestNetns::new("pntest-pod"), &outside);
    assert_eq!(out.code(), 7);
    assert!(
        out.json()["msg"]
            .as_str()
            .unwrap()
            .contains("10.244.51.0/24"),
        "{}",
        out.stdout
    );
}
