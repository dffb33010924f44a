//! The agent's lifecycle in the lab: restarts that cost no packet, nodes
//! leaving (lease expiry, `podnetctl node remove`), `podnetd --cleanup`,
//! and drift repair.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{TestLab, wait_for};
use serde_json::Value;

/// Runs a command to success, showing its stderr if it fails.
fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Names {
    node_ns: Vec<String>,
    pod_ns: Vec<String>,
    pod_ip: Vec<String>,
}

fn names(lab: &TestLab) -> Names {
    let r: Value = lab.record();
    let list = |key: &str, field: &str| -> Vec<String> {
        r[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x[field].as_str().unwrap().to_owned())
            .collect()
    };
    Names {
        node_ns: list("nodes", "ns"),
        pod_ns: list("pods", "ns"),
        pod_ip: r["pods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["ips"][0].as_str().unwrap().to_owned())
            .collect(),
    }
}

/// podnetd's view of a peer in one node: its routes, FDB and neighbours.
fn owned_state(node_ns: &str) -> String {
    common::sh(
        node_ns,
        "ip route show proto 112; bridge fdb show dev podnet.vxlan 2>/dev/null | grep permanent; \
         ip neigh show dev podnet.vxlan 2>/dev/null",
    )
}

#[test]
fn privileged_agent_restarts_lose_no_packet() {
    for backend in ["host-gw", "vxlan"] {
        let lab = TestLab::up_with(2, 1, &["--backend", backend]);
        lab.check_until_ok(&format!("{backend} lab"));
        let n = names(&lab);
        for (i, node, signal) in [(0, "node1", None), (1, "node2", Some("--kill"))] {
            let before = owned_state(&n.node_ns[i]);
            // 60 pings at 50 ms across nodes, while the agent restarts.
            let ping = common::start_ping(&n.pod_ns[0], &n.pod_ip[1], 60);
            std::thread::sleep(Duration::from_millis(500));
            let mut args = vec!["agent", node, "restart"];
            args.extend(signal);
            let (ok, text) = lab.ctl(&args);
            assert!(ok, "{text}");
            let summary = common::ping_summary(ping);
            eprintln!(
                "{backend}, restart {node} {}: {summary}",
                signal.unwrap_or("(SIGTERM)")
            );
            assert!(
                summary.contains("60 received"),
                "{backend}: packets lost across a restart: {summary}"
            );
            // The restarted agent adopted its state: nothing changed.
            assert_eq!(
                owned_state(&n.node_ns[i]),
                before,
                "{backend}: state changed across a restart"
            );
        }
    }
}

#[test]
fn privileged_departed_nodes_are_removed_everywhere() {
    let lab = TestLab::up_with(3, 1, &["--backend", "vxlan", "--lease-ttl", "3"]);
    lab.check_until_ok("vxlan lab with a 3 s lease TTL");
    let n = names(&lab);
    let peer_state = |peer_ip: &str| {
        let s = owned_state(&n.node_ns[0]);
        s.lines().filter(|l| l.contains(peer_ip)).count()
    };
    let record = lab.record();
    let ip_of = |i: usize| record["nodes"][i]["addrs"][0].as_str().unwrap().to_owned();
    let subnet_of = |i: usize| {
        let (_, status) = lab.json(&["status"]);
        status["nodes"][i]["subnets"][0]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    };

    // SIGKILL leaves the lease and the datapath in place ...
    let node2_ip = ip_of(1);
    let node2_subnet = subnet_of(1);
    let (ok, text) = lab.ctl(&["agent", "node2", "stop", "--kill"]);
    assert!(ok, "{text}");
    assert!(peer_state(&node2_ip) > 0 && owned_state(&n.node_ns[0]).contains(&node2_subnet));
    // ... until the lease expires: then node1 forgets node2 entirely.
    wait_for(
        "node2's route, FDB and neighbour gone after its lease expired",
        || {
            let s = owned_state(&n.node_ns[0]);
            !s.contains(&node2_ip) && !s.contains(&node2_subnet)
        },
    );

    // An operator removes node3 (its agent stopped by SIGTERM first, which
    // also leaves the lease in place).
    let node3_ip = ip_of(2);
    let (ok, text) = lab.ctl(&["agent", "node3", "stop"]);
    assert!(ok, "{text}");
    assert!(peer_state(&node3_ip) > 0, "{}", owned_state(&n.node_ns[0]));
    let store = format!("file:{}", lab.path().join("store").display());
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_podnetctl"))
            .args(["node", "remove", "node3", "--store", &store]),
    );
    wait_for("node3's entries gone after `podnetctl node remove`", || {
        peer_state(&node3_ip) == 0
    });
}

#[test]
fn privileged_cleanup_removes_everything_the_agent_owns() {
    let lab = TestLab::up_with(2, 1, &["--backend", "vxlan"]);
    lab.check_until_ok("vxlan lab");
    let n = names(&lab);
    let (ok, text) = lab.ctl(&["agent", "node1", "stop"]);
    assert!(ok, "{text}");
    let run_dir = lab.path().join("node1/run");
    assert!(run_dir.join("subnet.json").exists());
    let podnetd = std::path::Path::new(env!("CARGO_BIN_EXE_podnetctl")).with_file_name("podnetd");
    let cleanup = || {
        run_ok(
            Command::new("ip")
                .args(["netns", "exec", &n.node_ns[0]])
                .arg(&podnetd)
                .arg("--cleanup")
                .arg("--run-dir")
                .arg(&run_dir),
        )
    };
    cleanup();
    assert_eq!(common::sh(&n.node_ns[0], "ip route show proto 112"), "");
    assert_eq!(common::sh(&n.node_ns[0], "ip nexthop show proto 112"), "");
    assert_eq!(
        common::sh(
            &n.node_ns[0],
            "ip link show podnet.vxlan 2>&1 >/dev/null | grep -c . || true"
        ),
        "1"
    );
    assert!(!run_dir.join("subnet.json").exists());
    // What is not the agent's stays: the pod's attachment, and the
    // plugin's anti-spoofing table that guards it.
    assert_eq!(
        common::sh(&n.node_ns[0], "nft list tables"),
        "table bridge podnet-guard"
    );
    assert!(common::sh(&n.node_ns[0], "ip -o link show").contains("podnet0"));
    // Once the last pod is gone, the clean-up takes the pods' tables too.
    common::sh(
        &n.node_ns[0],
        "for l in $(ip -o link show | grep -o 'pn[0-9a-f]\\{12\\}'); do ip link del $l; done",
    );
    cleanup();
    assert_eq!(common::sh(&n.node_ns[0], "nft list tables"), "");
}

#[test]
fn privileged_drift_is_repaired() {
    let lab = TestLab::up_with(2, 1, &["--backend", "vxlan"]);
    lab.check_until_ok("vxlan lab");
    let n = names(&lab);
    let node1 = n.node_ns[0].as_str();
    let route = common::sh(node1, "ip route show proto 112 | head -n 1");
    let dst = route.split_whitespace().next().unwrap().to_owned();
    let fdb = common::sh(
        node1,
        "bridge fdb show dev podnet.vxlan | grep permanent | grep dst | head -n 1",
    );
    let mac = fdb.split_whitespace().next().unwrap().to_owned();
    let neigh = common::sh(node1, "ip neigh show dev podnet.vxlan | head -n 1");
    let neigh_ip = neigh.split_whitespace().next().unwrap().to_owned();

    common::sh(node1, &format!("ip route del {dst}"));
    assert!(!common::sh(node1, "ip route show proto 112").contains(&dst));
    wait_for("a deleted route restored", || {
        common::sh(node1, "ip route show proto 112").contains(&dst)
    });

    // Deleting the route's nexthop object takes the route along; both
    // come back.
    let nhid = route
        .split_whitespace()
        .skip_while(|w| *w != "nhid")
        .nth(1)
        .expect("the route goes through a nexthop object")
        .to_owned();
    common::sh(node1, &format!("ip nexthop del id {nhid}"));
    assert!(!common::sh(node1, "ip route show proto 112").contains(&dst));
    wait_for("a deleted nexthop object and its route restored", || {
        common::sh(node1, "ip route show proto 112").contains(&dst)
    });

    // "<mac> dst <ip> self permanent"
    let fdb_dst = fdb.split_whitespace().nth(2).unwrap();
    common::sh(
        node1,
        &format!("bridge fdb del {mac} dev podnet.vxlan dst {fdb_dst}"),
    );
    assert!(
        !common::sh(node1, "bridge fdb show dev podnet.vxlan").contains(&mac),
        "the FDB entry was not deleted"
    );
    wait_for("a deleted FDB entry restored", || {
        common::sh(node1, "bridge fdb show dev podnet.vxlan").contains(&mac)
    });

    common::sh(node1, &format!("ip neigh del {neigh_ip} dev podnet.vxlan"));
    assert!(
        !common::sh(node1, "ip neigh show dev podnet.vxlan").contains(&neigh_ip),
        "the neighbour was not deleted"
    );
    wait_for("a deleted neighbour entry restored", || {
        common::sh(node1, "ip neigh show dev podnet.vxlan").contains(&neigh_ip)
    });
    lab.check_until_ok("after drift repair");
}
