use super::*;
use crate::ipam::pool::RangeConf;
use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap};

fn pool(specs: &[(&str, Option<&str>, Option<&str>)]) -> Pool {
    let sets: Vec<Vec<RangeConf>> = specs
        .iter()
        .map(|(subnet, start, end)| {
            vec![RangeConf {
                subnet: subnet.to_string(),
                range_start: start.map(Into::into),
                range_end: end.map(Into::into),
                gateway: None,
            }]
        })
        .collect();
    Pool::from_conf(&sets, |i, j| format!("ipam.ranges[{i}][{j}]")).unwrap()
}

fn who(n: usize) -> Attachment {
    Attachment {
        container_id: format!("c{n}"),
        ifname: "eth0".into(),
    }
}

#[test]
fn gateway_is_never_handed_out() {
    let p = pool(&[("10.0.0.0/29", None, None)]);
    let mut s = IpamState::default();
    let mut got = Vec::new();
    for i in 0..5 {
        got.push(s.allocate(&p, &who(i), &[]).unwrap()[0].address.addr());
    }
    let names: Vec<String> = got.iter().map(|ip| ip.to_string()).collect();
    assert_eq!(
        names,
        ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    );
    let e = s.allocate(&p, &who(9), &[]).unwrap_err();
    assert!(matches!(e, IpamError::Exhausted(ref r) if r.contains("10.0.0.0/29")));
}

#[test]
fn round_robin_does_not_reuse_a_just_freed_address() {
    let p = pool(&[("10.0.0.0/24", None, None)]);
    let mut s = IpamState::default();
    let a = s.allocate(&p, &who(1), &[]).unwrap()[0].address.addr();
    s.release(&who(1));
    let b = s.allocate(&p, &who(2), &[]).unwrap()[0].address.addr();
    assert_ne!(a, b);
}

#[test]
fn round_robin_wraps_to_free_addresses() {
    let p = pool(&[("10.0.0.0/24", Some("10.0.0.10"), Some("10.0.0.12"))]);
    let mut s = IpamState::default();
    for i in 0..3 {
        s.allocate(&p, &who(i), &[]).unwrap();
    }
    s.release(&who(0));
    let ip = s.allocate(&p, &who(7), &[]).unwrap()[0].address.addr();
    assert_eq!(ip.to_string(), "10.0.0.10");
}

#[test]
fn add_again_returns_the_same_addresses() {
    let p = pool(&[("10.0.0.0/24", None, None), ("fd00::/64", None, None)]);
    let mut s = IpamState::default();
    let first = s.allocate(&p, &who(1), &[]).unwrap();
    let again = s.allocate(&p, &who(1), &[]).unwrap();
    assert_eq!(first, again);
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].address.to_string(), "10.0.0.2/24");
    assert_eq!(first[1].address.to_string(), "fd00::2/64");
    assert_eq!(first[1].gateway.to_string(), "fd00::1");
    assert_eq!(s.allocations.len(), 2);
    // Asking again does not move the round-robin cursor back.
    s.allocate(&p, &who(2), &[]).unwrap();
    let cursor = s.last_reserved.clone();
    s.allocate(&p, &who(1), &[]).unwrap();
    assert_eq!(s.last_reserved, cursor);
}

#[test]
fn requested_addresses() {
    let p = pool(&[("10.0.0.0/24", None, None)]);
    let mut s = IpamState::default();
    let ip: IpAddr = "10.0.0.77".parse().unwrap();
    assert_eq!(
        s.allocate(&p, &who(1), &[ip]).unwrap()[0].address.addr(),
        ip
    );
    assert!(matches!(
        s.allocate(&p, &who(2), &[ip]),
        Err(IpamError::InUse { .. })
    ));
    let gw: IpAddr = "10.0.0.1".parse().unwrap();
    assert!(matches!(
        s.allocate(&p, &who(3), &[gw]),
        Err(IpamError::Reserved(_))
    ));
    let out: IpAddr = "10.9.0.1".parse().unwrap();
    assert!(matches!(
        s.allocate(&p, &who(4), &[out]),
        Err(IpamError::NotInPool(_))
    ));
    assert_eq!(s.allocations.len(), 1, "failed requests change nothing");
}

#[test]
fn failed_dual_stack_allocation_changes_nothing() {
    let p = pool(&[
        ("10.0.0.0/24", None, None),
        ("fd00::/120", Some("fd00::5"), Some("fd00::5")),
    ]);
    let mut s = IpamState::default();
    s.allocate(&p, &who(1), &[]).unwrap();
    let before = s.clone();
    assert!(s.allocate(&p, &who(2), &[]).is_err());
    assert_eq!(s, before);
}

#[test]
fn allocations_of_an_earlier_boot_are_freed() {
    let p = pool(&[("10.0.0.0/24", None, None)]);
    let mut s = IpamState::default().in_boot("boot-1");
    s.allocate(&p, &who(1), &[]).unwrap();
    let cursor = s.last_reserved.clone();
    let same = s.clone().in_boot("boot-1");
    assert_eq!(same.allocations.len(), 1);
    let next = s.in_boot("boot-2");
    assert!(next.allocations.is_empty());
    assert_eq!(next.last_reserved, cursor, "round-robin continues");
    assert_eq!(next.boot_id.as_deref(), Some("boot-2"));
    // A state written before boot ids were recorded is kept.
    let mut legacy = IpamState::default();
    legacy.allocate(&p, &who(1), &[]).unwrap();
    assert_eq!(legacy.in_boot("boot-3").allocations.len(), 1);
}

#[test]
fn state_round_trips_through_json() {
    let p = pool(&[("10.0.0.0/24", None, None), ("fd00::/64", None, None)]);
    let mut s = IpamState::default();
    s.allocate(&p, &who(1), &[]).unwrap();
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<IpamState>(&json).unwrap(), s);
}

// --- Property test: random interleavings with simulated crashes. ---
//
// The "disk" holds the committed state. Every operation is a transaction:
// load, transition, commit. A crash either hits before the commit (the
// change is lost and the caller saw an error) or after it (the change is
// durable but the caller never saw the answer). The runtime's contract is
// that it retries ADD or calls DEL for any attachment whose ADD failed.

#[derive(Debug, Clone)]
enum Op {
    Add(usize),
    Del(usize),
    CrashAddBeforeCommit(usize),
    CrashAddAfterCommit(usize),
    CrashDelAfterCommit(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0usize..12;
    prop_oneof![
        4 => id.clone().prop_map(Op::Add),
        3 => id.clone().prop_map(Op::Del),
        1 => id.clone().prop_map(Op::CrashAddBeforeCommit),
        1 => id.clone().prop_map(Op::CrashAddAfterCommit),
        1 => id.prop_map(Op::CrashDelAfterCommit),
    ]
}

proptest! {
    #[test]
    fn no_duplicates_and_no_leaks(ops in proptest::collection::vec(op(), 1..120)) {
        // A pool small enough to run out, dual-stack.
        let p = pool(&[("10.0.0.0/28", None, None), ("fd00::/124", None, None)]);
        let mut disk = IpamState::default();
        // What the runtime believes each attachment holds after a success.
        let mut believed: HashMap<usize, Vec<IpAddr>> = HashMap::new();
        // Attachments whose last call failed: the runtime owes a DEL/retry.
        let mut limbo: BTreeSet<usize> = BTreeSet::new();

        for op in ops {
            match op {
                Op::Add(n) => {
                    let mut next = disk.clone();
                    match next.allocate(&p, &who(n), &[]) {
                        Ok(got) => {
                            let ips: Vec<IpAddr> = got.iter().map(|a| a.address.addr()).collect();
                            if let Some(prev) = believed.get(&n) {
                                prop_assert_eq!(prev, &ips, "ADD again must return the same IPs");
                            }
                            disk = next;
                            believed.insert(n, ips);
                            limbo.remove(&n);
                        }
                        Err(IpamError::Exhausted(_)) => {
                            prop_assert_eq!(&next, &disk);
                        }
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                Op::Del(n) => {
                    disk.release(&who(n));
                    believed.remove(&n);
                    limbo.remove(&n);
                }
                Op::CrashAddBeforeCommit(n) => {
                    let mut lost = disk.clone();
                    let _ = lost.allocate(&p, &who(n), &[]);
                    limbo.insert(n);
                }
                Op::CrashAddAfterCommit(n) => {
                    let _ = disk.allocate(&p, &who(n), &[]);
                    limbo.insert(n);
                }
                Op::CrashDelAfterCommit(n) => {
                    disk.release(&who(n));
                    believed.remove(&n);
                    limbo.insert(n);
                }
            }
            // The disk never gives one address to two holders (a map key is
            // unique), and each holder has at most one address per set.
            let mut per_holder: HashMap<&Attachment, (usize, usize)> = HashMap::new();
            for (ip, a) in &disk.allocations {
                let e = per_holder.entry(a).or_default();
                if ip.is_ipv4() { e.0 += 1 } else { e.1 += 1 }
            }
            prop_assert!(per_holder.values().all(|(v4, v6)| *v4 <= 1 && *v6 <= 1));
            // Everything the runtime believes it holds is on disk.
            for (n, ips) in &believed {
                prop_assert_eq!(&disk.owned_by(&who(*n)), ips);
            }
            // Nothing is on disk that nobody can account for.
            for a in disk.allocations.values() {
                let n: usize = a.container_id[1..].parse().unwrap();
                prop_assert!(believed.contains_key(&n) || limbo.contains(&n), "leaked {a:?}");
            }
        }
        // The runtime settles its debts: DEL everything. Nothing is left.
        for n in 0..12 {
            disk.release(&who(n));
        }
        prop_assert!(disk.allocations.is_empty());
    }
}
