//! The etcd store (`etcd:http://a:2379,http://b:2379`), in flannel's layout
//! (see [`layout`]), through the v3 API.
//!
//! - Each lease key is attached to an etcd lease whose TTL is net-conf's
//!   `LeaseTTL`; renewing keeps it alive. A listed key is a live key.
//! - A subnet is claimed by a transaction that succeeds only if its key
//!   does not exist, picking at random among the first 100 free subnets
//!   so that racing nodes rarely collide; a lost race is retried.
//! - After a restart, or after its lease expired (a partition), a node
//!   gets its own subnet back if it is still free.
//! - `watch(R)` waits for the first change after R on the subnets prefix,
//!   then lists; a compacted R just lists.

pub mod layout;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use ipnet::IpNet;
use podnet_core::cluster::carve::{free_subnets, is_leasable};
use podnet_core::cluster::lease::{Lease, LeaseAttrs};
use podnet_core::cluster::netconf::ClusterConf;

use crate::{Result, Revision, Snapshot, Store, StoreError, lease_for};

/// Racing nodes pick among this many free subnets.
const PICK_AMONG: usize = 100;
/// Lost races tolerated before giving up.
const MAX_CONFLICTS: usize = 64;
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// The key prefix (flannel's `--etcd-prefix`).
    pub prefix: String,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            prefix: layout::DEFAULT_PREFIX.to_owned(),
        }
    }
}

/// What this client knows of a node it leased for.
#[derive(Debug, Clone)]
struct Held {
    etcd_lease: i64,
    subnets: Vec<IpNet>,
}

pub struct EtcdStore {
    client: Client,
    prefix: String,
    held: Mutex<BTreeMap<String, Held>>,
    /// Lost races so far, for benchmarks and logs.
    conflicts: std::sync::atomic::AtomicUsize,
}

fn unavailable(e: etcd_client::Error) -> StoreError {
    StoreError::Unavailable(format!("etcd: {e}"))
}

/// One listed lease key.
struct Record {
    key: String,
    subnets: Vec<IpNet>,
    lease: std::result::Result<Lease, String>,
    mod_revision: i64,
}

impl EtcdStore {
    /// A client of every endpoint (it fails over between them). The
    /// connection is made on first use, so an unreachable cluster is
    /// Unavailable then, not here.
    pub async fn connect(endpoints: &[String], opts: &EtcdOptions) -> Result<EtcdStore> {
        if endpoints.is_empty() {
            return Err(StoreError::Invalid(
                "etcd: no endpoints (etcd:http://HOST:2379,...)".into(),
            ));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(CALL_TIMEOUT)
            .with_timeout(CALL_TIMEOUT)
            .with_keep_alive(Duration::from_secs(5), CALL_TIMEOUT);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(unavailable)?;
        Ok(EtcdStore {
            client,
            prefix: opts.prefix.trim_end_matches('/').to_owned(),
            held: Mutex::default(),
            conflicts: Default::default(),
        })
    }

    /// Lost races retried so far.
    pub fn conflicts(&self) -> usize {
        self.conflicts.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn held(&self) -> MutexGuard<'_, BTreeMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    /// Every lease key, with the revision of the read.
    async fn records(&self) -> Result<(i64, Vec<Record>)> {
        let resp = self
            .client()
            .get(
                layout::subnets_prefix(&self.prefix),
                Some(GetOptions::new().with_prefix()),
            )
            .await
            .map_err(unavailable)?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let records = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let subnets = layout::parse_subnet_key(&self.prefix, &key)?;
                Some(Record {
                    lease: layout::parse_lease(&self.prefix, &key, kv.value()),
                    key,
                    subnets,
                    mod_revision: kv.mod_revision(),
                })
            })
            .collect();
        Ok((revision, records))
    }

    /// Puts `lease` under its key if `guard` holds; returns whether it did.
    async fn put_if(&self, guard: Compare, lease: &Lease, etcd_lease: i64) -> Result<bool> {
        let key = layout::subnet_key(&self.prefix, &lease.subnets);
        let put = TxnOp::put(
            key,
            serde_json::to_vec(lease).map_err(|e| StoreError::Invalid(e.to_string()))?,
            Some(PutOptions::new().with_lease(etcd_lease)),
        );
        let resp = self
            .client()
            .txn(Txn::new().when([guard]).and_then([put]))
            .await
            .map_err(unavailable)?;
        Ok(resp.succeeded())
    }

    /// Claims `subnets` for `node` if no key holds them; after a success,
    /// gives them back if an older key turned out to share one (two
    /// dual-stack keys can differ yet share a family's subnet).
    async fn claim(&self, lease: &Lease, etcd_lease: i64) -> Result<bool> {
        let key = layout::subnet_key(&self.prefix, &lease.subnets);
        let absent = Compare::create_revision(key.clone(), CompareOp::Equal, 0);
        if !self.put_if(absent, lease, etcd_lease).await? {
            return Ok(false);
        }
        let (_, records) = self.records().await?;
        let shared = records
            .iter()
            .any(|r| r.key != key && r.subnets.iter().any(|s| lease.subnets.contains(s)));
        if shared {
            self.client().delete(key, None).await.map_err(unavailable)?;
            return Ok(false);
        }
        Ok(true)
    }

    fn fits(conf: &ClusterConf, subnets: &[IpNet]) -> bool {
        subnets.len() == conf.families().count()
            && conf
                .families()
                .all(|f| subnets.iter().any(|s| is_leasable(f, s)))
    }
}

impl Store for EtcdStore {
    async fn net_conf(&self, proposed: Option<&str>) -> Result<String> {
        let key = layout::config_key(&self.prefix);
        let mut c = self.client();
        if let Some(p) = proposed {
            let absent = Compare::create_revision(key.clone(), CompareOp::Equal, 0);
            let put = TxnOp::put(key.clone(), p, None);
            c.txn(Txn::new().when([absent]).and_then([put]))
                .await
                .map_err(unavailable)?;
        }
        let resp = c.get(key.clone(), None).await.map_err(unavailable)?;
        let kv = resp
            .kvs()
            .first()
            .ok_or_else(|| StoreError::Invalid(format!("etcd holds no net-conf at {key}")))?;
        Ok(String::from_utf8_lossy(kv.value()).into_owned())
    }

    async fn acquire(
        &self,
        node: &str,
        attrs: &LeaseAttrs,
        conf: &ClusterConf,
        ttl: Duration,
    ) -> Result<Lease> {
        let ttl_secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let etcd_lease = self
            .client()
            .lease_grant(ttl_secs, None)
            .await
            .map_err(unavailable)?
            .id();
        let remembered = self.held().get(node).map(|h| h.subnets.clone());
        let mut conflicts = 0;
        let lease = loop {
            let (_, records) = self.records().await?;
            // Its own key (a restart): keep it, if nobody changed it since.
            let mine = records
                .iter()
                .find(|r| r.lease.as_ref().is_ok_and(|l| l.node == node));
            if let Some(r) = mine.filter(|r| Self::fits(conf, &r.subnets)) {
                let lease = lease_for(node, r.subnets.clone(), attrs, ttl);
                let same = Compare::mod_revision(r.key.clone(), CompareOp::Equal, r.mod_revision);
                if self.put_if(same, &lease, etcd_lease).await? {
                    break lease;
                }
            } else {
                let taken: Vec<IpNet> = records.iter().flat_map(|r| r.subnets.clone()).collect();
                // Its subnets from before an expiry, if still free; else a
                // random one among the first free.
                let wanted = match remembered
                    .as_ref()
                    .filter(|s| Self::fits(conf, s) && !s.iter().any(|x| taken.contains(x)))
                {
                    Some(s) => s.clone(),
                    None => {
                        let mut pick = Vec::new();
                        for fam in conf.families() {
                            let free = free_subnets(fam, &taken, PICK_AMONG);
                            if free.is_empty() {
                                return Err(StoreError::Exhausted {
                                    cidr: fam.network,
                                    subnet_len: fam.subnet_len,
                                });
                            }
                            pick.push(free[fastrand::usize(..free.len())]);
                        }
                        pick
                    }
                };
                let lease = lease_for(node, wanted, attrs, ttl);
                if self.claim(&lease, etcd_lease).await? {
                    break lease;
                }
            }
            conflicts += 1;
            self.conflicts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if conflicts >= MAX_CONFLICTS {
                return Err(StoreError::Unavailable(format!(
                    "etcd: lost {conflicts} races for a subnet in a row"
                )));
            }
        };
        self.held().insert(
            node.to_owned(),
            Held {
                etcd_lease,
                subnets: lease.subnets.clone(),
            },
        );
        Ok(lease)
    }

    async fn renew(&self, node: &str, attrs: &LeaseAttrs, ttl: Duration) -> Result<Lease> {
        let held = self.held().get(node).cloned();
        let Some(held) = held else {
            return Err(StoreError::NotFound(node.to_owned()));
        };
        let mut c = self.client();
        let (mut keeper, mut stream) = c
            .lease_keep_alive(held.etcd_lease)
            .await
            .map_err(unavailable)?;
        keeper.keep_alive().await.map_err(unavailable)?;
        let alive = stream
            .message()
            .await
            .map_err(unavailable)?
            .is_some_and(|r| r.ttl() > 0);
        if !alive {
            return Err(StoreError::NotFound(node.to_owned()));
        }
        let key = layout::subnet_key(&self.prefix, &held.subnets);
        let resp = c.get(key.clone(), None).await.map_err(unavailable)?;
        let Some(kv) = resp.kvs().first() else {
            return Err(StoreError::NotFound(node.to_owned()));
        };
        let stored = layout::parse_lease(&self.prefix, &key, kv.value());
        if let Ok(other) = &stored
            && other.node != node
        {
            return Err(StoreError::Conflict {
                subnet: held.subnets[0],
                holder: other.node.clone(),
            });
        }
        let lease = lease_for(node, held.subnets.clone(), attrs, ttl);
        // Rewrite only what changed (or went bad): a renewal is not news
        // for every watcher.
        let unchanged =
            matches!(&stored, Ok(l) if l.attrs == *attrs) && kv.lease() == held.etcd_lease;
        if !unchanged {
            let same = Compare::mod_revision(key, CompareOp::Equal, kv.mod_revision());
            if !self.put_if(same, &lease, held.etcd_lease).await? {
                return Err(StoreError::Unavailable(
                    "etcd: the lease changed while it was renewed".into(),
                ));
            }
        }
        Ok(lease)
    }

    async fn release(&self, node: &str) -> Result<()> {
        let (_, records) = self.records().await?;
        let mut c = self.client();
        for r in records
            .iter()
            .filter(|r| r.lease.as_ref().is_ok_and(|l| l.node == node))
        {
            c.delete(r.key.clone(), None).await.map_err(unavailable)?;
        }
        let held = self.held().remove(node);
        if let Some(h) = held {
            // The keys are gone already; a lease that expired meanwhile is
            // no error.
            let _ = c.lease_revoke(h.etcd_lease).await;
        }
        Ok(())
    }

    async fn list(&self) -> Result<Snapshot> {
        let (revision, records) = self.records().await?;
        let mut snap = Snapshot {
            revision: Revision::new(revision.to_string()),
            ..Snapshot::default()
        };
        for r in records {
            match r.lease {
                Ok(lease) => {
                    snap.leases.insert(r.key, lease);
                }
                Err(why) => {
                    snap.corrupt.insert(r.key, why);
                }
            }
        }
        Ok(snap)
    }

    async fn watch(&self, since: &Revision, timeout: Duration) -> Result<Snapshot> {
        let Ok(since) = since.as_str().parse::<i64>() else {
            return self.list().await;
        };
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(since + 1);
        let mut stream = self
            .client()
            .watch(layout::subnets_prefix(&self.prefix), Some(options))
            .await
            .map_err(unavailable)?;
        let changed = async {
            loop {
                match stream.message().await {
                    // Created, or a progress note: keep waiting.
                    Ok(Some(r)) if r.events().is_empty() && !r.canceled() => continue,
                    // An event, or a compacted revision: list again.
                    Ok(_) => return Ok(()),
                    Err(e) => return Err(unavailable(e)),
                }
            }
        };
        if let Ok(result) = tokio::time::timeout(timeout, changed).await {
            result?;
        }
        self.list().await
    }
}

#[cfg(test)]
mod tests;
