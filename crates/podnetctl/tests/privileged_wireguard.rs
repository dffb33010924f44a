//! The wireguard backend on wireguard-go (this kernel has no WireGuard):
//! what crosses the underlay, its lifecycle as the other backends', and
//! bad input named by its field.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::process::Command;

use common::{TestLab, sh, wait_for};
use podnet_testkit::forge::Sniffer;
use serde_json::Value;

/// What a pod sends across: ping fills its payload with this pattern.
const MARKER: &[u8] = b"podnet-marker!";

struct Lab {
    lab: TestLab,
    record: Value,
}

impl Lab {
    fn up(nodes: usize, extra: &[&str]) -> Lab {
        let mut args = vec!["--backend", "wireguard"];
        args.extend_from_slice(extra);
        let lab = TestLab::up_with(nodes, 1, &args);
        lab.check_until_ok("wireguard lab");
        let record = lab.record();
        Lab { lab, record }
    }

    fn node_ns(&self, i: usize) -> String {
        self.record["nodes"][i]["ns"].as_str().unwrap().to_owned()
    }

    fn pod(&self, node: &str) -> (String, String) {
        let pod = self.record["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["node"] == node)
            .unwrap();
        (
            pod["ns"].as_str().unwrap().to_owned(),
            pod["ips"][0].as_str().unwrap().to_owned(),
        )
    }

    /// Node `i`'s tunnel, as `lab status --json` shows it.
    fn tunnel(&self, i: usize) -> Value {
        let (_, status) = self.lab.json(&["status"]);
        status["nodes"][i]["tunnels"][0].clone()
    }

    fn peer_keys(&self, i: usize) -> Vec<String> {
        let mut keys: Vec<String> = self.tunnel(i)["peers"]
            .as_array()
            .map(|peers| {
                peers
                    .iter()
                    .map(|p| p["public_key"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        keys.sort();
        keys
    }

    fn ctl_ok(&self, args: &[&str]) {
        let (ok, text) = self.lab.ctl(args);
        assert!(ok, "lab {args:?}: {text}");
    }

    /// The wireguard-go serving node `i`.
    fn wireguard_go(&self, i: usize) -> Vec<String> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.node_ns(i)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "wireguard-go")
            })
            .map(str::to_owned)
            .collect()
    }

    /// Runs `wg` against node `i`'s wireguard-go, in a mount namespace
    /// where its socket directory is the standard one.
    fn wg(&self, i: usize, args: &str) -> String {
        let node = self.record["nodes"][i]["name"].as_str().unwrap();
        let sockets = self.lab.path().join(node).join("wireguard");
        sh(
            &self.node_ns(i),
            &format!(
                "unshare --mount --propagation private sh -c \
                 'mount --bind {} /run/wireguard && wg {args}' 2>&1",
                sockets.display()
            ),
        )
    }
}

/// Pings pod `to` from pod namespace `from` with the marker as payload,
/// capturing what arrives at the receiving node's underlay port; whether
/// a pod address and the marker showed in it.
fn capture(l: &Lab, from: &str, to: &str) -> (bool, bool) {
    let sniffer = Sniffer::new(&format!("/run/netns/{}", l.node_ns(1)), "eth0");
    let pattern: String = MARKER.iter().map(|b| format!("{b:02x}")).collect();
    let out = sh(from, &format!("ping -c 3 -i 0.2 -p {pattern} {to}"));
    assert!(out.contains("3 received"), "{out}");
    let frames = sniffer.arrived();
    assert!(!frames.is_empty(), "nothing captured");
    let pods: Vec<[u8; 4]> = [from_ip(l, "node1"), from_ip(l, "node2")]
        .into_iter()
        .map(|ip| match ip {
            IpAddr::V4(v4) => v4.octets(),
            IpAddr::V6(_) => unreachable!(),
        })
        .collect();
    let has = |needle: &[u8]| {
        frames
            .iter()
            .any(|f| f.windows(needle.len()).any(|w| w == needle))
    };
    (pods.iter().any(|p| has(p)), has(&MARKER[..8]))
}

fn from_ip(l: &Lab, node: &str) -> IpAddr {
    l.pod(node).1.parse().unwrap()
}

#[test]
fn privileged_wireguard_encrypts_what_vxlan_shows() {
    for backend in ["wireguard", "vxlan"] {
        let lab = TestLab::up_with(2, 1, &["--backend", backend]);
        lab.check_until_ok(backend);
        let l = Lab {
            record: lab.record(),
            lab,
        };
        let (from, _) = l.pod("node1");
        let (_, to) = l.pod("node2");
        let (addresses, marker) = capture(&l, &from, &to);
        eprintln!("{backend}: pod addresses on the underlay: {addresses}, marker: {marker}");
        match backend {
            "wireguard" => assert!(
                !addresses && !marker,
                "wireguard leaks: addresses {addresses}, marker {marker}"
            ),
            _ => assert!(
                addresses && marker,
                "the capture must see vxlan's clear text, or it proves nothing"
            ),
        }
    }
}

#[test]
fn privileged_wireguard_lifecycle() {
    let l = Lab::up(3, &[]);
    assert_eq!(l.peer_keys(0).len(), 2, "{}", l.tunnel(0));
    let node_key = |i: usize| l.tunnel(i)["public_key"].as_str().unwrap().to_owned();
    // No private key anywhere in what status shows.
    let (_, status) = l.lab.json(&["status"]);
    let private = std::fs::read_to_string(l.lab.path().join("node1/state/wireguard.key")).unwrap();
    assert!(!status.to_string().contains(private.trim()));

    // Restarts, SIGTERM and SIGKILL, under 50 ms pings: nothing lost, the
    // same wireguard-go adopted, the same peers.
    let (from, _) = l.pod("node2");
    let (_, to) = l.pod("node1");
    for (node, kill) in [("node1", None), ("node2", Some("--kill"))] {
        let (go, peers) = (l.wireguard_go(0), l.peer_keys(0));
        let ping = common::start_ping(&from, &to, 60);
        std::thread::sleep(std::time::Duration::from_millis(500));
        let mut args = vec!["agent", node, "restart"];
        args.extend(kill);
        l.ctl_ok(&args);
        let summary = common::ping_summary(ping);
        eprintln!("restart {node} {kill:?}: {summary}");
        assert!(summary.contains("60 received"), "{summary}");
        assert_eq!((l.wireguard_go(0), l.peer_keys(0)), (go, peers));
    }

    // A peer removed by hand, and the device deleted (its wireguard-go
    // exits with it): both back within a resync.
    let node2_key = node_key(1);
    let repairs = || common::log_lines(&l.lab, "node1", "backend entries had drifted");
    let before = repairs();
    let removed = l.wg(0, &format!("set podnet-wg peer {node2_key} remove"));
    assert_eq!(removed, "", "wg set: {removed}");
    wait_for("a removed peer restored", || {
        repairs() > before && l.peer_keys(0).contains(&node2_key)
    });
    let old = l.wireguard_go(0);
    sh(&l.node_ns(0), "ip link del podnet-wg");
    wait_for(
        "a deleted device made again, with a new wireguard-go",
        || {
            let now = l.wireguard_go(0);
            !now.is_empty() && now != old && l.peer_keys(0).len() == 2
        },
    );
    l.lab.check_until_ok("after the device came back");
    // `wg` itself works against a lab node.
    assert!(l.wg(0, "show podnet-wg").contains(&node2_key));

    // A node whose key changed is followed by its peers.
    l.ctl_ok(&["agent", "node2", "stop"]);
    std::fs::remove_file(l.lab.path().join("node2/state/wireguard.key")).unwrap();
    l.ctl_ok(&["agent", "node2", "start"]);
    wait_for("node2 announces a new key", || node_key(1) != node2_key);
    let new_key = node_key(1);
    wait_for("node1 follows node2's new key", || {
        let keys = l.peer_keys(0);
        keys.contains(&new_key) && !keys.contains(&node2_key)
    });
    l.lab.check_until_ok("after node2's key changed");

    // A corrupt key in one lease costs only that node.
    let node3_key = node_key(2);
    l.ctl_ok(&["agent", "node3", "stop", "--kill"]);
    let lease = l.lab.path().join("store/leases/node3.json");
    let raw = std::fs::read_to_string(&lease).unwrap();
    std::fs::write(&lease, raw.replace(&node3_key, "c2hvcnQ=")).unwrap();
    wait_for("node3 unrouted once its key is corrupt", || {
        !l.peer_keys(0).contains(&node3_key)
    });
    let (from, _) = l.pod("node1");
    let (_, to) = l.pod("node2");
    assert!(sh(&from, &format!("ping -c 2 -i 0.2 {to}")).contains("2 received"));
    l.ctl_ok(&["agent", "node3", "start"]);
    wait_for("node3 back once it announced its key again", || {
        l.peer_keys(0).contains(&node3_key)
    });

    // Nodes leave and join.
    l.ctl_ok(&["remove-node", "node3"]);
    wait_for("node3's peer gone", || l.peer_keys(0).len() == 1);
    l.ctl_ok(&["add-node"]);
    wait_for("the new node's peer", || l.peer_keys(0).len() == 2);
    l.lab.check_until_ok("after a node left and one joined");
}

#[test]
fn privileged_wireguard_bad_input_names_the_field() {
    let l = Lab::up(1, &[]);
    let log = l.lab.path().join("node1/podnetd.log");
    let podnetd = std::path::Path::new(env!("CARGO_BIN_EXE_podnetctl")).with_file_name("podnetd");
    l.ctl_ok(&["agent", "node1", "stop"]);

    // A bad PSK: refused before anything is written.
    let conf = l.lab.path().join("bad-psk.json");
    std::fs::write(
        &conf,
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"wireguard","PSK":"c2hvcnQ="}}"#,
    )
    .unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &l.node_ns(0)])
        .arg(&podnetd)
        .arg("--net-conf")
        .arg(&conf)
        .arg("--store")
        .arg(format!("file:{}", l.lab.path().join("store").display()))
        .arg("--run-dir")
        .arg(l.lab.path().join("node1/bad-run"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Backend.PSK"),
        "{err}"
    );

    // A key file of the wrong length: named, and nothing starts.
    let key = l.lab.path().join("node1/state/wireguard.key");
    std::fs::write(&key, "c2hvcnQ=\n").unwrap();
    // (`agent start` may see the stale subnet file and return at once.)
    let _ = l.lab.ctl(&["agent", "node1", "start"]);
    wait_for("podnetd refuses the key, naming its file", || {
        let text = std::fs::read_to_string(&log).unwrap();
        text.contains(&key.display().to_string()) && text.contains("32 bytes")
    });
    wait_for("podnetd gone", || {
        let (_, status) = l.lab.json(&["status"]);
        status["nodes"][0]["agent_running"] == false
    });
    std::fs::remove_file(&key).unwrap();

    // The listen port taken by someone else: the error names the field.
    sh(&l.node_ns(0), "ip link del podnet-wg");
    let holder = Command::new("ip")
        .args(["netns", "exec", &l.node_ns(0), "python3", "-c"])
        .arg(
            "import socket,time; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
             s.bind(('0.0.0.0', 51820)); time.sleep(60)",
        )
        .spawn()
        .unwrap();
    let _holder = KillOnDrop(holder);
    wait_for("the port taken", || {
        sh(&l.node_ns(0), "ss -uln 'sport = 51820'").contains("51820")
    });
    l.ctl_ok(&["agent", "node1", "start"]);
    wait_for("the port's field named in the log", || {
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("Backend.ListenPort 51820")
    });

    // `--cleanup` takes the device, and its wireguard-go goes with it.
    l.ctl_ok(&["agent", "node1", "stop"]);
    assert!(!l.wireguard_go(0).is_empty());
    let out = Command::new("ip")
        .args(["netns", "exec", &l.node_ns(0)])
        .arg(&podnetd)
        .arg("--cleanup")
        .arg("--run-dir")
        .arg(l.lab.path().join("node1/run"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sh(&l.node_ns(0), "ip -o link show podnet-wg 2>/dev/null"),
        ""
    );
    wait_for("wireguard-go gone with its device", || {
        l.wireguard_go(0).is_empty()
    });
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn privileged_wireguard_dual_stack_over_a_routed_underlay() {
    let l = Lab::up(2, &["--routed", "--dual-stack"]);
    // Separate mode: a device per family, each with the other node's
    // subnet of its family and its address there.
    let (_, status) = l.lab.json(&["status"]);
    let tunnels = status["nodes"][0]["tunnels"].as_array().unwrap();
    let devices: Vec<&str> = tunnels
        .iter()
        .map(|t| t["device"].as_str().unwrap())
        .collect();
    assert_eq!(devices, ["podnet-wg", "podnet-wg-v6"]);
    for t in tunnels {
        assert_eq!(t["peers"].as_array().unwrap().len(), 1, "{t}");
    }
    assert_eq!(
        (
            tunnels[0]["listen_port"].as_u64(),
            tunnels[1]["listen_port"].as_u64()
        ),
        (Some(51820), Some(51821))
    );
}
