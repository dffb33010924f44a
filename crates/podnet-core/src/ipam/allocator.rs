//! The allocator: pure transitions of the IPAM state.
//!
//! The plugin loads the state under a lock, applies one of these
//! transitions and writes the result back atomically, so a decision here is
//! either fully persisted or not at all.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::addr::{offset, prev};
use super::pool::{Pool, Range, RangeSet};

/// Who holds an address: one interface of one container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// The persisted state of one network's pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamState {
    /// Format version of this file.
    #[serde(default)]
    pub version: u32,
    pub allocations: BTreeMap<IpAddr, Attachment>,
    /// The last address handed out per range set, so the next search starts
    /// after it and a just-freed address is not reused at once.
    #[serde(default)]
    pub last_reserved: BTreeMap<String, IpAddr>,
    /// The kernel boot this state belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

/// One address handed to a pod, with its prefix and gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub address: IpNet,
    pub gateway: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("no free address left in range set {0}")]
    Exhausted(String),
    #[error("requested address {0} is not in any configured range")]
    NotInPool(IpAddr),
    #[error("requested address {ip} is already allocated to container {owner}")]
    InUse { ip: IpAddr, owner: String },
    #[error("requested address {0} is reserved (a gateway)")]
    Reserved(IpAddr),
}

pub const STATE_VERSION: u32 = 1;

impl IpamState {
    /// The state as seen in boot `boot_id`. A reboot ends every network
    /// namespace, so addresses handed out in an earlier boot belong to pods
    /// that no longer exist: they are freed rather than leaked. (This is also
    /// why the state needs no durability across power loss.)
    pub fn in_boot(mut self, boot_id: &str) -> IpamState {
        if self.boot_id.as_deref().is_some_and(|b| b != boot_id) {
            self.allocations.clear();
        }
        self.boot_id = Some(boot_id.to_owned());
        self
    }

    /// Addresses held by `who`, in address order.
    pub fn owned_by(&self, who: &Attachment) -> Vec<IpAddr> {
        self.allocations
            .iter()
            .filter(|(_, a)| *a == who)
            .map(|(ip, _)| *ip)
            .collect()
    }

    /// One address from every range set for `who`. Calling it again for the
    /// same attachment returns what it already holds. `requested` addresses
    /// (runtimeConfig `ips`) are honoured for the sets they fall into. On
    /// error nothing changes.
    pub fn allocate(
        &mut self,
        pool: &Pool,
        who: &Attachment,
        requested: &[IpAddr],
    ) -> Result<Vec<Allocation>, IpamError> {
        if let Some(ip) = requested
            .iter()
            .find(|ip| !pool.sets.iter().any(|s| s.contains(**ip)))
        {
            return Err(IpamError::NotInPool(*ip));
        }
        let held = self.owned_by(who);
        let mut chosen = Vec::with_capacity(pool.sets.len());
        for set in &pool.sets {
            let (ip, new) = if let Some(ip) = held.iter().find(|ip| set.contains(**ip)) {
                (*ip, false)
            } else if let Some(ip) = requested.iter().find(|ip| set.contains(**ip)) {
                self.check_free(set, *ip)?;
                (*ip, true)
            } else {
                (self.next_free(set)?, true)
            };
            chosen.push((set, ip, new));
        }
        self.version = STATE_VERSION;
        Ok(chosen
            .into_iter()
            .map(|(set, ip, new)| {
                if new {
                    self.allocations.insert(ip, who.clone());
                    self.last_reserved.insert(set.key(), ip);
                }
                let range = range_of(set, ip);
                Allocation {
                    // The prefix comes from a validated subnet, so it fits.
                    address: IpNet::new(ip, range.subnet.prefix_len())
                        .unwrap_or_else(|_| IpNet::from(ip)),
                    gateway: range.gateway,
                }
            })
            .collect())
    }

    /// Frees everything `who` holds; returns what was freed. Idempotent.
    pub fn release(&mut self, who: &Attachment) -> Vec<IpAddr> {
        let freed = self.owned_by(who);
        for ip in &freed {
            self.allocations.remove(ip);
        }
        freed
    }

    /// Frees every allocation whose holder `keep` rejects (CNI GC).
    pub fn release_unless(&mut self, keep: impl Fn(&Attachment) -> bool) -> Vec<IpAddr> {
        let gone: Vec<IpAddr> = self
            .allocations
            .iter()
            .filter(|(_, a)| !keep(a))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &gone {
            self.allocations.remove(ip);
        }
        gone
    }

    /// True when every range set still has a free address.
    pub fn has_capacity(&self, pool: &Pool) -> bool {
        pool.sets.iter().all(|s| self.clone().next_free(s).is_ok())
    }

    fn check_free(&self, set: &RangeSet, ip: IpAddr) -> Result<(), IpamError> {
        if set.is_reserved(ip) {
            return Err(IpamError::Reserved(ip));
        }
        match self.allocations.get(&ip) {
            Some(owner) => Err(IpamError::InUse {
                ip,
                owner: owner.container_id.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Round-robin: walk the set's ranges from just after the last address
    /// handed out, wrapping once, and take the first free one.
    fn next_free(&self, set: &RangeSet) -> Result<IpAddr, IpamError> {
        let last = self.last_reserved.get(&set.key()).copied();
        let (first_range, first_ip) = match last.and_then(|ip| {
            set.ranges
                .iter()
                .position(|r| r.contains(ip))
                .map(|i| (i, ip))
        }) {
            Some((i, ip)) => match offset(ip, 1).filter(|n| set.ranges[i].contains(*n)) {
                Some(next) => (i, next),
                None => {
                    let j = (i + 1) % set.ranges.len();
                    (j, set.ranges[j].start)
                }
            },
            None => (0, set.ranges[0].start),
        };
        // Visit first_range from first_ip, every other range whole, then the
        // start of first_range up to first_ip: every address exactly once.
        let n = set.ranges.len();
        let mut spans: Vec<(IpAddr, IpAddr)> = vec![(first_ip, set.ranges[first_range].end)];
        for k in 1..n {
            let r = &set.ranges[(first_range + k) % n];
            spans.push((r.start, r.end));
        }
        let head = &set.ranges[first_range];
        if first_ip != head.start {
            spans.push((head.start, prev(first_ip)));
        }
        for (from, to) in spans {
            let mut ip = from;
            loop {
                if !set.is_reserved(ip) && !self.allocations.contains_key(&ip) {
                    return Ok(ip);
                }
                if ip == to {
                    break;
                }
                match offset(ip, 1) {
                    Some(next) => ip = next,
                    None => break,
                }
            }
        }
        Err(IpamError::Exhausted(describe(set)))
    }
}

fn range_of(set: &RangeSet, ip: IpAddr) -> &Range {
    set.ranges
        .iter()
        .find(|r| r.contains(ip))
        .unwrap_or(&set.ranges[0])
}

fn describe(set: &RangeSet) -> String {
    let parts: Vec<String> = set
        .ranges
        .iter()
        .map(|r| format!("{} ({}-{})", r.subnet, r.start, r.end))
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests;
