//! Kubernetes Services in front of pods. kube-proxy DNATs a connection to a
//! Service address on the client's node, and only conntrack can turn the
//! backend's reply, which is pod-to-pod, back into the Service address. So
//! podnet's egress table must leave pod-to-pod traffic tracked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};

use common::TestLab;
use serde_json::Value;

/// A listener that is stopped even when the test fails.
struct Listener(Child);

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ns_of(record: &Value, key: &str, name: &str) -> (String, String) {
    let item = record[key]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in the lab"));
    let ip = item
        .get("ips")
        .map(|ips| ips[0].as_str().unwrap().to_owned())
        .unwrap_or_default();
    (item["ns"].as_str().unwrap().to_owned(), ip)
}

/// Whether a TCP connection from `ns` to `addr`:`port` is established.
fn connects(ns: &str, addr: &str, port: u16) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "5", "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/{addr}/{port}"))
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn privileged_service_replies_are_translated_back() {
    for backend in ["host-gw", "vxlan"] {
        let lab = TestLab::up_with(2, 2, &["--backend", backend]);
        lab.check_until_ok(backend);
        let r = lab.record();
        let (client, _) = ns_of(&r, "pods", "node1-pod1");
        let (near_ns, near_ip) = ns_of(&r, "pods", "node1-pod2");
        let (far_ns, far_ip) = ns_of(&r, "pods", "node2-pod1");
        let (node1, _) = ns_of(&r, "nodes", "node1");
        let _listeners: Vec<Listener> = [&near_ns, &far_ns]
            .iter()
            .map(|ns| {
                Listener(
                    Command::new("ip")
                        .args(["netns", "exec", ns, "iperf3", "-s", "-p", "5201"])
                        // Only connections are probed, not iperf's protocol:
                        // its complaints about that are noise.
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap(),
                )
            })
            .collect();
        // What kube-proxy does for two ClusterIP Services on the client's
        // node: one backend on the same node, one on the other.
        let rules = format!(
            "table ip kubesim {{
               chain prerouting {{
                 type nat hook prerouting priority dstnat; policy accept;
                 ip daddr 10.96.0.10 tcp dport 80 dnat to {far_ip}:5201
                 ip daddr 10.96.0.11 tcp dport 80 dnat to {near_ip}:5201
               }}
             }}"
        );
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &node1, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut nft.stdin.take().unwrap(), rules.as_bytes()).unwrap();
        assert!(nft.wait().unwrap().success(), "simulated kube-proxy rules");
        // The backends answer directly (the listeners are up) ...
        for ip in [&far_ip, &near_ip] {
            let started = std::time::Instant::now();
            while !connects(&client, ip, 5201) {
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(10),
                    "{backend}: {ip}:5201 never answered"
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        // ... and through their Services, which needs the reply un-DNATed.
        assert!(
            connects(&client, "10.96.0.10", 80),
            "{backend}: Service with a backend on another node"
        );
        assert!(
            connects(&client, "10.96.0.11", 80),
            "{backend}: Service with a backend on the same node"
        );
    }
}
