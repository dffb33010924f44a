//! The anti-spoofing guard against a real kernel: the table made and
//! migrated, ports hooked and their elements admitted over nfnetlink,
//! listed back, and pruned; the off switch; the drop counters; a real
//! port hooked by prefix (or by name, where a kernel cannot hook by
//! prefix) failing closed until it is admitted. (What the guard does to
//! each kind of frame is tested with real pods, in the plugin's and the
//! lab's tests.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use podnet_core::guard::Links;
use std::time::{Duration, Instant};

use podnet_core::guard::{self, Port};
use podnet_linux::nft::guard::{
    GuardError, TableState, admit, drops, prune, set_passthrough, state, write_at, write_table,
};
use podnet_linux::nft::nfnl::{FAMILY_BRIDGE, Nfnl};
use podnet_testkit::TestNetns;

fn port(i: u32) -> Port {
    Port {
        ifindex: 1000 + i,
        name: format!("pntest{i}"),
        guarded: true,
        mac: [2, 0, 0, 0, (i >> 8) as u8, i as u8],
        addrs: vec![
            format!("10.9.{}.{}", i / 250, i % 250 + 2).parse().unwrap(),
            format!("fd00:9::{:x}", i + 2).parse().unwrap(),
        ],
    }
}

/// The keys of `set`, sorted (the kernel lists them in its own order).
fn keys(set: &str) -> Vec<Vec<u8>> {
    let mut keys = Nfnl::open()
        .unwrap()
        .keys(FAMILY_BRIDGE, guard::TABLE, set)
        .unwrap();
    keys.sort();
    keys
}

#[test]
fn privileged_admit_lists_and_prunes_in_a_fresh_namespace() {
    let ns = TestNetns::new("pntest-guard");
    ns.in_ns(|| {
        // Nothing to prune before the table exists, and nothing admitted.
        assert_eq!(prune(|| Ok::<_, String>(Links::new())).unwrap(), 0);
        let missing = admit(&port(0));
        assert!(matches!(missing, Err(GuardError::Missing)), "{missing:?}");
        assert_eq!(state().unwrap(), TableState::Missing);
        write_table().unwrap();
        assert_eq!(state().unwrap(), TableState::Current);
        let mut took = Vec::new();
        for i in 0..200 {
            let started = Instant::now();
            admit(&port(i)).unwrap();
            took.push(started.elapsed());
        }
        took.sort();
        let median: Duration = took[took.len() / 2];
        eprintln!(
            "admit: median {median:?} (slowest: {:?})",
            took.last().unwrap()
        );

        let want: Vec<(&str, Vec<u8>)> = (0..200).flat_map(|i| guard::elements(&port(i))).collect();
        for set in guard::SETS {
            let mut have = keys(set);
            let mut expected: Vec<Vec<u8>> = want
                .iter()
                .filter(|(s, _)| *s == set)
                .map(|(_, k)| k.clone())
                .collect();
            have.sort();
            expected.sort();
            assert_eq!(have, expected, "set {set}");
        }
        // Admitting again is harmless.
        admit(&port(0)).unwrap();

        // Half the ports are gone.
        let live: Links = (0..100).map(|i| (port(i).ifindex, port(i).name)).collect();
        let pruned = prune(|| Ok::<_, String>(live.clone())).unwrap();
        assert_eq!(pruned, 100 * guard::elements(&port(0)).len());
        let ports: HashSet<u32> = keys(guard::MACS)
            .iter()
            .filter_map(|k| guard::key_ifindex(k))
            .collect();
        assert_eq!(ports, live.keys().copied().collect());
        assert_eq!(prune(|| Ok::<_, String>(live.clone())).unwrap(), 0);
        // Every reason has its counter, at zero: no frame was sent.
        let counted = drops().unwrap();
        assert_eq!(counted.len(), guard::DROP_REASONS.len(), "{counted:?}");
        assert!(counted.iter().all(|(_, n)| *n == 0));
    });
}

#[test]
fn privileged_a_layout_bump_migrates_in_place_keeping_every_element() {
    let ns = TestNetns::new("pntest-layout");
    ns.in_ns(|| {
        let old = guard::LAYOUT - 1;
        write_at(old).unwrap();
        assert_eq!(state().unwrap(), TableState::Outdated(Some(old)));
        for i in 0..20 {
            admit(&port(i)).unwrap();
        }
        set_passthrough(true).unwrap();
        let before: Vec<Vec<Vec<u8>>> = guard::SETS.iter().map(|s| keys(s)).collect();
        write_table().unwrap();
        assert_eq!(state().unwrap(), TableState::Current);
        let after: Vec<Vec<Vec<u8>>> = guard::SETS.iter().map(|s| keys(s)).collect();
        assert_eq!(after, before, "every element kept");
        assert_eq!(keys(guard::PASSTHROUGH).len(), 1, "the switch kept");
        // Writing again is harmless; cut rules read as outdated.
        write_table().unwrap();
        assert_eq!(keys(guard::LAYOUT_SET).len(), 1);
        for chain in ["guard", "prerouting", "input"] {
            let handle = rule_handle(&ns, chain);
            ns.exec_ok(&[
                "nft",
                "delete",
                "rule",
                "bridge",
                guard::TABLE,
                chain,
                "handle",
                &handle,
            ]);
            assert_eq!(
                state().unwrap(),
                TableState::Outdated(Some(guard::LAYOUT)),
                "{chain}"
            );
            write_table().unwrap();
            assert_eq!(state().unwrap(), TableState::Current, "{chain}");
        }
        set_passthrough(false).unwrap();
        set_passthrough(false).unwrap();
        assert!(keys(guard::PASSTHROUGH).is_empty());
    });
}

/// The handle of a guard chain's last rule.
fn rule_handle(ns: &TestNetns, chain: &str) -> String {
    let listed = ns.exec_ok(&["nft", "-a", "list", "chain", "bridge", guard::TABLE, chain]);
    listed
        .lines()
        .rev()
        .find_map(|l| l.split("# handle ").nth(1))
        .unwrap()
        .trim()
        .to_owned()
}

/// A veth pair: `host` in `ns` on bridge `br0` with 10.77.0.1, its peer
/// in `pod` with `addr` (in 10.77.0.0/24). Returns the host end's port as
/// the pod's, and whether the pod reaches the bridge.
fn pair(ns: &TestNetns, pod: &TestNetns, host: &str, addr: &str) -> (Port, impl Fn() -> bool) {
    let sh = |script: &str| ns.exec_ok(&["sh", "-c", script]);
    sh(&format!(
        "ip link add br0 type bridge 2>/dev/null; ip addr replace 10.77.0.1/24 dev br0; ip link set br0 up;
         ip link add {host} type veth peer name eth0 netns {}; ip link set {host} master br0 up",
        pod.name()
    ));
    pod.exec_ok(&["ip", "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
    pod.exec_ok(&["ip", "link", "set", "eth0", "up"]);
    let index = ns.in_ns(|| {
        let mut nl = podnet_linux::netlink::Netlink::open().unwrap();
        nl.link(host).unwrap().unwrap().index
    });
    let port = Port {
        ifindex: index,
        name: host.to_owned(),
        mac: podnet_testkit::forge::mac(&pod.path(), "eth0"),
        addrs: vec![addr.parse().unwrap()],
        guarded: true,
    };
    let pod_path = pod.path();
    (port, move || podnet_testkit::ping(&pod_path, "10.77.0.1"))
}

#[test]
fn privileged_a_podnet_port_fails_closed_until_admitted_and_others_pass() {
    let (ns, pod) = (
        TestNetns::new("pntest-closed"),
        TestNetns::new("pntest-closedpod"),
    );
    ns.in_ns(|| write_table().unwrap());
    let (port, reaches) = pair(&ns, &pod, "pnhook0", "10.77.0.2");
    assert!(!reaches(), "a podnet port nobody admitted");
    ns.in_ns(|| admit(&port).unwrap());
    assert!(reaches(), "admitted");
    // Its elements lost: closed again.
    for set in ["macs", "addrs4"] {
        ns.exec_ok(&["nft", "flush", "set", "bridge", guard::TABLE, set]);
    }
    assert!(!reaches(), "a podnet port whose elements were lost");
    // Unguarded: passes.
    ns.in_ns(|| admit(&Port::unguarded(port.ifindex, &port.name)).unwrap());
    assert!(reaches(), "attached with anti-spoofing off");
    // A port podnet did not make passes untouched.
    ns.exec_ok(&["ip", "link", "del", "pnhook0"]);
    let other = TestNetns::new("pntest-other");
    let (_, reaches) = pair(&ns, &other, "xyhook0", "10.77.0.2");
    assert!(reaches(), "not podnet's");
}

/// `nft` commands, one transaction.
fn nft(ns: &TestNetns, commands: &str) {
    ns.exec_ok(&["nft", commands]);
}

/// Polls `ok` for up to 20 s (a new link's IPv6 waits out DAD).
fn eventually(what: &str, ok: impl Fn() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < Duration::from_secs(20), "{what}");
    }
    eprintln!("{what}: {:?}", started.elapsed());
}

#[test]
fn privileged_an_upgrade_from_layout_1_admits_every_port_in_the_switch() {
    let (ns, a, b) = (
        TestNetns::new("pntest-upgrade"),
        TestNetns::new("pntest-upgradea"),
        TestNetns::new("pntest-upgradeb"),
    );
    let (guarded, a_reaches) = pair(&ns, &a, "pn00000000000a", "10.77.0.2");
    let (_, b_reaches) = pair(&ns, &b, "pn00000000000b", "10.77.0.3");
    // The node as layout 1 left it: A guarded and recorded; B attached
    // with anti-spoofing off (or before the guard): no record, no element.
    ns.exec_ok(&[
        "nft",
        "-f",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/guard-layout1.nft"
        ),
    ]);
    let mut elements = format!(
        "add element bridge podnet-guard ports {{ {} }}",
        guarded.ifindex
    );
    for (set, key) in guard::elements(&guarded) {
        if [guard::MACS, guard::ADDRS4].contains(&set) {
            let text = guard::element_text(set, &key).unwrap();
            elements += &format!("; add element bridge podnet-guard {set} {{ {text} }}");
        }
    }
    nft(&ns, &elements);
    let alias = guarded.alias().unwrap();
    ns.exec_ok(&["ip", "link", "set", "pn00000000000a", "alias", &alias]);
    ns.in_ns(|| assert_eq!(state().unwrap(), TableState::Outdated(Some(1))));
    // A's link-local traffic, neighbour discovery with its options
    // included, to the bridge's link-local address.
    let bridge_ll = || {
        let listed = ns.exec_ok(&[
            "ip", "-6", "-o", "addr", "show", "dev", "br0", "scope", "link",
        ]);
        let addr = listed
            .split_whitespace()
            .nth(3)?
            .split('/')
            .next()?
            .to_owned();
        Some(format!("{addr}%eth0"))
    };
    let a_reaches_ll = || bridge_ll().is_some_and(|ll| podnet_testkit::ping(&a.path(), &ll));
    eventually("both pods reach the node at layout 1", || {
        a_reaches() && b_reaches() && a_reaches_ll()
    });

    let carried = ns.in_ns(|| write_table().unwrap());
    assert_eq!((carried.readmitted, carried.adopted), (1, 1));
    ns.in_ns(|| assert_eq!(state().unwrap(), TableState::Current));
    // Nothing ran after the one transaction: what each pod needs came in it.
    assert!(b_reaches(), "an unguarded pod passes after the upgrade");
    assert!(a_reaches(), "a guarded pod passes after the upgrade");
    assert!(a_reaches_ll(), "and its link-local traffic");
    ns.in_ns(|| assert_eq!(keys(guard::UNGUARDED).len(), 1));
    // A is still guarded.
    a.exec_ok(&["ip", "addr", "add", "10.77.0.9/24", "dev", "eth0"]);
    let spoofed = a.exec(&["ping", "-c", "1", "-W", "2", "-I", "10.77.0.9", "10.77.0.1"]);
    assert!(!spoofed.status.success(), "a source not A's own");
}

#[test]
fn privileged_a_table_made_on_a_node_from_before_the_guard_lets_its_pods_pass() {
    let (ns, pod) = (
        TestNetns::new("pntest-preguard"),
        TestNetns::new("pntest-preguardpod"),
    );
    let (_, reaches) = pair(&ns, &pod, "pn00000000000c", "10.77.0.2");
    assert!(reaches());
    let carried = ns.in_ns(|| write_table().unwrap());
    assert_eq!((carried.readmitted, carried.adopted), (0, 1));
    assert!(reaches(), "a pod attached before the guard existed");
    // Made again, it carries nothing more.
    ns.in_ns(|| assert_eq!(write_table().unwrap(), guard::Carry::default()));
}
