//! Reclaims addresses leaked by lost DELs (containerd 1.6 never sends CNI
//! GC): every network's state under the IPAM dir is read, and an
//! allocation whose host veth has been gone for the grace period is
//! released under the plugin's own lock. The decision is
//! `podnet_core::ipam::reclaim`; this is its shell, run on each resync.
//! The same pass reports each network's pool and allocations as metrics.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use podnet_core::ipam::Range;
use podnet_core::ipam::reclaim::{Held, Suspects};
use podnet_core::names::host_veth_name;
use podnet_core::subnet_file::SubnetFile;
use podnet_linux::ipam_store::IpamStore;
use podnet_linux::netlink::Netlink;

use crate::telemetry::Telemetry;

pub struct Reclaimer {
    dir: PathBuf,
    /// `None`: only report, never release.
    grace: Option<Duration>,
    /// The pool the networks hand out from, for the metrics.
    subnet_file: PathBuf,
    telemetry: Arc<Telemetry>,
    started: Instant,
    suspects: Suspects,
}

impl Reclaimer {
    pub fn new(
        dir: PathBuf,
        grace: Option<Duration>,
        subnet_file: PathBuf,
        telemetry: Arc<Telemetry>,
    ) -> Reclaimer {
        Reclaimer {
            dir,
            grace,
            subnet_file,
            telemetry,
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
        let pool = self.pool_size();
        for net in &networks {
            let Ok(state) = IpamStore::open(&self.dir.join(net)).and_then(|s| s.load()) else {
                continue;
            };
            self.telemetry
                .ipam(net, pool, state.allocations.len() as u64);
            for (ip, who) in state.allocations {
                allocations.push((net.clone(), ip, who));
            }
        }
        let Some(grace) = self.grace.filter(|_| !allocations.is_empty()) else {
            self.suspects = Suspects::default();
            return Ok(Vec::new());
        };
        let veths = link_names()?;
        let has_veth = |w: &podnet_core::ipam::Attachment| {
            veths.contains(&host_veth_name(&w.container_id, &w.ifname))
        };
        let leaked = self
            .suspects
            .leaked(allocations, has_veth, self.started.elapsed(), grace);
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
    /// Addresses the node's subnets hold for pods (0 before the agent
    /// wrote its subnet file).
    fn pool_size(&self) -> u64 {
        let Ok(raw) = std::fs::read_to_string(&self.subnet_file) else {
            return 0;
        };
        let Ok(file) = SubnetFile::parse(&raw) else {
            return 0;
        };
        let size: u128 = file
            .node_subnets
            .iter()
            .filter_map(|r| Range::from_conf(r, "nodeSubnets").ok())
            .map(|r| r.size())
            .sum();
        u64::try_from(size).unwrap_or(u64::MAX)
    }
}

fn link_names() -> Result<BTreeSet<String>> {
    Ok(Netlink::open()?
        .links()?
        .into_iter()
        .map(|l| l.name)
        .collect())
}
