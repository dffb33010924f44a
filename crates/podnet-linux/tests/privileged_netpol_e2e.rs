//! The ported upstream e2e cases on the kernel: upstream's 9 pods on one
//! node's bridge (so every packet crosses `br_netfilter` and both
//! chains), each serving TCP and UDP on 80 and 81; for every step the
//! policies are compiled and written as `inet podnet-policy`, every
//! ordered pair is probed for real, and the observed table is held to
//! upstream's. SCTP steps are skipped here (this kernel has no SCTP; the
//! pure runner covers them). Cross-node enforcement is the lab's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use podnet_core::policy::Protocol;
use podnet_core::policy::compile::compile;
use podnet_linux::nft::policy;
use podnet_testkit::netpol::{self, NAMESPACES, PODS, PORTS, Table};
use podnet_testkit::netpol_cases::cases;
use podnet_testkit::{TestNetns, in_netns};

const PROBE: Duration = Duration::from_millis(300);

struct Node {
    node: TestNetns,
    /// By `ns/pod`.
    pods: Vec<(String, TestNetns)>,
}

fn sh(ns: &TestNetns, script: &str) {
    ns.exec_ok(&["sh", "-c", script]);
}

/// Serves TCP (accepting and closing) and UDP (answering every datagram)
/// on 80 and 81 in `pod`, for the rest of the test.
fn serve(pod: &TestNetns) {
    for port in PORTS {
        let tcp = in_netns(&pod.path(), || {
            TcpListener::bind(("0.0.0.0", port)).unwrap()
        });
        std::thread::spawn(move || {
            for c in tcp.incoming() {
                drop(c)
            }
        });
        let udp = in_netns(&pod.path(), || UdpSocket::bind(("0.0.0.0", port)).unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(&buf[..n], from);
            }
        });
    }
}

fn node() -> Node {
    let node = TestNetns::new("pnnp");
    sh(
        &node,
        "ip link add br0 type bridge && ip addr add 10.250.255.254/16 dev br0 && ip link set br0 up",
    );
    let mut pods = Vec::new();
    for (n, ns) in NAMESPACES.iter().enumerate() {
        for (p, name) in PODS.iter().enumerate() {
            let pod = TestNetns::new("pnnpp");
            let i = n * 3 + p;
            sh(
                &node,
                &format!(
                    "ip link add v{i} type veth peer name eth0 netns {} && ip link set v{i} master br0 up",
                    pod.name()
                ),
            );
            sh(
                &pod,
                &format!(
                    "ip addr add {}/16 dev eth0 && ip link set eth0 up && ip link set lo up",
                    netpol::address(n, p)
                ),
            );
            serve(&pod);
            pods.push((format!("{ns}/{name}"), pod));
        }
    }
    Node { node, pods }
}

fn probe(from: &TestNetns, to: SocketAddr, protocol: Protocol) -> bool {
    in_netns(&from.path(), || match protocol {
        Protocol::TCP => TcpStream::connect_timeout(&to, PROBE).is_ok(),
        _ => {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_read_timeout(Some(PROBE)).unwrap();
            let mut buf = [0u8; 8];
            s.send_to(b"probe", to).is_ok() && s.recv_from(&mut buf).is_ok()
        }
    })
}

/// Every ordered pair probed at once.
fn observe(n: &Node, protocol: Protocol, port: u16) -> Table {
    let addr = |id: &str| -> SocketAddr {
        let i = n.pods.iter().position(|(p, _)| p == id).unwrap();
        SocketAddr::new(netpol::address(i / 3, i % 3).into(), port)
    };
    let cells: Vec<((String, String), bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = n
            .pods
            .iter()
            .flat_map(|(from, ns)| {
                n.pods
                    .iter()
                    .filter(move |(to, _)| to != from)
                    .map(move |(to, _)| {
                        let target = addr(to);
                        let key = (from.clone(), to.clone());
                        s.spawn(move || (key, probe(ns, target, protocol)))
                    })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut t: Table = cells.into_iter().collect();
    for (id, _) in &n.pods {
        t.insert((id.clone(), id.clone()), true);
    }
    t
}

#[test]
fn privileged_upstream_cases_hold_on_the_kernel() {
    let n = node();
    let started = Instant::now();
    let (mut steps, mut skipped) = (0, 0);
    let mut failures = Vec::new();
    for case in cases() {
        for (i, step) in case.steps.iter().enumerate() {
            let protocol = netpol::protocol(step.protocol);
            if protocol == Protocol::SCTP {
                skipped += 1;
                continue;
            }
            let c = netpol::cluster(step.relabel, step.policies, 1).unwrap();
            in_netns(&n.node.path(), || policy::write(&compile(&c, "node1"))).unwrap();
            let expected = netpol::expected(step);
            let observed = observe(&n, protocol, step.port);
            let at = format!("{} step {i} ({} {})", case.name, step.protocol, step.port);
            failures.extend(netpol::compare(&at, &expected, &observed));
            steps += 1;
        }
    }
    eprintln!(
        "{} cases: {steps} steps on the kernel ({skipped} SCTP steps skipped), {} failed, in {:?}",
        cases().len(),
        failures.len(),
        started.elapsed()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
