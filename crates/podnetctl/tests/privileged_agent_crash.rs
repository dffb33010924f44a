//! podnetd killed (SIGKILL) at each of its failpoints mid-reconcile, on a
//! node whose datapath is gone as after a reboot: between the nexthop
//! objects and the routes, halfway through the routes, and right after
//! the egress table was replaced. Restarted, it converges, and the node's
//! own route, nexthop object and nftables table are never touched. Needs
//! podnetd built with feature `failpoints` (`./test.sh` builds it so).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestLab, log_lines, sh};

const POINTS: [&str; 3] = [
    "agent-between-nexthops-and-routes",
    "agent-mid-batch",
    "agent-egress-update",
];

/// What a node's administrator made: a nexthop object, routes through it
/// and with protocol static, and a table of their own.
const FOREIGN: &str = "ip nexthop add id 7 via 192.168.1.1 dev eth0; \
    ip route add 10.98.0.0/24 nhid 7; \
    ip route add 10.99.0.0/24 via 192.168.1.1 proto static; \
    nft add table inet admin; nft add chain inet admin keep";

fn foreign(ns: &str) -> String {
    format!(
        "{}\n{}\n{}",
        sh(ns, "ip nexthop show id 7"),
        sh(ns, "ip route show 10.98.0.0/24; ip route show 10.99.0.0/24"),
        sh(ns, "nft list table inet admin")
    )
}

#[test]
fn privileged_agent_killed_mid_reconcile_converges_on_restart() {
    let lab = TestLab::up(3, 1);
    lab.check_until_ok("lab up");
    let ns = lab.record()["nodes"][0]["ns"].as_str().unwrap().to_owned();
    sh(&ns, FOREIGN);
    let before = foreign(&ns);
    assert!(
        before.contains("nhid 7") && before.contains("keep"),
        "{before}"
    );

    for point in POINTS {
        let (ok, out) = lab.ctl(&["agent", "node1", "stop"]);
        assert!(ok, "{out}");
        // A reboot took podnetd's routes, nexthop objects and egress table.
        sh(
            &ns,
            "ip route flush proto 112; ip nexthop flush proto 112; nft delete table inet podnet",
        );
        let out = Command::new(env!("CARGO_BIN_EXE_podnetctl"))
            .args(["lab", "agent", "node1", "start", "--dir"])
            .arg(lab.path())
            .env("PODNET_FAILPOINT", point)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let started = Instant::now();
        while log_lines(&lab, "node1", &format!("failpoint {point}")) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "podnetd never reached {point} (built without --features podnetd/failpoints?)"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // SIGKILL follows the line at once. What it left is half done.
        std::thread::sleep(Duration::from_millis(200));
        let count = |cmd: &str| sh(&ns, cmd).parse::<usize>().unwrap();
        let hops = count("ip nexthop show | grep -c 'proto 112' || true");
        let routes = count("ip route show proto 112 | wc -l");
        eprintln!("{point}: killed with {hops} nexthop objects and {routes} routes of 2");
        match point {
            "agent-between-nexthops-and-routes" => assert_eq!((hops, routes), (2, 0)),
            "agent-mid-batch" => assert_eq!((hops, routes), (2, 1)),
            _ => assert_eq!((hops, routes), (2, 2)),
        }
        let (ok, out) = lab.ctl(&["agent", "node1", "start"]);
        assert!(ok, "{out}");
        lab.check_until_ok(point);
        assert_eq!(foreign(&ns), before, "{point}: a foreign object changed");
    }
}
