//! The agent's egress table against a real kernel: changed in place (never
//! deleted to change it), read back as a fingerprint, removed; and the
//! registry's removal over nfnetlink.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use podnet_linux::nft::egress::{egress_fingerprint, replace_egress_table};
use podnet_linux::nft::guard;
use podnet_linux::nft::registry::{self, Removal};
use podnet_testkit::TestNetns;

#[test]
fn privileged_the_egress_table_changes_in_place_and_reads_back() {
    let ns = TestNetns::new("pntest-egress");
    let handle = || {
        let listed = ns.exec_ok(&["nft", "-a", "list", "tables"]);
        listed
            .lines()
            .find(|l| l.contains("inet podnet "))
            .map(str::to_owned)
    };
    ns.in_ns(|| {
        let cluster = ["10.244.0.0/16".parse().unwrap()];
        let nodes = [
            "192.168.1.2".parse().unwrap(),
            "192.168.1.3".parse().unwrap(),
        ];
        assert_eq!(egress_fingerprint().unwrap(), None);
        replace_egress_table(&cluster, &nodes, &[8472]).unwrap();
        let with_overlay = egress_fingerprint().unwrap().unwrap();
        let listed = ns.exec_ok(&["nft", "list", "chain", "inet", "podnet", "overlay-input"]);
        assert!(
            listed.contains("udp dport 8472 ip saddr != @nodes4 drop"),
            "{listed}"
        );
        assert!(
            listed.contains("udp dport 8472 ip6 saddr != @nodes6 drop"),
            "{listed}"
        );
        assert_eq!(with_overlay.nodes, [2, 0]);
        let first = handle();

        replace_egress_table(&cluster, &nodes[..1], &[]).unwrap();
        let without = egress_fingerprint().unwrap().unwrap();
        assert_eq!(without.nodes, [1, 0]);
        assert_eq!(
            without.rules + 4,
            with_overlay.rules,
            "the notrack rules and the overlay's filter went"
        );
        assert_eq!(handle(), first, "the same table, changed in place");
        let listed = ns.exec_ok(&["nft", "list", "table", "inet", "podnet"]);
        assert!(!listed.contains("raw-"), "{listed}");
        assert!(!listed.contains("overlay-input"), "{listed}");
        assert_eq!(listed.matches("masquerade").count(), 1, "{listed}");

        // The same plan again changes nothing.
        replace_egress_table(&cluster, &nodes[..1], &[]).unwrap();
        assert_eq!(egress_fingerprint().unwrap(), Some(without));
        replace_egress_table(&[], &[], &[]).unwrap();
        assert_eq!(egress_fingerprint().unwrap(), None);
        replace_egress_table(&[], &[], &[]).unwrap();
    });
}

#[test]
fn privileged_the_registry_removes_what_it_lists() {
    let ns = TestNetns::new("pntest-registry");
    ns.in_ns(|| {
        replace_egress_table(&["10.244.0.0/16".parse().unwrap()], &[], &[]).unwrap();
        guard::write_table().unwrap();
        let removed = registry::remove(|t| t.removal == Removal::WithLastPod).unwrap();
        assert_eq!(
            removed,
            [registry::GUARD],
            "the ipMasq table was never made"
        );
        assert!(egress_fingerprint().unwrap().is_some(), "the agent's stays");
        let removed = registry::remove(|_| true).unwrap();
        assert_eq!(removed, [registry::EGRESS]);
    });
    assert_eq!(ns.exec_ok(&["nft", "list", "tables"]), "");
}
