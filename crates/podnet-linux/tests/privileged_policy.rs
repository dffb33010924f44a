//! NetworkPolicy's table on a real kernel: a node with a bridge and three
//! pods, policies compiled by the core and written by `nft::policy`; every
//! pod pair and port, connected for real, gives the model's verdict. Then
//! a change is one transaction, and a connection it denies that was
//! established lives on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use podnet_core::policy::compile::compile;
use podnet_core::policy::{Cluster, Connection, Endpoint, NamedPort, NetworkPolicy, Pod, Protocol};
use podnet_linux::nft::policy;
use podnet_testkit::{TestNetns, in_netns};

const PODS: [&str; 3] = ["a", "b", "c"];
const PORTS: [u16; 2] = [80, 81];

struct Node {
    node: TestNetns,
    pods: Vec<TestNetns>,
    listeners: Vec<TcpListener>,
}

fn sh(ns: &TestNetns, script: &str) {
    ns.exec_ok(&["sh", "-c", script]);
}

fn ip_of(i: usize) -> String {
    format!("10.250.0.{}", i + 2)
}

/// A bridge with three pods on it, each listening on 80 and 81.
fn node() -> Node {
    let node = TestNetns::new("pnpol");
    sh(
        &node,
        "ip link add br0 type bridge && ip addr add 10.250.0.1/24 dev br0 && ip link set br0 up",
    );
    let mut pods = Vec::new();
    let mut listeners = Vec::new();
    for (i, _) in PODS.iter().enumerate() {
        let pod = TestNetns::new("pnpolp");
        sh(
            &node,
            &format!(
                "ip link add v{i} type veth peer name eth0 netns {pod} && ip link set v{i} master br0 up",
                pod = pod.name()
            ),
        );
        sh(
            &pod,
            &format!(
                "ip addr add {}/24 dev eth0 && ip link set eth0 up && ip link set lo up && ip route add default via 10.250.0.1",
                ip_of(i)
            ),
        );
        for port in PORTS {
            listeners.push(in_netns(&pod.path(), || {
                TcpListener::bind(("0.0.0.0", port)).unwrap()
            }));
        }
        pods.push(pod);
    }
    Node {
        node,
        pods,
        listeners,
    }
}

fn cluster(policies: &str) -> Cluster {
    let mut c = Cluster::default();
    c.namespaces.insert(
        "x".into(),
        [("kubernetes.io/metadata.name".to_owned(), "x".to_owned())].into(),
    );
    for (i, name) in PODS.iter().enumerate() {
        c.pods.push(Pod {
            namespace: "x".into(),
            name: (*name).into(),
            node: "node1".into(),
            labels: [("pod".to_owned(), (*name).to_owned())].into(),
            ips: vec![ip_of(i).parse().unwrap()],
            ports: PORTS
                .iter()
                .map(|p| NamedPort {
                    name: format!("serve-{p}-tcp"),
                    port: *p,
                    protocol: Protocol::TCP,
                })
                .collect(),
        });
    }
    c.policies = NetworkPolicy::parse_all(policies).unwrap();
    c
}

fn connects(from: &TestNetns, to: usize, port: u16) -> bool {
    let addr: SocketAddr = format!("{}:{port}", ip_of(to)).parse().unwrap();
    in_netns(&from.path(), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
    })
}

/// Every pair and port: what the kernel did, against the model.
fn matrix(n: &Node, c: &Cluster) -> (usize, usize) {
    let (mut allowed, mut denied) = (0, 0);
    for (i, from) in n.pods.iter().enumerate() {
        for j in (0..PODS.len()).filter(|j| *j != i) {
            for port in PORTS {
                let (src, dst) = (&c.pods[i], &c.pods[j]);
                let want = c.allows(&Connection {
                    src: Endpoint::Pod(src, src.ips[0]),
                    dst: Endpoint::Pod(dst, dst.ips[0]),
                    protocol: Some(Protocol::TCP),
                    port,
                });
                let got = connects(from, j, port);
                assert_eq!(got, want, "{} -> {}:{port}", PODS[i], PODS[j]);
                if got { allowed += 1 } else { denied += 1 }
            }
        }
    }
    (allowed, denied)
}

const POLICIES: &str = r#"
kind: NetworkPolicy
metadata: {name: a-from-b-on-80, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: 80}]}]
---
kind: NetworkPolicy
metadata: {name: c-out-by-name, namespace: x}
spec:
  podSelector: {matchLabels: {pod: c}}
  policyTypes: [Egress]
  egress: [{ports: [{port: serve-81-tcp}]}]
"#;

#[test]
fn privileged_the_compiled_table_enforces_the_model() {
    let n = node();
    let bridged = in_netns(&n.node.path(), || {
        std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
    });
    assert_eq!(
        bridged.unwrap_or_default().trim(),
        "1",
        "br_netfilter is a prerequisite"
    );
    let before = cluster("");
    assert_eq!(matrix(&n, &before), (12, 0));

    let c = cluster(POLICIES);
    let ruleset = compile(&c, "node1");
    in_netns(&n.node.path(), || policy::write(&ruleset)).unwrap();
    let (allowed, denied) = matrix(&n, &c);
    eprintln!(
        "{allowed} allowed, {denied} denied, as the model says; {} rules",
        ruleset.rule_count()
    );
    assert!(allowed > 0 && denied > 0);

    // A connection b made to a on 80 stays up when a new state denies it;
    // a new one is refused.
    let mut kept = in_netns(&n.pods[1].path(), || {
        TcpStream::connect_timeout(
            &format!("{}:80", ip_of(0)).parse().unwrap(),
            Duration::from_secs(1),
        )
        .unwrap()
    });
    // The matrix's connections wait in the backlog too: take this one.
    let local = kept.local_addr().unwrap();
    let accepted = std::iter::repeat_with(|| n.listeners[0].accept().unwrap())
        .find(|(_, peer)| *peer == local)
        .unwrap()
        .0;
    let deny_all = cluster(
        "kind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec: {podSelector: {}}",
    );
    in_netns(&n.node.path(), || {
        policy::write(&compile(&deny_all, "node1"))
    })
    .unwrap();
    assert!(!connects(&n.pods[1], 0, 80));
    let mut reader = accepted;
    kept.write_all(b"still").unwrap();
    let mut got = [0u8; 5];
    reader
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    reader.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"still");
    assert_eq!(matrix(&n, &deny_all), (0, 12));
}

/// The table as `nft -j` lists it, each set's elements sorted: a hash
/// set lists them in no particular order.
fn listed(ns: &TestNetns) -> serde_json::Value {
    let text = ns.exec_ok(&["nft", "-j", "list", "table", "inet", "podnet-policy"]);
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for item in v["nftables"].as_array_mut().unwrap() {
        if let Some(elems) = item["set"]["elem"].as_array_mut() {
            elems.sort_by_key(|e| e.to_string());
        }
        // Handles number objects in the order they were made.
        for kind in ["set", "chain", "rule", "table"] {
            if let Some(o) = item[kind].as_object_mut() {
                o.remove("handle");
            }
        }
    }
    v
}

/// A pod added and one relabelled change only elements: they are applied
/// as one element batch, and the table is then exactly the one a whole
/// write of the new state makes.
#[test]
fn privileged_element_updates_equal_a_whole_write() {
    let n = TestNetns::new("pnpolu");
    let policies = format!(
        "{POLICIES}---\nkind: NetworkPolicy\nmetadata: {{name: blocks, namespace: x}}\n\
         spec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress: [{{to: [{{ipBlock: \
         {{cidr: 10.0.0.0/8, except: [10.250.0.0/24]}}}}, {{podSelector: {{matchLabels: \
         {{pod: b}}}}}}]}}]\n"
    );
    let mut old = cluster(&policies);
    // Both families in use before and after: the first address of a
    // family changes the table's shape (a whole write, below).
    old.pods[0].ips.push("fd00::2".parse().unwrap());
    let mut new = old.clone();
    let mut d = new.pods[1].clone();
    d.name = "d".into();
    d.ips = vec!["10.250.0.9".parse().unwrap(), "fd00::9".parse().unwrap()];
    new.pods.push(d);
    new.pods[2].labels.insert("pod".into(), "b".into());
    let (a, b) = (compile(&old, "node1"), compile(&new, "node1"));
    let changes = policy::changes(&a, &b).expect("only elements differ");
    assert!(changes.len() >= 4, "{changes:?}");
    let (stepped, whole) = in_netns(&n.path(), || {
        policy::write(&a).unwrap();
        let how = policy::update(&a, &b).unwrap();
        assert_eq!(how, policy::Update::Elements(changes.len()));
        let stepped = listed(&n);
        policy::write(&b).unwrap();
        (stepped, listed(&n))
    });
    assert_eq!(stepped, whole);
    // A node's only pod coming and going: elements, never the shape.
    let mut lone = cluster(&policies);
    lone.pods.truncate(1);
    let mut none = lone.clone();
    none.pods.clear();
    assert!(
        policy::changes(&compile(&none, "node1"), &compile(&lone, "node1")).is_some(),
        "the first IPv4 pod changes elements only"
    );
    let v4_only = cluster(&policies);
    assert!(
        policy::changes(&compile(&v4_only, "node1"), &a).is_none(),
        "the first IPv6 address: IPv6's sets and rules appear"
    );
    // A new policy is a new rule: the whole table.
    let more = cluster(&format!(
        "{policies}---\nkind: NetworkPolicy\nmetadata: {{name: more, namespace: x}}\n\
         spec: {{podSelector: {{}}}}\n"
    ));
    let c = compile(&more, "node1");
    assert!(policy::changes(&b, &c).is_none());
    let how = in_netns(&n.path(), || policy::update(&b, &c)).unwrap();
    assert_eq!(how, policy::Update::Whole);
}
