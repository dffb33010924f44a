//! Leaked addresses. containerd 1.6 never sends CNI GC, so an address whose
//! DEL was lost (a runtime whose state was wiped, a node that crashed mid
//! DEL) stays allocated until the pool runs dry. The agent reclaims it: an
//! allocation whose host veth is gone cannot carry traffic (a pod's netns
//! keeps its veth pair, so no veth means no netns, or a half-done DEL).
//! An ADD writes its allocation beside creating the veth, so the veth may
//! lag the allocation for a moment: an allocation is released only once
//! it has been without its veth for a whole grace period.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use super::Attachment;

/// One allocation: a network (its state dir's name), an address, a holder.
pub type Held = (String, IpAddr, Attachment);

/// When each allocation was first seen without its veth.
#[derive(Debug, Default)]
pub struct Suspects {
    since: BTreeMap<Held, Duration>,
}

impl Suspects {
    /// Looks at every allocation at time `now` (any monotonic clock) and
    /// returns those whose veth has been gone for `grace`. An allocation
    /// seen with its veth, or gone, is forgotten.
    pub fn leaked(
        &mut self,
        allocations: impl IntoIterator<Item = Held>,
        has_veth: impl Fn(&Attachment) -> bool,
        now: Duration,
        grace: Duration,
    ) -> Vec<Held> {
        let mut since = BTreeMap::new();
        let mut leaked = Vec::new();
        for held in allocations {
            if has_veth(&held.2) {
                continue;
            }
            let first = self.since.get(&held).copied().unwrap_or(now);
            if now.saturating_sub(first) >= grace {
                leaked.push(held.clone());
            }
            since.insert(held, first);
        }
        self.since = since;
        leaked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(n: u8) -> Held {
        let who = Attachment {
            container_id: format!("c{n}"),
            ifname: "eth0".into(),
        };
        ("podnet".into(), IpAddr::from([10, 0, 0, n]), who)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn only_an_allocation_without_its_veth_for_the_whole_grace_is_leaked() {
        let mut s = Suspects::default();
        let all = || [held(1), held(2)];
        let no_veth_for_1 = |w: &Attachment| w.container_id != "c1";
        assert!(s.leaked(all(), no_veth_for_1, secs(0), secs(60)).is_empty());
        assert!(
            s.leaked(all(), no_veth_for_1, secs(59), secs(60))
                .is_empty()
        );
        assert_eq!(
            s.leaked(all(), no_veth_for_1, secs(60), secs(60)),
            [held(1)]
        );
    }

    #[test]
    fn a_veth_that_appears_restarts_the_clock() {
        let mut s = Suspects::default();
        let none = |_: &Attachment| false;
        let all = |_: &Attachment| true;
        assert!(s.leaked([held(1)], none, secs(0), secs(60)).is_empty());
        // The ADD finished: its veth is there now.
        assert!(s.leaked([held(1)], all, secs(30), secs(60)).is_empty());
        assert!(s.leaked([held(1)], none, secs(40), secs(60)).is_empty());
        assert!(s.leaked([held(1)], none, secs(99), secs(60)).is_empty());
        assert_eq!(s.leaked([held(1)], none, secs(100), secs(60)), [held(1)]);
    }

    #[test]
    fn a_released_allocation_is_forgotten() {
        let mut s = Suspects::default();
        let none = |_: &Attachment| false;
        assert!(s.leaked([held(1)], none, secs(0), secs(60)).is_empty());
        assert!(s.leaked([], none, secs(10), secs(60)).is_empty());
        // The same address, taken again later by the same holder: a new
        // clock, not the old one.
        assert!(s.leaked([held(1)], none, secs(61), secs(60)).is_empty());
    }
}
