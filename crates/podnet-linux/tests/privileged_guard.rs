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
/// in `pod` with 10.77.0.2. Returns the host end's port as the pod's, and
/// whether the pod reaches the bridge.
fn pair(ns: &TestNetns, pod: &TestNetns, host: &str) -> (Port, impl Fn() -> bool) {
    let sh = |script: &str| ns.exec_ok(&["sh", "-c", script]);
    sh(&format!(
        "ip link add br0 type bridge 2>/dev/null; ip addr replace 10.77.0.1/24 dev br0; ip link set br0 up;
         ip link add {host} type veth peer name eth0 netns {}; ip link set {host} master br0 up",
        pod.name()
    ));
    pod.exec_ok(&["ip", "addr", "add", "10.77.0.2/24", "dev", "eth0"]);
    pod.exec_ok(&["ip", "link", "set", "eth0", "up"]);
    let index = ns.in_ns(|| {
        let mut nl = podnet_linux::netlink::Netlink::open().unwrap();
        nl.link(host).unwrap().unwrap().index
    });
    let port = Port {
        ifindex: index,
        name: host.to_owned(),
        mac: podnet_testkit::forge::mac(&pod.path(), "eth0"),
        addrs: vec!["10.77.0.2".parse().unwrap()],
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
    let (port, reaches) = pair(&ns, &pod, "pnhook0");
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
    let (_, reaches) = pair(&ns, &other, "xyhook0");
    assert!(reaches(), "not podnet's");
}
