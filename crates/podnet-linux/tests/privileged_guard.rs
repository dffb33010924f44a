//! The anti-spoofing guard against a real kernel: the table made on first
//! use, elements admitted over nfnetlink, listed back, and pruned.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use podnet_core::guard::{self, Port};
use podnet_linux::guard::{admit, prune};
use podnet_linux::nfsets::{FAMILY_BRIDGE, NfSets};
use podnet_testkit::TestNetns;

fn port(i: u32) -> Port {
    Port {
        ifindex: 1000 + i,
        mac: [2, 0, 0, 0, (i >> 8) as u8, i as u8],
        addrs: vec![
            format!("10.9.{}.{}", i / 250, i % 250 + 2).parse().unwrap(),
            format!("fd00:9::{:x}", i + 2).parse().unwrap(),
        ],
    }
}

fn keys(set: &str) -> Vec<Vec<u8>> {
    NfSets::open()
        .unwrap()
        .keys(FAMILY_BRIDGE, guard::TABLE, set)
        .unwrap()
}

#[test]
fn privileged_admit_lists_and_prunes_in_a_fresh_namespace() {
    let ns = TestNetns::new("pntest-guard");
    ns.in_ns(|| {
        // Nothing to prune before the table exists.
        assert_eq!(prune(|| Ok::<_, String>(HashSet::new())).unwrap(), 0);
        let mut took = Vec::new();
        for i in 0..200 {
            let started = Instant::now();
            admit(&port(i)).unwrap();
            took.push(started.elapsed());
        }
        took.sort();
        let median: Duration = took[took.len() / 2];
        eprintln!(
            "admit: median {median:?} (the first, which made the table: {:?})",
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
        let live: HashSet<u32> = (0..100).map(|i| port(i).ifindex).collect();
        let pruned = prune(|| Ok::<_, String>(live.clone())).unwrap();
        assert_eq!(pruned, 100 * guard::elements(&port(0)).len());
        let ports: HashSet<u32> = keys(guard::PORTS)
            .iter()
            .filter_map(|k| guard::key_ifindex(k))
            .collect();
        assert_eq!(ports, live);
        assert_eq!(prune(|| Ok::<_, String>(live.clone())).unwrap(), 0);
    });
}
