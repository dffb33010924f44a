//! An in-memory store, for tests of the store's users (the agent's loop)
//! and of the conformance suite itself. It keeps the contract like any
//! backend, and can be made unavailable or given a corrupt record.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ipnet::IpNet;
use podnet_core::cluster::carve::{first_free, is_leasable};
use podnet_core::cluster::lease::{Lease, LeaseAttrs};
use podnet_core::cluster::netconf::ClusterConf;
use tokio::sync::watch;

use crate::{Result, Revision, Snapshot, Store, StoreError, lease_for, now};

#[derive(Default)]
struct Mem {
    net_conf: Option<String>,
    /// Per node: its lease, or why its record does not parse.
    records: BTreeMap<String, std::result::Result<Lease, String>>,
    claims: BTreeMap<IpNet, String>,
    down: Option<String>,
    /// Renewals and acquisitions never answer (a server that accepts and
    /// then hangs).
    hanging: bool,
}

/// Clones share one store, as clients of one cluster do.
#[derive(Clone)]
pub struct MemStore {
    mem: Arc<Mutex<Mem>>,
    revision: Arc<watch::Sender<u64>>,
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore {
            mem: Arc::default(),
            revision: Arc::new(watch::channel(1).0),
        }
    }
}

impl MemStore {
    /// The state, whether or not the store is "down".
    fn state(&self) -> MutexGuard<'_, Mem> {
        self.mem.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> Result<MutexGuard<'_, Mem>> {
        let mem = self.state();
        match &mem.down {
            Some(why) => Err(StoreError::Unavailable(why.clone())),
            None => Ok(mem),
        }
    }

    /// Stores `lease` as its node's record and announces the change.
    fn commit(&self, mut mem: MutexGuard<'_, Mem>, lease: Lease) -> Lease {
        mem.records.insert(lease.node.clone(), Ok(lease.clone()));
        drop(mem);
        self.bump();
        lease
    }

    fn bump(&self) {
        self.revision.send_modify(|r| *r += 1);
    }

    /// Every call fails as Unavailable while `why` is set.
    pub fn set_down(&self, why: Option<&str>) {
        self.state().down = why.map(str::to_owned);
    }

    /// While set, renewals and acquisitions never answer.
    pub fn set_hanging(&self, hanging: bool) {
        self.state().hanging = hanging;
    }

    /// Never returns while the store hangs.
    async fn answer(&self) {
        if self.state().hanging {
            std::future::pending::<()>().await;
        }
    }

    /// Makes `node`'s record unreadable.
    pub fn corrupt(&self, node: &str) {
        let mut mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        mem.records.insert(
            node.to_owned(),
            Err("expected value at line 1 column 1".into()),
        );
        drop(mem);
        self.bump();
    }

    /// Writes a lease as given, as another node would.
    pub fn put(&self, lease: Lease) {
        let mut mem = self.state();
        for s in &lease.subnets {
            mem.claims.insert(*s, lease.node.clone());
        }
        self.commit(mem, lease);
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let mem = self.lock()?;
        let mut snap = Snapshot {
            revision: Revision::new(self.revision.borrow().to_string()),
            ..Snapshot::default()
        };
        for (node, record) in &mem.records {
            match record {
                Ok(lease) => {
                    snap.leases.insert(node.clone(), lease.clone());
                }
                Err(why) => {
                    snap.corrupt.insert(node.clone(), why.clone());
                }
            }
        }
        Ok(snap)
    }
}

fn held_by(mem: &Mem, node: &str) -> Vec<IpNet> {
    mem.claims
        .iter()
        .filter(|(_, holder)| *holder == node)
        .map(|(s, _)| *s)
        .collect()
}

impl Store for MemStore {
    async fn net_conf(&self, proposed: Option<&str>) -> Result<String> {
        let mut mem = self.lock()?;
        if mem.net_conf.is_none() {
            mem.net_conf = proposed.map(str::to_owned);
        }
        mem.net_conf
            .clone()
            .ok_or_else(|| StoreError::Invalid("no net-conf stored".into()))
    }

    async fn acquire(
        &self,
        node: &str,
        attrs: &LeaseAttrs,
        conf: &ClusterConf,
        ttl: Duration,
    ) -> Result<Lease> {
        self.answer().await;
        let mut mem = self.lock()?;
        let before = held_by(&mem, node);
        let mut subnets = Vec::new();
        for fam in conf.families() {
            if let Some(s) = before.iter().find(|s| is_leasable(fam, s)) {
                subnets.push(*s);
                continue;
            }
            let taken: Vec<IpNet> = mem.claims.keys().copied().collect();
            let free = first_free(fam, &taken).or_else(|| {
                // Full: take over a subnet whose holder's lease expired.
                mem.claims
                    .iter()
                    .find(|(s, holder)| {
                        is_leasable(fam, s)
                            && matches!(mem.records.get(*holder), Some(Ok(l)) if l.expired(now()))
                    })
                    .map(|(s, _)| *s)
            });
            let Some(subnet) = free else {
                return Err(StoreError::Exhausted {
                    cidr: fam.network,
                    subnet_len: fam.subnet_len,
                });
            };
            if let Some(old) = mem.claims.insert(subnet, node.to_owned()) {
                mem.records.remove(&old);
            }
            subnets.push(subnet);
        }
        Ok(self.commit(mem, lease_for(node, subnets, attrs, ttl)))
    }

    async fn renew(&self, node: &str, attrs: &LeaseAttrs, ttl: Duration) -> Result<Lease> {
        self.answer().await;
        let mem = self.lock()?;
        let subnets = match mem.records.get(node) {
            None => return Err(StoreError::NotFound(node.to_owned())),
            Some(Ok(lease)) => lease.subnets.clone(),
            Some(Err(_)) => held_by(&mem, node),
        };
        if subnets.is_empty() {
            return Err(StoreError::NotFound(node.to_owned()));
        }
        for s in &subnets {
            match mem.claims.get(s) {
                Some(holder) if holder == node => {}
                Some(holder) => {
                    return Err(StoreError::Conflict {
                        subnet: *s,
                        holder: holder.clone(),
                    });
                }
                None => return Err(StoreError::NotFound(node.to_owned())),
            }
        }
        Ok(self.commit(mem, lease_for(node, subnets, attrs, ttl)))
    }

    async fn release(&self, node: &str) -> Result<()> {
        let mut mem = self.lock()?;
        mem.records.remove(node);
        mem.claims.retain(|_, holder| holder != node);
        drop(mem);
        self.bump();
        Ok(())
    }

    async fn list(&self) -> Result<Snapshot> {
        self.snapshot()
    }

    async fn watch(&self, since: &Revision, timeout: Duration) -> Result<Snapshot> {
        let mut rx = self.revision.subscribe();
        if rx.borrow_and_update().to_string() == since.as_str() {
            let _ = tokio::time::timeout(timeout, rx.changed()).await;
        }
        self.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{self, Backend, Cluster};

    struct Memory;

    impl Cluster for MemStore {
        type S = MemStore;
        async fn client(&self) -> MemStore {
            self.clone()
        }
        async fn corrupt(&self, node: &str) {
            MemStore::corrupt(self, node);
        }
    }

    impl Backend for Memory {
        type C = MemStore;
        async fn fresh(&self) -> MemStore {
            MemStore::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_memory_store_keeps_the_store_contract() {
        conformance::run(&Memory).await;
    }

    #[tokio::test]
    async fn a_down_store_is_unavailable() {
        let s = MemStore::default();
        s.set_down(Some("partitioned"));
        assert!(matches!(s.list().await, Err(StoreError::Unavailable(_))));
        s.set_down(None);
        assert!(s.list().await.is_ok());
    }
}
