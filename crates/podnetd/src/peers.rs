//! The agent's view of every lease, built from the store's snapshots so
//! that one bad record never costs the others anything: a record that
//! becomes unreadable keeps its last good version (its node keeps its
//! routes), one never read good is skipped, and each change of a record's
//! health is reported once.

use std::collections::BTreeMap;

use podnet_core::cluster::lease::Lease;
use podnet_store::{Revision, Snapshot};

/// A change in one record's health, worth one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// It became unreadable (or unreadable for another reason). `kept` is
    /// the node whose last good lease stays in use; `None` if it was never
    /// read good and is skipped. `unreadable` counts all such records.
    Unreadable {
        key: String,
        why: String,
        kept: Option<String>,
        unreadable: usize,
    },
    /// It reads again, after this many snapshots in which it did not.
    Readable { key: String, after: u64 },
}

impl Note {
    /// Whether this note says `node`'s own record went bad.
    pub fn spoils(&self, node: &str) -> bool {
        matches!(self, Note::Unreadable { kept: Some(n), .. } if n == node)
    }
}

#[derive(Debug)]
struct Damage {
    why: String,
    snapshots: u64,
}

/// The time at which leases are judged expired (Unix seconds). It stops
/// while the store is away, and once the store is back it waits `grace`
/// (time for every peer to renew) before it moves on: a peer that could
/// not renew during an outage is not expired for it.
#[derive(Debug, Default)]
pub struct ExpiryClock {
    grace: u64,
    now: u64,
    /// Since the store went away: where the clock stopped, and (once the
    /// store is back) when it resumes.
    stopped: Option<(u64, Option<u64>)>,
}

impl ExpiryClock {
    pub fn new(grace: u64) -> ExpiryClock {
        ExpiryClock {
            grace,
            ..ExpiryClock::default()
        }
    }

    pub fn store_down(&mut self) {
        self.stopped = Some((self.now, None));
    }

    /// A successful read at `at`; returns the time to judge expiry at.
    pub fn read(&mut self, at: u64) -> u64 {
        if let Some((_, resume)) = &mut self.stopped {
            let resume = *resume.get_or_insert(at + self.grace);
            if at < resume {
                return self.now;
            }
            self.stopped = None;
        }
        self.now = at;
        at
    }
}

#[derive(Debug, Default)]
pub struct LeaseBook {
    revision: Revision,
    /// When leases are judged expired: the newest read, held back across a
    /// store outage (see [`ExpiryClock`]).
    clock: ExpiryClock,
    read_at: u64,
    good: BTreeMap<String, Lease>,
    damaged: BTreeMap<String, Damage>,
}

impl LeaseBook {
    /// `grace`: how long after a store outage expiry waits (seconds).
    pub fn new(grace: u64) -> LeaseBook {
        LeaseBook {
            clock: ExpiryClock::new(grace),
            ..LeaseBook::default()
        }
    }

    pub fn store_down(&mut self) {
        self.clock.store_down();
    }

    /// Takes a snapshot read at `read_at`; returns what changed in the
    /// records' health.
    pub fn update(&mut self, snap: Snapshot, read_at: u64) -> Vec<Note> {
        self.read_at = self.clock.read(read_at);
        if snap.revision == self.revision && snap.revision != Revision::NONE {
            return Vec::new();
        }
        self.revision = snap.revision;
        let mut notes = Vec::new();
        // Records that recovered or are gone.
        let healed: Vec<String> = self
            .damaged
            .keys()
            .filter(|k| !snap.corrupt.contains_key(*k))
            .cloned()
            .collect();
        for key in healed {
            if let Some(d) = self.damaged.remove(&key)
                && snap.leases.contains_key(&key)
            {
                notes.push(Note::Readable {
                    key,
                    after: d.snapshots,
                });
            }
        }
        let mut good = snap.leases;
        for (key, why) in snap.corrupt {
            let kept = self.good.remove(&key);
            let damage = self.damaged.entry(key.clone()).or_insert(Damage {
                why: String::new(),
                snapshots: 0,
            });
            damage.snapshots += 1;
            if damage.why != why {
                damage.why = why.clone();
                notes.push(Note::Unreadable {
                    key: key.clone(),
                    why,
                    kept: kept.as_ref().map(|l| l.node.clone()),
                    unreadable: 0,
                });
            }
            if let Some(lease) = kept {
                good.insert(key, lease);
            }
        }
        let unreadable = self.damaged.len();
        for note in &mut notes {
            if let Note::Unreadable { unreadable: n, .. } = note {
                *n = unreadable;
            }
        }
        self.good = good;
        notes
    }

    /// Every lease in use: the readable ones and the last good version of
    /// each unreadable one.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> + Clone {
        self.good.values()
    }

    pub fn revision(&self) -> &Revision {
        &self.revision
    }

    /// The time to judge expiry at.
    pub fn read_at(&self) -> u64 {
        self.read_at
    }

    /// Whether a snapshot has been taken yet.
    pub fn is_empty(&self) -> bool {
        self.revision == Revision::NONE
    }
}

/// Logs a note.
pub fn log(note: &Note) {
    match note {
        Note::Unreadable {
            key,
            why,
            kept: Some(node),
            unreadable,
        } => tracing::warn!(
            unreadable_records = unreadable,
            "lease record {key} is unreadable ({why}); keeping node {node}'s last good lease"
        ),
        Note::Unreadable {
            key,
            why,
            kept: None,
            unreadable,
        } => tracing::warn!(
            unreadable_records = unreadable,
            "lease record {key} is unreadable ({why}) and was never read good; skipping it"
        ),
        Note::Readable { key, after } => {
            tracing::info!("lease record {key} is readable again (after {after} snapshots)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_store::conformance::attrs;

    fn lease(node: &str, i: usize) -> Lease {
        Lease {
            node: node.into(),
            subnets: vec![format!("10.244.{i}.0/24").parse().unwrap()],
            expires: 100,
            attrs: attrs(i),
        }
    }

    fn snap(rev: &str, good: &[(&str, usize)], bad: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            revision: Revision::new(rev),
            leases: good
                .iter()
                .map(|(n, i)| (n.to_string(), lease(n, *i)))
                .collect(),
            corrupt: bad
                .iter()
                .map(|(k, why)| (k.to_string(), why.to_string()))
                .collect(),
        }
    }

    fn nodes(b: &LeaseBook) -> Vec<&str> {
        b.leases().map(|l| l.node.as_str()).collect()
    }

    #[test]
    fn an_unreadable_record_keeps_its_last_good_lease_and_is_noted_once() {
        let mut b = LeaseBook::default();
        assert!(
            b.update(snap("1", &[("a", 1), ("b", 2)], &[]), 10)
                .is_empty()
        );
        let notes = b.update(snap("2", &[("a", 1)], &[("b", "eof")]), 11);
        assert_eq!(
            notes,
            [Note::Unreadable {
                key: "b".into(),
                why: "eof".into(),
                kept: Some("b".into()),
                unreadable: 1
            }]
        );
        assert_eq!(nodes(&b), ["a", "b"]);
        // Still bad, for the same reason: nothing new to say.
        for rev in ["3", "4"] {
            assert!(
                b.update(snap(rev, &[("a", 1), ("c", 3)], &[("b", "eof")]), 12)
                    .is_empty()
            );
        }
        assert_eq!(nodes(&b), ["a", "b", "c"]);
        let healed = b.update(snap("5", &[("a", 1), ("b", 9)], &[]), 13);
        assert_eq!(
            healed,
            [Note::Readable {
                key: "b".into(),
                after: 3
            }]
        );
        let b_lease = b.leases().find(|l| l.node == "b").unwrap();
        assert_eq!(b_lease.subnets[0].to_string(), "10.244.9.0/24");
        assert_eq!(b.read_at(), 13);
    }

    #[test]
    fn expiry_waits_out_an_outage_and_the_grace_after_it() {
        let mut c = ExpiryClock::new(20);
        assert_eq!(c.read(100), 100);
        c.store_down();
        c.store_down();
        assert_eq!(c.read(150), 100, "back at 150: resumes at 170");
        assert_eq!(c.read(169), 100);
        assert_eq!(c.read(170), 170);
        assert_eq!(c.read(171), 171);
    }

    #[test]
    fn a_record_never_read_good_is_skipped_and_a_gone_one_is_forgotten() {
        let mut b = LeaseBook::default();
        let notes = b.update(snap("1", &[("a", 1)], &[("x", "bad")]), 10);
        assert!(matches!(&notes[..], [Note::Unreadable { kept: None, .. }]));
        assert_eq!(nodes(&b), ["a"]);
        assert!(b.update(snap("2", &[("a", 1)], &[]), 11).is_empty());
        assert!(b.update(snap("3", &[], &[]), 12).is_empty());
        assert_eq!(b.leases().count(), 0, "a deleted record's lease goes");
    }
}
