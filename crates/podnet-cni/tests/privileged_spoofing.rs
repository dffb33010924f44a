//! Anti-spoofing on one node: a pod's forged frames (another pod's
//! address, another node's subnet, an outside address, another MAC, ARP
//! and NDP claims) are dropped where they enter the node; its own traffic
//! flows. The same frames from a pod attached with `antiSpoofing: false`
//! do arrive, so the test can tell.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use common::{Node, TestNetns};
use podnet_testkit::forge::{self, Listener};
use serde_json::{Value, json};

struct Pod {
    ns: TestNetns,
    mac: [u8; 6],
    v4: IpAddr,
    v6: IpAddr,
}

impl Pod {
    fn ip(&self, v4: bool) -> IpAddr {
        if v4 { self.v4 } else { self.v6 }
    }
}

fn conf(node: &Node) -> Value {
    let mut conf = node.conf("10.244.1.0/24");
    conf["ipam"] = json!({
        "ranges": [[{ "subnet": "10.244.1.0/24" }], [{ "subnet": "fd00:1::/64" }]],
        "dataDir": node.data.path(),
    });
    conf
}

fn add(node: &Node, cid: &str, conf: &Value) -> Pod {
    let ns = TestNetns::new("pntest-pod");
    let result = node.add(cid, &ns, conf).expect_ok().json();
    let ip = |i: usize| {
        let a = result["ips"][i]["address"].as_str().unwrap();
        a.split('/').next().unwrap().parse().unwrap()
    };
    let mac = forge::mac(&ns.path(), "eth0");
    Pod {
        v4: ip(0),
        v6: ip(1),
        ns,
        mac,
    }
}

/// Sends one labelled datagram per (label, source) from `from` to `to`
/// and returns the labels that arrived.
fn deliver(from: &Pod, mac: [u8; 6], to: &Pod, cases: &[(&str, IpAddr)]) -> BTreeSet<String> {
    let listener = Listener::new(&to.ns.path());
    for (label, src) in cases {
        let dst = to.ip(src.is_ipv4());
        let frame = forge::udp(mac, to.mac, *src, dst, listener.port, label.as_bytes());
        forge::send(&from.ns.path(), "eth0", &frame);
    }
    let got = listener.drain();
    // What arrives, arrives from the source it was sent with.
    for (src, label) in &got {
        let sent = cases.iter().find(|(l, _)| l == label).unwrap().1;
        assert_eq!(*src, sent, "{label}");
    }
    got.into_iter().map(|(_, l)| l).collect()
}

/// The MAC the node's neighbour table has for `ip`.
fn node_neighbour(node: &Node, ip: IpAddr) -> String {
    let n = node
        .ns
        .ip_json(&["neigh", "show", &ip.to_string(), "dev", "podnet0"]);
    n[0]["lladdr"].as_str().unwrap_or_default().to_owned()
}

/// A node with pods `ctr-a`, `ctr-b` and `ctr-c`.
fn three_pods() -> (Node, Value, [Pod; 3]) {
    let node = Node::new();
    let conf = conf(&node);
    let pods = ["ctr-a", "ctr-b", "ctr-c"].map(|cid| add(&node, cid, &conf));
    (node, conf, pods)
}

fn forged_cases(other: &Pod) -> Vec<(&'static str, IpAddr)> {
    vec![
        ("another-pod", other.v4),
        ("another-pod6", other.v6),
        ("another-subnet", "10.244.9.7".parse().unwrap()),
        ("another-subnet6", "fd00:9::7".parse().unwrap()),
        ("outside", "192.0.2.7".parse().unwrap()),
        ("outside6", "2001:db8::7".parse().unwrap()),
    ]
}

#[test]
fn privileged_a_pod_cannot_send_as_anyone_else() {
    let (node, conf, [a, b, c]) = three_pods();

    let mut cases = forged_cases(&c);
    cases.extend([("own", a.v4), ("own6", a.v6)]);
    let got = deliver(&a, a.mac, &b, &cases);
    assert_eq!(got, BTreeSet::from(["own".into(), "own6".into()]));

    // Its own addresses from another MAC.
    let other_mac = [0x02, 0xde, 0xad, 0, 0, 1];
    let got = deliver(&a, other_mac, &b, &[("mac", a.v4), ("mac6", a.v6)]);
    assert!(got.is_empty(), "{got:?}");

    // Claims: the node has learnt B's MAC; A says B's addresses are at A.
    for ip in [b.v4, b.v6] {
        assert!(node.ns.ping(&ip.to_string()), "node cannot reach {ip}");
    }
    // The kernel ignores a new MAC for an entry updated in the last second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (IpAddr::V4(b4), IpAddr::V6(b6), IpAddr::V6(a6)) = (b.v4, b.v6, a.v6) else {
        unreachable!()
    };
    forge::send(&a.ns.path(), "eth0", &forge::arp_claim(a.mac, b4));
    forge::send(
        &a.ns.path(),
        "eth0",
        &forge::neighbour_advert(a.mac, a6, b6),
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    let b_mac = podnet_core::names::format_mac(&b.mac);
    assert_eq!(node_neighbour(&node, b.v4), b_mac);
    assert_eq!(node_neighbour(&node, b.v6), b_mac);

    // A guarded port whose elements are lost fails closed: even its own
    // traffic is dropped (podnetd, absent here, would re-admit it).
    node.ns
        .exec_ok(&["nft", "flush", "set", "bridge", "podnet-guard", "addrs4"]);
    let got = deliver(&a, a.mac, &b, &[("own", a.v4), ("own6", a.v6)]);
    assert_eq!(
        got,
        BTreeSet::from(["own6".into()]),
        "only what is still admitted"
    );

    // The control: a pod without anti-spoofing gets the same frames through.
    let mut open = conf.clone();
    open["antiSpoofing"] = json!(false);
    let d = add(&node, "ctr-d", &open);
    let got = deliver(&d, d.mac, &b, &forged_cases(&c));
    assert_eq!(got.len(), 6, "{got:?}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    forge::send(&d.ns.path(), "eth0", &forge::arp_claim(d.mac, b4));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        node_neighbour(&node, b.v4),
        podnet_core::names::format_mac(&d.mac)
    );
}

#[test]
fn privileged_a_reused_address_never_carries_the_old_permission() {
    let (node, conf, [a, b, c]) = three_pods();
    let elements = || {
        node.ns
            .exec_ok(&["nft", "list", "table", "bridge", "podnet-guard"])
    };
    assert!(elements().contains(&a.v4.to_string()));

    // DEL leaves A's elements, keyed by an interface index that is gone.
    node.del("ctr-a", &a.ns.path(), &conf).expect_ok();

    // A new pod takes A's addresses; C still cannot use them, E can.
    let mut reuse = conf.clone();
    reuse["runtimeConfig"] = json!({ "ips": [a.v4.to_string(), a.v6.to_string()] });
    let e = add(&node, "ctr-e", &reuse);
    assert_eq!((e.v4, e.v6), (a.v4, a.v6));
    let got = deliver(&c, c.mac, &b, &[("as-a", a.v4), ("as-a6", a.v6)]);
    assert!(got.is_empty(), "{got:?}");
    let got = deliver(&e, e.mac, &b, &[("e", e.v4), ("e6", e.v6)]);
    assert_eq!(got.len(), 2, "{got:?}");

    // Every pod gone, GC prunes: nothing of theirs stays in the sets.
    for (cid, pod) in [("ctr-b", &b), ("ctr-c", &c), ("ctr-e", &e)] {
        node.del(cid, &pod.ns.path(), &conf).expect_ok();
    }
    let mut gc = conf.clone();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([]);
    let vars = [("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")];
    node.invoke(&vars, gc.to_string().as_bytes()).expect_ok();
    for set in podnet_core::guard::SETS {
        let listed = node
            .ns
            .exec_ok(&["nft", "-j", "list", "set", "bridge", "podnet-guard", set]);
        assert!(!listed.contains("\"elem\""), "{listed}");
    }
}

#[test]
fn privileged_an_unguarded_pod_first_on_a_node_keeps_passing_once_the_table_exists() {
    let node = Node::new();
    let mut open = conf(&node);
    open["antiSpoofing"] = json!(false);
    let d = add(&node, "ctr-d", &open);
    // A guarded pod after it: the table exists now, and guards every
    // podnet port but the unguarded one.
    let b = add(&node, "ctr-b", &conf(&node));
    let got = deliver(
        &d,
        d.mac,
        &b,
        &[("as-d", d.v4), ("forged", "192.0.2.7".parse().unwrap())],
    );
    assert_eq!(got.len(), 2, "{got:?}");
}
