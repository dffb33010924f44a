//! The anti-spoofing guard against a real kernel: the table made and
//! migrated, ports hooked and their elements admitted over nfnetlink,
//! listed back, and pruned; the off switch; the drop counters. (The ports
//! are names without links: this kernel hooks a name before its device
//! exists. What the guard does to frames is tested with real pods, in
//! the plugin's and the lab's tests.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use podnet_core::guard::Links;
use std::time::{Duration, Instant};

use podnet_core::guard::{self, Port};
use podnet_linux::nft::guard::{
    GuardError, TableState, admit, drops, hooked, prune, set_passthrough, state, write_at,
    write_table,
};
use podnet_linux::nft::nfnl::{FAMILY_NETDEV, Nfnl};
use podnet_testkit::TestNetns;

fn port(i: u32) -> Port {
    Port {
        ifindex: 1000 + i,
        name: format!("pntest{i}"),
        mac: [2, 0, 0, 0, (i >> 8) as u8, i as u8],
        addrs: vec![
            format!("10.9.{}.{}", i / 250, i % 250 + 2).parse().unwrap(),
            format!("fd00:9::{:x}", i + 2).parse().unwrap(),
        ],
    }
}

fn keys(set: &str) -> Vec<Vec<u8>> {
    Nfnl::open()
        .unwrap()
        .keys(FAMILY_NETDEV, guard::TABLE, set)
        .unwrap()
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

        let names = |n: u32| -> HashSet<String> { (0..n).map(|i| port(i).name).collect() };
        assert_eq!(
            hooked().unwrap().into_iter().collect::<HashSet<_>>(),
            names(200)
        );

        // Half the ports are gone.
        let live: Links = (0..100).map(|i| (port(i).ifindex, port(i).name)).collect();
        let pruned = prune(|| Ok::<_, String>(live.clone())).unwrap();
        assert_eq!(pruned, 100 * guard::elements(&port(0)).len());
        let ports: HashSet<u32> = keys(guard::MACS)
            .iter()
            .filter_map(|k| guard::key_ifindex(k))
            .collect();
        assert_eq!(ports, live.keys().copied().collect());
        assert_eq!(
            hooked().unwrap().into_iter().collect::<HashSet<_>>(),
            names(100)
        );
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
        for chain in ["guard", "ingress"] {
            let handle = rule_handle(&ns, chain);
            ns.exec_ok(&[
                "nft",
                "delete",
                "rule",
                "netdev",
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
        assert_eq!(hooked().unwrap().len(), 20, "every hook kept");
        set_passthrough(false).unwrap();
        set_passthrough(false).unwrap();
        assert!(keys(guard::PASSTHROUGH).is_empty());
    });
}

/// The handle of a guard chain's last rule.
fn rule_handle(ns: &TestNetns, chain: &str) -> String {
    let listed = ns.exec_ok(&["nft", "-a", "list", "chain", "netdev", guard::TABLE, chain]);
    listed
        .lines()
        .rev()
        .find_map(|l| l.split("# handle ").nth(1))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn privileged_a_real_port_is_hooked_and_a_rewrite_keeps_its_hook() {
    let ns = TestNetns::new("pntest-hook");
    ns.exec_ok(&[
        "ip", "link", "add", "pnhook0", "type", "veth", "peer", "name", "pnpeer0",
    ]);
    ns.in_ns(|| {
        write_table().unwrap();
        assert_eq!(state().unwrap(), TableState::Current);
        assert!(hooked().unwrap().is_empty());
        let nl = podnet_linux::netlink::Netlink::open();
        let link = nl.unwrap().link("pnhook0").unwrap().unwrap();
        let port = Port {
            ifindex: link.index,
            name: link.name.clone(),
            ..port(0)
        };
        admit(&port).unwrap();
        assert_eq!(hooked().unwrap(), ["pnhook0"]);
        assert_eq!(state().unwrap(), TableState::Current);
        write_table().unwrap();
        assert_eq!(state().unwrap(), TableState::Current);
        assert_eq!(hooked().unwrap(), ["pnhook0"]);
    });
}
