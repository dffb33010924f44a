//! Reclaims addresses leaked by lost DELs (containerd 1.6 never sends CNI
//! GC): every network's state under the IPAM dir is read, and an
//! allocation whose host veth has been gone for the grace period is
//! released under the plugin's own lock. The decision is
//! `podnet_core::ipam::reclaim`; this is its shell, run on each resync.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use podnet_core::ipam::reclaim::{Held, Suspects};
use podnet_core::names::host_veth_name;
use podnet_linux::ipam_store::IpamStore;
use podnet_linux::netlink::Netlink;

pub struct Reclaimer {
    dir: PathBuf,
    grace: Duration,
    started: Instant,
    suspects: Suspects,
}

impl Reclaimer {
    pub fn new(dir: PathBuf, grace: Duration) -> Reclaimer {
        Reclaimer {
            dir,
            grace,
            started: Instant::now(),
            suspects: Suspects::default(),
        }
    }

    /// One pass; returns what it released. A network whose state cannot
    /// be read is skipped (the plugin reports it on its next call).
    pub fn run(&mut self) -> Result<Vec<Held>> {
        let networks: Vec<String> = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .flatten()
                .filter(|e| e.path().join("state.json").exists())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect(),
            // No pod ever ran here: nothing to reclaim.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| self.dir.display().to_string()),
        };
        let mut allocations = Vec::new();
        for net in &networks {
            let Ok(state) = IpamStore::open(&self.dir.join(net)).and_then(|s| s.load()) else {
                continue;
            };
            for (ip, who) in state.allocations {
                allocations.push((net.clone(), ip, who));
            }
        }
        if allocations.is_empty() {
            self.suspects = Suspects::default();
            return Ok(Vec::new());
        }
        let veths = link_names()?;
        let has_veth = |w: &podnet_core::ipam::Attachment| {
            veths.contains(&host_veth_name(&w.container_id, &w.ifname))
        };
        let leaked =
            self.suspects
                .leaked(allocations, has_veth, self.started.elapsed(), self.grace);
        let mut released = Vec::new();
        for held in leaked {
            let (net, ip, who) = &held;
            let store = IpamStore::open(&self.dir.join(net))?;
            // Only if the same holder still has it, and its veth has not
            // appeared since the look above.
            let freed = store.transact(|state| {
                let still = state.allocations.get(ip) == Some(who);
                let veth = link_names()
                    .is_ok_and(|l| l.contains(&host_veth_name(&who.container_id, &who.ifname)));
                if still && !veth {
                    state.allocations.remove(ip);
                }
                Ok(still && !veth)
            })?;
            if freed {
                released.push(held);
            }
        }
        Ok(released)
    }
}

fn link_names() -> Result<BTreeSet<String>> {
    Ok(Netlink::open()?
        .links()?
        .into_iter()
        .map(|l| l.name)
        .collect())
}
