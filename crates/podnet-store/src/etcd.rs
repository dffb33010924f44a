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
//! - TLS with client certificates: `https://` endpoints and [`TlsFiles`].

#[cfg(feature = "cli")]
pub mod flags;
pub mod layout;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, PutOptions,
    TlsOptions, Txn, TxnOp, WatchOptions,
};
use ipnet::IpNet;
use podnet_core::cluster::carve::{free_subnets, is_leasable};
use podnet_core::cluster::lease::{Lease, LeaseAttrs};
use podnet_core::cluster::netconf::ClusterConf;

use crate::{Result, Revision, Snapshot, Store, StoreError, lease_for};

/// Racing nodes pick among this many free subnets.
const PICK_AMONG: usize = 100;
/// Lost races tolerated before giving up.
const MAX_CONFLICTS: usize = 256;
/// Lost races before the keys are listed again.
const RETRIES_PER_LIST: usize = 8;
/// Renewals raced by another write before giving up for this round.
const RENEW_ATTEMPTS: usize = 3;
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// The key prefix (flannel's `--etcd-prefix`).
    pub prefix: String,
    pub tls: TlsFiles,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            prefix: layout::DEFAULT_PREFIX.to_owned(),
            tls: TlsFiles::default(),
        }
    }
}

/// PEM files for TLS to etcd (`https://` endpoints): the CA that signed
/// the members' certificates, and this client's certificate and key.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// The client's TLS settings; `None` without any file. A file that
    /// cannot be read is a configuration error naming its flag.
    fn options(&self) -> Result<Option<TlsOptions>> {
        // Read, and checked to be PEM, here: tonic would only find out at
        // the first handshake, as an outage.
        let read = |path: &PathBuf, flag: &str| {
            let bytes = std::fs::read(path).map_err(|e| {
                StoreError::Invalid(format!("--etcd-{flag} {}: {e}", path.display()))
            })?;
            if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
                return Err(StoreError::Invalid(format!(
                    "--etcd-{flag} {}: not a PEM file",
                    path.display()
                )));
            }
            Ok(bytes)
        };
        let mut tls = match (&self.ca, &self.cert, &self.key) {
            (None, None, None) => return Ok(None),
            _ => TlsOptions::new(),
        };
        if let Some(ca) = &self.ca {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca, "cafile")?));
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(
                    read(cert, "certfile")?,
                    read(key, "keyfile")?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(StoreError::Invalid(
                    "--etcd-certfile and --etcd-keyfile go together".into(),
                ));
            }
        }
        Ok(Some(tls))
    }
}

/// What this client knows of a node it leased for.
#[derive(Debug, Clone)]
struct Held {
    etcd_lease: i64,
    subnets: Vec<IpNet>,
}

pub struct EtcdStore {
    /// One client per member: a call goes to the member that answered
    /// last and fails over to the next (tonic's balancer would keep
    /// sending every other call to a dead member).
    members: Vec<Client>,
    current: AtomicUsize,
    prefix: String,
    held: Mutex<BTreeMap<String, Held>>,
    /// What this client knows is taken: the last listing, and every subnet
    /// it has claimed or lost a race for since. A client that leases for
    /// many nodes at once (a benchmark, a migration) then lists once, not
    /// once per node; a restarted node's client lists afresh.
    known: tokio::sync::Mutex<Option<Known>>,
    /// Lost races so far, for benchmarks and logs.
    conflicts: AtomicUsize,
}

struct Known {
    records: Arc<Vec<Record>>,
    taken: BTreeSet<IpNet>,
    /// The store revision `taken` is complete up to: a lost race asks
    /// only for keys created since.
    revision: i64,
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
    /// A client of every member. Connections are made on first use, so an
    /// unreachable cluster is Unavailable then, not here.
    pub async fn connect(endpoints: &[String], opts: &EtcdOptions) -> Result<EtcdStore> {
        if endpoints.is_empty() {
            return Err(StoreError::Invalid(
                "etcd: no endpoints (etcd:http://HOST:2379,...)".into(),
            ));
        }
        let tls = opts.tls.options()?;
        let mut members = Vec::new();
        for endpoint in endpoints {
            let mut options = ConnectOptions::new()
                .with_connect_timeout(CALL_TIMEOUT)
                .with_timeout(CALL_TIMEOUT)
                .with_keep_alive(Duration::from_secs(5), CALL_TIMEOUT)
                // A member cut off from the others fails calls and watches
                // instead of serving an old view.
                .with_require_leader(true);
            if let Some(tls) = &tls {
                options = options.with_tls(tls.clone());
            }
            let client = Client::connect([endpoint], Some(options))
                .await
                .map_err(|e| StoreError::Invalid(format!("etcd endpoint {endpoint}: {e}")))?;
            members.push(client);
        }
        Ok(EtcdStore {
            members,
            current: AtomicUsize::new(0),
            prefix: opts.prefix.trim_end_matches('/').to_owned(),
            held: Mutex::default(),
            known: tokio::sync::Mutex::default(),
            conflicts: AtomicUsize::new(0),
        })
    }

    /// Lost races retried so far.
    pub fn conflicts(&self) -> usize {
        self.conflicts.load(Ordering::Relaxed)
    }

    fn held(&self) -> MutexGuard<'_, BTreeMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `op` on the member that answered last; on an error, on each
    /// other member in turn. A member that failed is left for the next.
    async fn call<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let n = self.members.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for i in (0..n).map(|k| (first + k) % n) {
            match op(self.members[i].clone()).await {
                Ok(v) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) => last = Some(e),
            }
        }
        self.current.store((first + 1) % n, Ordering::Relaxed);
        Err(last.map_or_else(
            || StoreError::Unavailable("etcd: no member".into()),
            unavailable,
        ))
    }

    /// Every lease key, with the revision of the read.
    async fn records(&self) -> Result<(i64, Vec<Record>)> {
        let prefix = layout::subnets_prefix(&self.prefix);
        let resp = self
            .call(|mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let records = resp
            .kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                // A key that names no subnet is listed as corrupt, not
                // dropped: `lab check` and the logs name it.
                let subnets = layout::parse_subnet_key(&self.prefix, &key).unwrap_or_default();
                Record {
                    lease: layout::parse_lease(&self.prefix, &key, kv.value()),
                    key,
                    subnets,
                    mod_revision: kv.mod_revision(),
                }
            })
            .collect();
        Ok((revision, records))
    }

    /// Puts `lease` under its key if `guard` holds; returns whether it did.
    async fn put_if(&self, guard: Compare, lease: &Lease, etcd_lease: i64) -> Result<bool> {
        Ok(self
            .put_txn(guard, lease, etcd_lease, Vec::new())
            .await?
            .succeeded())
    }

    /// Puts `lease` under its key if `guard` holds, else runs `otherwise`.
    async fn put_txn(
        &self,
        guard: Compare,
        lease: &Lease,
        etcd_lease: i64,
        otherwise: Vec<TxnOp>,
    ) -> Result<etcd_client::TxnResponse> {
        let key = layout::subnet_key(&self.prefix, &lease.subnets);
        let value = serde_json::to_vec(lease).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let put = TxnOp::put(key, value, Some(PutOptions::new().with_lease(etcd_lease)));
        let txn = Txn::new().when([guard]).and_then([put]).or_else(otherwise);
        self.call(|mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    /// Claims `subnets` for `node` if no key holds them; after a success,
    /// gives them back if an older key turned out to share one (two
    /// dual-stack keys can differ yet share a family's subnet). A lost
    /// race brings back, in the same round trip, the names of the keys
    /// created since this client last looked, so that the next pick
    /// knows what is taken now without listing every lease again, and
    /// the key itself: a claim retried on another member after its
    /// answer was lost finds its own key there, on its own etcd lease.
    async fn claim(&self, lease: &Lease, etcd_lease: i64) -> Result<bool> {
        let key = layout::subnet_key(&self.prefix, &lease.subnets);
        let absent = Compare::create_revision(key.clone(), CompareOp::Equal, 0);
        let since = self.known.lock().await.as_ref().map_or(0, |k| k.revision);
        let created_since = TxnOp::get(
            layout::subnets_prefix(&self.prefix),
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_keys_only()
                    .with_min_create_revision(since + 1),
            ),
        );
        let holder = TxnOp::get(key.clone(), None);
        let resp = self
            .put_txn(absent, lease, etcd_lease, vec![created_since, holder])
            .await?;
        if !resp.succeeded() {
            let gets: Vec<_> = resp
                .op_responses()
                .into_iter()
                .filter_map(|op| match op {
                    etcd_client::TxnOpResponse::Get(get) => Some(get),
                    _ => None,
                })
                .collect();
            let ours = gets
                .get(1)
                .and_then(|g| g.kvs().first())
                .is_some_and(|kv| kv.lease() == etcd_lease);
            if !ours {
                let now_taken: Vec<IpNet> = gets
                    .first()
                    .into_iter()
                    .flat_map(|get| get.kvs().iter())
                    .filter_map(|kv| {
                        layout::parse_subnet_key(&self.prefix, &String::from_utf8_lossy(kv.key()))
                    })
                    .flatten()
                    .collect();
                let revision = resp.header().map_or(since, |h| h.revision());
                self.taken(&now_taken, Some(revision)).await;
                return Ok(false);
            }
        }
        if lease.subnets.len() < 2 {
            return Ok(true); // one family: its key is the subnet itself
        }
        let keys = self
            .call(|mut c| {
                let prefix = layout::subnets_prefix(&self.prefix);
                async move {
                    c.get(
                        prefix,
                        Some(GetOptions::new().with_prefix().with_keys_only()),
                    )
                    .await
                }
            })
            .await?;
        let shared = keys.kvs().iter().any(|kv| {
            let other = String::from_utf8_lossy(kv.key());
            other != key
                && layout::parse_subnet_key(&self.prefix, &other)
                    .is_some_and(|subnets| subnets.iter().any(|s| lease.subnets.contains(s)))
        });
        if shared {
            self.delete(&key).await?;
            return Ok(false);
        }
        Ok(true)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.call(|mut c| async move { c.delete(key, None).await })
            .await
            .map(drop)
    }

    async fn get(&self, key: &str) -> Result<etcd_client::GetResponse> {
        self.call(|mut c| async move { c.get(key, None).await })
            .await
    }

    /// The listing to claim against (a fresh one if `fresh`), and every
    /// subnet this client knows to be taken.
    async fn known(&self, fresh: bool) -> Result<(Arc<Vec<Record>>, Vec<IpNet>)> {
        let mut known = self.known.lock().await;
        if fresh || known.is_none() {
            let (revision, records) = self.records().await?;
            let taken = records.iter().flat_map(|r| r.subnets.clone()).collect();
            *known = Some(Known {
                records: Arc::new(records),
                taken,
                revision,
            });
        }
        let k = known
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("etcd: no listing".into()))?;
        Ok((k.records.clone(), k.taken.iter().copied().collect()))
    }

    /// Records subnets as taken (claimed, or lost to another node), and
    /// the revision they bring this client's view up to.
    async fn taken(&self, subnets: &[IpNet], revision: Option<i64>) {
        if let Some(k) = self.known.lock().await.as_mut() {
            k.taken.extend(subnets.iter().copied());
            k.revision = k.revision.max(revision.unwrap_or(0));
        }
    }

    /// Claims this node's subnets on `etcd_lease`: its own key back, else
    /// its old subnets if free, else new ones.
    async fn claim_for(
        &self,
        node: &str,
        attrs: &LeaseAttrs,
        conf: &ClusterConf,
        ttl: Duration,
        etcd_lease: i64,
    ) -> Result<Lease> {
        let remembered = self.held().get(node).map(|h| h.subnets.clone());
        let mut conflicts = 0;
        // A node that held subnets before (its etcd lease expired) needs
        // to know whether they are still free: list afresh.
        let mut fresh = remembered.is_some();
        let lease = 'listed: loop {
            let was_fresh = fresh;
            let (records, mut taken) = self.known(fresh).await?;
            fresh = true;
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
                self.lost_race(&mut conflicts)?;
                continue;
            }
            // Its subnets from before an expiry, if still free; else a
            // random one among the first free. A lost race marks the
            // subnet taken and tries another without listing again.
            let mut wanted = remembered
                .clone()
                .filter(|s| Self::fits(conf, s) && !s.iter().any(|x| taken.contains(x)));
            for _ in 0..RETRIES_PER_LIST {
                let subnets = match wanted.take() {
                    Some(s) => s,
                    None => match Self::pick(conf, &taken) {
                        // What this client knew may be old: look again.
                        Err(StoreError::Exhausted { .. }) if !was_fresh => continue 'listed,
                        other => other?,
                    },
                };
                let lease = lease_for(node, subnets, attrs, ttl);
                let won = self.claim(&lease, etcd_lease).await?;
                self.taken(&lease.subnets, None).await;
                if won {
                    break 'listed lease;
                }
                self.lost_race(&mut conflicts)?;
                taken = self.known(false).await?.1;
            }
        };
        Ok(lease)
    }

    /// One free subnet per family, at random among the first free ones.
    fn pick(conf: &ClusterConf, taken: &[IpNet]) -> Result<Vec<IpNet>> {
        let mut pick = Vec::new();
        for fam in conf.families() {
            let free = free_subnets(fam, taken, PICK_AMONG);
            if free.is_empty() {
                return Err(StoreError::Exhausted {
                    cidr: fam.network,
                    subnet_len: fam.subnet_len,
                });
            }
            pick.push(free[fastrand::usize(..free.len())]);
        }
        Ok(pick)
    }

    /// Counts a lost race; too many in a row is an error.
    fn lost_race(&self, in_a_row: &mut usize) -> Result<()> {
        *in_a_row += 1;
        self.conflicts.fetch_add(1, Ordering::Relaxed);
        if *in_a_row >= MAX_CONFLICTS {
            return Err(StoreError::Unavailable(format!(
                "etcd: lost {in_a_row} races for a subnet in a row"
            )));
        }
        Ok(())
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
        if let Some(p) = proposed {
            let absent = Compare::create_revision(key.clone(), CompareOp::Equal, 0);
            let txn = Txn::new()
                .when([absent])
                .and_then([TxnOp::put(key.clone(), p, None)]);
            self.call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        }
        let resp = self.get(&key).await?;
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
            .call(|mut c| async move { c.lease_grant(ttl_secs, None).await })
            .await?
            .id();
        let claimed = self.claim_for(node, attrs, conf, ttl, etcd_lease).await;
        let old = match &claimed {
            Ok(lease) => self
                .held()
                .insert(
                    node.to_owned(),
                    Held {
                        etcd_lease,
                        subnets: lease.subnets.clone(),
                    },
                )
                .map(|h| h.etcd_lease),
            // Nothing was claimed on it: give the etcd lease back.
            Err(_) => Some(etcd_lease),
        };
        if let Some(id) = old.filter(|id| *id != etcd_lease || claimed.is_err()) {
            let _ = self
                .call(|mut c| async move { c.lease_revoke(id).await })
                .await;
        }
        claimed
    }

    async fn renew(&self, node: &str, attrs: &LeaseAttrs, ttl: Duration) -> Result<Lease> {
        let held = self.held().get(node).cloned();
        let Some(held) = held else {
            return Err(StoreError::NotFound(node.to_owned()));
        };
        // Opening a keep-alive stream sends one keep-alive; an etcd lease
        // that expired answers "not found".
        let id = held.etcd_lease;
        let alive = self
            .call(|mut c| async move {
                match c.lease_keep_alive(id).await {
                    Ok(_) => Ok(true),
                    Err(etcd_client::Error::LeaseKeepAliveError(why))
                        if why.contains("not found") =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        if !alive {
            return Err(StoreError::NotFound(node.to_owned()));
        }
        let key = layout::subnet_key(&self.prefix, &held.subnets);
        // A write between our read and our put is looked at again: it may
        // have removed the key (NotFound) or given it to another (Conflict).
        for _ in 0..RENEW_ATTEMPTS {
            let resp = self.get(&key).await?;
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
            // Rewrite only what changed (or went bad): a renewal is not
            // news for every watcher.
            let unchanged =
                matches!(&stored, Ok(l) if l.attrs == *attrs) && kv.lease() == held.etcd_lease;
            let same = Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision());
            if unchanged || self.put_if(same, &lease, held.etcd_lease).await? {
                return Ok(lease);
            }
        }
        Err(StoreError::Unavailable(format!(
            "etcd: {key} changed under each of {RENEW_ATTEMPTS} renewals"
        )))
    }

    async fn release(&self, node: &str) -> Result<()> {
        let (_, records) = self.records().await?;
        for r in records
            .iter()
            .filter(|r| r.lease.as_ref().is_ok_and(|l| l.node == node))
        {
            // Only as listed: a key re-claimed since is another node's.
            let same = Compare::mod_revision(r.key.clone(), CompareOp::Equal, r.mod_revision);
            let txn = Txn::new()
                .when([same])
                .and_then([TxnOp::delete(r.key.clone(), None)]);
            self.call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        }
        let held = self.held().remove(node);
        if let Some(h) = held {
            // The keys are gone already; a lease that expired meanwhile is
            // no error.
            let id = h.etcd_lease;
            let _ = self
                .call(|mut c| async move { c.lease_revoke(id).await })
                .await;
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
        if let Ok(since) = since.as_str().parse::<i64>() {
            self.changed_after(layout::subnets_prefix(&self.prefix), since, timeout)
                .await?;
        }
        self.list().await
    }
}

impl EtcdStore {
    /// Returns once a key under `prefix` changed after revision `since`
    /// (or `since` was compacted), or when `timeout` passes.
    async fn changed_after(&self, prefix: String, since: i64, timeout: Duration) -> Result<()> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(since + 1);
        // The timeout covers opening the watch too: a member that hangs
        // rather than refuses must not hold the caller past it.
        let changed = async {
            let mut stream = self
                .call(|mut c| {
                    let (prefix, options) = (prefix.clone(), options.clone());
                    async move { c.watch(prefix, Some(options)).await }
                })
                .await?;
            loop {
                match stream.message().await {
                    // Created, or a progress note: keep waiting.
                    Ok(Some(r)) if r.events().is_empty() && !r.canceled() => continue,
                    // Cancelled for any reason but compaction: an error.
                    Ok(Some(r)) if r.canceled() && r.compact_revision() == 0 => {
                        let why = r.cancel_reason().to_owned();
                        return Err(StoreError::Unavailable(format!(
                            "etcd: watch cancelled: {why}"
                        )));
                    }
                    // An event, or a compacted revision: list again.
                    Ok(_) => return Ok(()),
                    Err(e) => return Err(unavailable(e)),
                }
            }
        };
        if let Ok(Err(e)) = tokio::time::timeout(timeout, changed).await {
            // The member went away mid-watch: the next call tries another.
            self.current.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        Ok(())
    }
}

mod records;
#[cfg(test)]
mod tests;
