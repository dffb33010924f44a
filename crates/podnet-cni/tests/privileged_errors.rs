//! The spec's environment rules and error codes, as one table. Every row
//! runs against a node that already has a pod, and after every failure the
//! node's links, routes, nftables and IPAM state must be exactly as before.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use common::{Node, TestNetns};
use serde_json::{Value, json};

/// What the user would inspect to see whether anything changed.
fn snapshot(node: &Node) -> (Vec<String>, String, String, String) {
    let mut links = node.ns.links();
    links.sort();
    // IPv4 only, without the carrier flag: the kernel's own IPv6 link-local
    // setup and carrier changes finish in the background after an ADD.
    let routes = node
        .ns
        .exec_ok(&["ip", "-4", "route", "show", "table", "all"])
        .replace(" linkdown", "");
    let nft = node.ns.exec_ok(&["nft", "list", "ruleset"]);
    let state =
        std::fs::read_to_string(node.data.path().join("testnet/state.json")).unwrap_or_default();
    (links, routes, nft, state)
}

struct Row {
    what: &'static str,
    vars: Vec<(&'static str, String)>,
    stdin: Vec<u8>,
    code: fn(u64) -> bool,
    says: &'static str,
}

fn env(command: &str, netns: &str, ifname: &str, drop: &[&str]) -> Vec<(&'static str, String)> {
    let all = [
        ("CNI_COMMAND", command.to_owned()),
        ("CNI_CONTAINERID", "table-ctr".to_owned()),
        ("CNI_NETNS", netns.to_owned()),
        ("CNI_IFNAME", ifname.to_owned()),
        ("CNI_PATH", "/usr/lib/cni".to_owned()),
    ];
    all.into_iter().filter(|(k, _)| !drop.contains(k)).collect()
}

fn with(conf: &Value, path: &[&str], value: Value) -> Vec<u8> {
    let mut c = conf.clone();
    let mut at = &mut c;
    for key in &path[..path.len() - 1] {
        at = &mut at[*key];
    }
    at[path[path.len() - 1]] = value;
    c.to_string().into_bytes()
}

#[test]
fn privileged_error_table() {
    let node = Node::new();
    let mut conf = node.conf("10.244.60.0/24");
    // A one-address pool, so the existing pod exhausts it.
    conf["ipam"]["rangeStart"] = json!("10.244.60.10");
    conf["ipam"]["rangeEnd"] = json!("10.244.60.10");
    conf["ipMasq"] = json!(true);
    let pod = TestNetns::new("pntest-pod");
    let other = TestNetns::new("pntest-pod");
    node.add("holder", &pod, &conf).expect_ok();
    let good = conf.to_string().into_bytes();
    let ns = other.path();

    let mut rows: Vec<Row> = Vec::new();
    let mut row = |what, vars, stdin: &[u8], code: fn(u64) -> bool, says| {
        rows.push(Row {
            what,
            vars,
            stdin: stdin.to_vec(),
            code,
            says,
        })
    };
    for (cmd, var) in [
        ("ADD", "CNI_CONTAINERID"),
        ("ADD", "CNI_NETNS"),
        ("ADD", "CNI_IFNAME"),
        ("ADD", "CNI_PATH"),
        ("CHECK", "CNI_CONTAINERID"),
        ("CHECK", "CNI_NETNS"),
        ("CHECK", "CNI_IFNAME"),
        ("CHECK", "CNI_PATH"),
        ("DEL", "CNI_CONTAINERID"),
        ("DEL", "CNI_IFNAME"),
        ("GC", "CNI_PATH"),
        ("STATUS", "CNI_PATH"),
    ] {
        row(
            "missing variable",
            env(cmd, &ns, "eth0", &[var]),
            &good,
            |c| c == 4,
            var,
        );
    }
    row(
        "missing CNI_COMMAND",
        env("ADD", &ns, "eth0", &["CNI_COMMAND"]),
        &good,
        |c| c == 4,
        "CNI_COMMAND",
    );
    row(
        "unknown CNI_COMMAND",
        env("FROB", &ns, "eth0", &[]),
        &good,
        |c| c == 4,
        "FROB",
    );
    for bad in ["", "sixteen-bytes-xx", "a/b", ".", "..", "et h0", "eth\t0"] {
        row(
            "invalid ifname",
            env("ADD", &ns, bad, &[]),
            &good,
            |c| c == 4,
            "CNI_IFNAME",
        );
    }
    row(
        "netns does not exist",
        env("ADD", "/var/run/netns/pntest-nope", "eth0", &[]),
        &good,
        |c| c == 4,
        "CNI_NETNS",
    );
    row(
        "netns is a plain file",
        env("ADD", "/etc/hostname", "eth0", &[]),
        &good,
        |c| c == 4,
        "not a network namespace",
    );
    row(
        "netns is another kind of namespace",
        env("ADD", "/proc/self/ns/uts", "eth0", &[]),
        &good,
        |c| c == 4,
        "not a network namespace",
    );
    row(
        "malformed JSON",
        env("ADD", &ns, "eth0", &[]),
        b"{\"cniVersion\":",
        |c| c == 6,
        "JSON",
    );
    row(
        "stdin over 8 MiB",
        env("ADD", &ns, "eth0", &[]),
        &vec![b' '; (8 << 20) + 1],
        |c| c == 6,
        "limit",
    );
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    row(
        "deeply nested input",
        env("ADD", &ns, "eth0", &[]),
        deep.as_bytes(),
        |c| c == 6,
        "JSON",
    );
    row(
        "bad CIDR",
        env("ADD", &ns, "eth0", &[]),
        &with(&conf, &["ipam", "subnet"], json!("10.244.60.0/33")),
        |c| c == 7,
        "ipam.subnet",
    );
    row(
        "gateway outside subnet",
        env("ADD", &ns, "eth0", &[]),
        &with(&conf, &["ipam", "gateway"], json!("10.9.9.1")),
        |c| c == 7,
        "ipam.gateway",
    );
    row(
        "rangeStart > rangeEnd",
        env("ADD", &ns, "eth0", &[]),
        &with(&conf, &["ipam", "rangeStart"], json!("10.244.60.50")),
        |c| c == 7,
        "rangeStart",
    );
    row(
        "range outside subnet",
        env("ADD", &ns, "eth0", &[]),
        &with(&conf, &["ipam", "rangeEnd"], json!("10.244.61.5")),
        |c| c == 7,
        "rangeEnd",
    );
    row(
        "negative MTU",
        env("ADD", &ns, "eth0", &[]),
        &with(&conf, &["mtu"], json!(-1)),
        |c| c == 7,
        "mtu",
    );
    row(
        "absurd MTU",
        env("ADD", &ns, "eth0", &[]),
        &with(&conf, &["mtu"], json!(1_000_000)),
        |c| c == 7,
        "mtu",
    );
    row(
        "unsupported cniVersion",
        env("ADD", &ns, "eth0", &[]),
        &with(&conf, &["cniVersion"], json!("0.2.0")),
        |c| c == 1,
        "0.2.0",
    );
    let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": ns}], "ips": [{"address": "10.244.60.10/24", "interface": 0}]});
    row(
        "CHECK of an unknown container",
        env("CHECK", &ns, "eth0", &[]),
        &with(&conf, &["prevResult"], prev),
        |c| c == 3,
        "table-ctr",
    );
    row(
        "pool exhausted",
        env("ADD", &ns, "eth0", &[]),
        &good,
        |c| c >= 100,
        "10.244.60.10-10.244.60.10",
    );

    let before = snapshot(&node);
    for r in &rows {
        let vars: Vec<(&str, &str)> = r.vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let started = Instant::now();
        let out = node.invoke(&vars, &r.stdin);
        let took = started.elapsed();
        assert!(!out.ok, "{}: succeeded: {}", r.what, out.stdout);
        let v = out.json();
        let code = v["code"].as_u64().unwrap();
        assert!((r.code)(code), "{}: wrong code {code}: {v}", r.what);
        let msg = format!("{} {}", v["msg"], v["details"]);
        assert!(
            msg.contains(r.says),
            "{}: message does not name {:?}: {msg}",
            r.what,
            r.says
        );
        assert_eq!(snapshot(&node), before, "{}: the node changed", r.what);
        eprintln!("{:40} code {code:3} in {took:?}", r.what);
    }
    assert_eq!(other.links(), ["lo"], "no error left anything in the pod");

    // The rows that must succeed: DEL needs neither CNI_NETNS nor CNI_PATH.
    let ok = node.invoke(
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "holder"),
            ("CNI_IFNAME", "eth0"),
        ],
        &good,
    );
    assert!(ok.ok, "{}", ok.stdout);
    assert!(node.allocated().is_empty());
}
