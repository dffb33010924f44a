//! The embedded store: a directory shared by the agents of one machine.
//!
//! ```text
//! DIR/net-conf.json         the cluster config, written once
//! DIR/leases/<node>.json    one lease per node
//! DIR/subnets/<subnet>      a claim: the name of the node holding it
//! DIR/lock                  serialises takeovers of stale claims
//! DIR/policy/...            policy's records (see `records`)
//! ```
//!
//! A subnet is claimed by a transactional create: the claim is written to a
//! temp file and hard-linked to its final name, which fails if another
//! agent got there first; the loser retries with the next free subnet.
//! Files are 0600 and directories 0700; every write is temp + rename.
//!
//! The store is synchronous underneath; its [`Store`] methods run on
//! tokio's blocking pool. A lease file that does not parse is listed as
//! corrupt under its key (`leases/<node>.json`); a store directory that
//! cannot be read is [`StoreError::Unavailable`].

use std::collections::hash_map::DefaultHasher;
use std::fs::{DirBuilder, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use ipnet::IpNet;
use podnet_core::cluster::carve::{FamilyConf, first_free, is_leasable};
use podnet_core::cluster::lease::{Lease, LeaseAttrs};
use podnet_core::cluster::netconf::ClusterConf;
use podnet_linux::files::{create_private_exclusive, write_private_atomic};

use crate::{Result, Revision, Snapshot, Store, StoreError, lease_for, now};

/// A claim without a lease is an acquire in progress; after this long it
/// is a crashed one and the subnet may be taken over.
const ORPHAN_GRACE: Duration = Duration::from_secs(60);
const WATCH_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

fn unavailable(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |e| StoreError::Unavailable(format!("{}: {e}", path.display()))
}

/// A lease file's key in snapshots and errors.
fn key_of(file_name: &str) -> String {
    format!("leases/{file_name}")
}

impl FileStore {
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        for sub in ["leases", "subnets"] {
            let path = dir.join(sub);
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .map_err(unavailable(&path))?;
        }
        Ok(FileStore { dir })
    }

    fn leases_dir(&self) -> PathBuf {
        self.dir.join("leases")
    }

    fn lease_path(&self, node: &str) -> PathBuf {
        self.leases_dir().join(format!("{node}.json"))
    }

    fn claim_path(&self, subnet: &IpNet) -> PathBuf {
        self.dir
            .join("subnets")
            .join(subnet.to_string().replace('/', "_"))
    }

    fn write_atomic(&self, target: &Path, content: &[u8]) -> Result<()> {
        write_private_atomic(target, content).map_err(unavailable(target))
    }

    fn create_exclusive(&self, target: &Path, content: &[u8]) -> Result<bool> {
        create_private_exclusive(target, content).map_err(unavailable(target))
    }

    /// A node's lease; `None` if it has none. A missing file is only
    /// "no lease" while the store itself is there.
    fn read_lease(&self, node: &str) -> Result<Option<Lease>> {
        let path = self.lease_path(node);
        match std::fs::read(&path) {
            Ok(bytes) => parse_lease(&key_of(&format!("{node}.json")), &bytes).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dir = self.leases_dir();
                std::fs::metadata(&dir).map_err(unavailable(&dir))?;
                Ok(None)
            }
            Err(e) => Err(unavailable(&path)(e)),
        }
    }

    fn write_lease(&self, lease: &Lease) -> Result<()> {
        let path = self.lease_path(&lease.node);
        let bytes =
            serde_json::to_vec_pretty(lease).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.write_atomic(&path, &bytes)
    }

    /// Every claimed subnet and the node that claimed it.
    fn claims(&self) -> Result<Vec<(IpNet, String)>> {
        let mut out = Vec::new();
        for subnet in self.claimed()? {
            if let Some(owner) = self.claim_owner(&subnet)? {
                out.push((subnet, owner));
            }
        }
        Ok(out)
    }

    /// Every claimed subnet, from the directory listing alone.
    fn claimed(&self) -> Result<Vec<IpNet>> {
        let dir = self.dir.join("subnets");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(unavailable(&dir))? {
            let entry = entry.map_err(unavailable(&dir))?;
            let name = entry.file_name().to_string_lossy().replace('_', "/");
            if let Ok(subnet) = name.parse::<IpNet>() {
                out.push(subnet);
            }
        }
        Ok(out)
    }

    /// The node holding a claim; `None` if there is no claim. A claim that
    /// cannot be read is Unavailable, never "nobody's".
    fn claim_owner(&self, subnet: &IpNet) -> Result<Option<String>> {
        let path = self.claim_path(subnet);
        match std::fs::read_to_string(&path) {
            Ok(owner) => Ok(Some(owner.trim().to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(&path)(e)),
        }
    }

    fn claim_is(&self, subnet: &IpNet, node: &str) -> Result<bool> {
        Ok(self.claim_owner(subnet)?.is_some_and(|o| o == node))
    }

    /// A claim may be taken over if its node's lease expired, or if it has
    /// no lease (a crashed acquire), but never while it is younger than the
    /// grace period: its taker may not have written its lease yet. A claim
    /// whose lease is corrupt is not stale: its node may be alive.
    fn claim_is_stale(&self, subnet: &IpNet, owner: &str) -> Result<bool> {
        let age = std::fs::metadata(self.claim_path(subnet))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        if age.is_none_or(|a| a < ORPHAN_GRACE) {
            return Ok(false);
        }
        match self.read_lease(owner) {
            Ok(Some(lease)) => Ok(lease.expired(now()) || !lease.subnets.contains(subnet)),
            Ok(None) => Ok(true),
            Err(StoreError::Corrupt { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Claims a free subnet of `fam` for `node`, retrying on lost races.
    fn claim_new(&self, node: &str, fam: &FamilyConf) -> Result<IpNet> {
        loop {
            if let Some(subnet) = first_free(fam, &self.claimed()?) {
                if self.create_exclusive(&self.claim_path(&subnet), node.as_bytes())? {
                    return Ok(subnet);
                }
                continue; // lost the race for this one: look again
            }
            // Full: take over a stale claim, under the lock so that two
            // agents cannot both take the same one.
            let _lock = self.lock()?;
            for (subnet, owner) in self.claims()? {
                if is_leasable(fam, &subnet) && self.claim_is_stale(&subnet, &owner)? {
                    if owner != node {
                        let _ = std::fs::remove_file(self.lease_path(&owner));
                    }
                    self.write_atomic(&self.claim_path(&subnet), node.as_bytes())?;
                    return Ok(subnet);
                }
            }
            return Err(StoreError::Exhausted {
                cidr: fam.network,
                subnet_len: fam.subnet_len,
            });
        }
    }

    /// The subnets this node held before: its lease's, or, if its lease
    /// is corrupt, the claims that carry its name.
    fn held_before(&self, node: &str) -> Result<Vec<IpNet>> {
        match self.read_lease(node) {
            Ok(lease) => Ok(lease.map(|l| l.subnets).unwrap_or_default()),
            Err(StoreError::Corrupt { .. }) => Ok(self
                .claims()?
                .into_iter()
                .filter(|(_, owner)| owner == node)
                .map(|(subnet, _)| subnet)
                .collect()),
            Err(e) => Err(e),
        }
    }

    fn lock(&self) -> Result<std::fs::File> {
        let path = self.dir.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(unavailable(&path))?;
        f.lock().map_err(unavailable(&path))?;
        Ok(f)
    }

    /// The lease files with their mtimes.
    fn lease_files(&self) -> Result<Vec<(String, Option<SystemTime>)>> {
        let dir = self.leases_dir();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(unavailable(&dir))? {
            let entry = entry.map_err(unavailable(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") {
                out.push((name, entry.metadata().and_then(|m| m.modified()).ok()));
            }
        }
        Ok(out)
    }

    /// The leases' revision: a fingerprint of their names and mtimes.
    fn revision(&self) -> Result<Revision> {
        Ok(fingerprint(self.lease_files()?))
    }

    /// Every lease record and their revision, each file opened once. A
    /// large cluster's leases are read on two threads.
    pub fn snapshot(&self) -> Result<Snapshot> {
        const SPLIT_FROM: usize = 256;
        let names: Vec<String> = self.lease_files()?.into_iter().map(|(n, _)| n).collect();
        let read = if names.len() < SPLIT_FROM {
            self.read_records(&names)?
        } else {
            let (first, second) = names.split_at(names.len() / 2);
            let (a, b) = std::thread::scope(|scope| {
                let other = scope.spawn(|| self.read_records(second));
                (self.read_records(first), other.join())
            });
            let mut read = a?;
            read.extend(b.map_err(|_| StoreError::Invalid("lease reader panicked".into()))??);
            read
        };
        let mut snap = Snapshot {
            revision: fingerprint(read.iter().map(|r| (r.0.clone(), r.1)).collect()),
            ..Snapshot::default()
        };
        for (name, _, parsed) in read {
            match parsed {
                Ok(lease) => {
                    snap.leases.insert(key_of(&name), lease);
                }
                Err(why) => {
                    snap.corrupt.insert(key_of(&name), why);
                }
            }
        }
        Ok(snap)
    }

    /// Each lease file with its mtime and its lease, or why it does not
    /// parse; one that vanished while listing is skipped.
    fn read_records(&self, names: &[String]) -> Result<Vec<Record>> {
        let dir = self.leases_dir();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let path = dir.join(name);
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(unavailable(&path)(e)),
            };
            let modified = file.metadata().and_then(|m| m.modified()).ok();
            // A file that cannot be read (a directory, an I/O error) is one
            // bad record, like one that does not parse.
            let mut bytes = Vec::new();
            let parsed = match file.read_to_end(&mut bytes) {
                Ok(_) => serde_json::from_slice::<Lease>(&bytes).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            out.push((name.clone(), modified, parsed));
        }
        Ok(out)
    }

    /// Writes a lease (and its claims) as given, without allocating: for
    /// simulations and migrations, where the subnets are decided elsewhere.
    pub fn import(&self, lease: &Lease) -> Result<()> {
        for subnet in &lease.subnets {
            self.write_atomic(&self.claim_path(subnet), lease.node.as_bytes())?;
        }
        self.write_lease(lease)
    }

    pub fn net_conf_blocking(&self, proposed: Option<&str>) -> Result<String> {
        let path = self.dir.join("net-conf.json");
        if let Some(p) = proposed {
            self.create_exclusive(&path, p.as_bytes())?;
        }
        std::fs::read_to_string(&path).map_err(unavailable(&path))
    }

    pub fn acquire_blocking(
        &self,
        node: &str,
        attrs: &LeaseAttrs,
        conf: &ClusterConf,
        ttl: Duration,
    ) -> Result<Lease> {
        // After a restart the node gets back each subnet still claimed by
        // it. Only a new node (or one whose claim was taken over) needs a
        // free subnet.
        let before = self.held_before(node)?;
        let mut subnets = Vec::new();
        for fam in conf.families() {
            let kept = before
                .iter()
                .filter(|s| is_leasable(fam, s))
                .find_map(|s| match self.claim_is(s, node) {
                    Ok(true) => Some(Ok(*s)),
                    Ok(false) => None,
                    Err(e) => Some(Err(e)),
                })
                .transpose()?;
            subnets.push(match kept {
                Some(s) => s,
                None => self.claim_new(node, fam)?,
            });
        }
        let lease = lease_for(node, subnets, attrs, ttl);
        self.write_lease(&lease)?;
        Ok(lease)
    }

    /// A corrupt lease is rewritten from the claims that carry the node's
    /// name: renewing is how a node repairs its own record.
    pub fn renew_blocking(&self, node: &str, attrs: &LeaseAttrs, ttl: Duration) -> Result<Lease> {
        let subnets = self.held_before(node)?;
        if subnets.is_empty() {
            return Err(StoreError::NotFound(node.to_owned()));
        }
        for subnet in &subnets {
            match self.claim_owner(subnet)? {
                Some(holder) if holder == node => {}
                Some(holder) => {
                    return Err(StoreError::Conflict {
                        subnet: *subnet,
                        holder,
                    });
                }
                None => return Err(StoreError::NotFound(node.to_owned())),
            }
        }
        let lease = lease_for(node, subnets, attrs, ttl);
        self.write_lease(&lease)?;
        Ok(lease)
    }

    pub fn release_blocking(&self, node: &str) -> Result<()> {
        for (subnet, owner) in self.claims()? {
            if owner == node {
                let _ = std::fs::remove_file(self.claim_path(&subnet));
            }
        }
        let path = self.lease_path(node);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(unavailable(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Polls the lease files' fingerprint until it differs from `since`.
    pub fn watch_blocking(&self, since: &Revision, timeout: Duration) -> Result<Snapshot> {
        if *since == Revision::NONE {
            return self.snapshot();
        }
        let deadline = Instant::now() + timeout;
        loop {
            if self.revision()? != *since || Instant::now() >= deadline {
                return self.snapshot();
            }
            std::thread::sleep(WATCH_POLL.min(deadline.saturating_duration_since(Instant::now())));
        }
    }

    /// Runs `f` on a clone of this store on tokio's blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(FileStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(store))
            .await
            .map_err(|e| StoreError::Unavailable(format!("file store task: {e}")))?
    }
}

/// A lease file: its name, mtime and lease (or why it does not parse).
type Record = (
    String,
    Option<SystemTime>,
    std::result::Result<Lease, String>,
);

fn fingerprint(mut names: Vec<(String, Option<SystemTime>)>) -> Revision {
    names.sort();
    let mut h = DefaultHasher::new();
    names.hash(&mut h);
    Revision::new(format!("{:016x}", h.finish()))
}

fn parse_lease(key: &str, bytes: &[u8]) -> Result<Lease> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        why: e.to_string(),
    })
}

impl Store for FileStore {
    async fn net_conf(&self, proposed: Option<&str>) -> Result<String> {
        let proposed = proposed.map(str::to_owned);
        self.blocking(move |s| s.net_conf_blocking(proposed.as_deref()))
            .await
    }

    async fn acquire(
        &self,
        node: &str,
        attrs: &LeaseAttrs,
        conf: &ClusterConf,
        ttl: Duration,
    ) -> Result<Lease> {
        let (node, attrs, conf) = (node.to_owned(), attrs.clone(), conf.clone());
        self.blocking(move |s| s.acquire_blocking(&node, &attrs, &conf, ttl))
            .await
    }

    async fn renew(&self, node: &str, attrs: &LeaseAttrs, ttl: Duration) -> Result<Lease> {
        let (node, attrs) = (node.to_owned(), attrs.clone());
        self.blocking(move |s| s.renew_blocking(&node, &attrs, ttl))
            .await
    }

    async fn release(&self, node: &str) -> Result<()> {
        let node = node.to_owned();
        self.blocking(move |s| s.release_blocking(&node)).await
    }

    async fn list(&self) -> Result<Snapshot> {
        self.blocking(|s| s.snapshot()).await
    }

    async fn watch(&self, since: &Revision, timeout: Duration) -> Result<Snapshot> {
        let since = since.clone();
        self.blocking(move |s| s.watch_blocking(&since, timeout))
            .await
    }
}

/// For tests of the store's users: makes a node's record unreadable.
pub fn corrupt_lease_file(store_dir: &Path, node: &str) -> io::Result<()> {
    std::fs::write(
        store_dir.join("leases").join(format!("{node}.json")),
        b"{ not json",
    )
}

mod records;
#[cfg(test)]
mod tests;
