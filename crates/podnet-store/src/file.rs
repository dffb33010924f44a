//! The embedded store: a directory shared by the agents of one machine.
//!
//! ```text
//! DIR/net-conf.json         the cluster config, written once
//! DIR/leases/<node>.json    one lease per node
//! DIR/subnets/<subnet>      a claim: the name of the node holding it
//! DIR/lock                  serialises takeovers of stale claims
//! ```
//!
//! A subnet is claimed by a transactional create: the claim is written to a
//! temp file and hard-linked to its final name, which fails if another
//! agent got there first; the loser retries with the next free subnet.
//! Files are 0600 and directories 0700; every write is temp + rename.

use std::collections::hash_map::DefaultHasher;
use std::ffi::OsString;
use std::fs::{DirBuilder, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ipnet::IpNet;
use podnet_core::cluster::carve::first_free;
use podnet_core::cluster::lease::Lease;
use podnet_core::cluster::netconf::ClusterConf;

use crate::{NO_REVISION, NodeInfo, Result, Revision, Store, StoreError, now};

/// A claim without a lease is an acquire in progress; after this long it
/// is a crashed one and the subnet may be taken over.
const ORPHAN_GRACE: Duration = Duration::from_secs(60);
const WATCH_POLL: Duration = Duration::from_millis(100);

pub struct FileStore {
    dir: PathBuf,
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

fn io(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
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
                .map_err(io(&path))?;
        }
        Ok(FileStore { dir })
    }

    fn lease_path(&self, node: &str) -> PathBuf {
        self.dir.join("leases").join(format!("{node}.json"))
    }

    fn claim_path(&self, subnet: &IpNet) -> PathBuf {
        self.dir
            .join("subnets")
            .join(subnet.to_string().replace('/', "_"))
    }

    /// A fully written temp file next to `target`, for rename or link.
    fn temp_with(&self, target: &Path, content: &[u8]) -> Result<PathBuf> {
        let temp = target.with_extension(format!(
            "tmp.{}.{}",
            std::process::id(),
            TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io(&temp))?;
        f.write_all(content).map_err(io(&temp))?;
        Ok(temp)
    }

    fn write_atomic(&self, target: &Path, content: &[u8]) -> Result<()> {
        let temp = self.temp_with(target, content)?;
        std::fs::rename(&temp, target).map_err(io(target))
    }

    /// Creates `target` with `content` only if it does not exist yet.
    fn create_exclusive(&self, target: &Path, content: &[u8]) -> Result<bool> {
        let temp = self.temp_with(target, content)?;
        let linked = std::fs::hard_link(&temp, target);
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io(target)(e)),
        }
    }

    fn read_lease(&self, path: &Path) -> Result<Option<Lease>> {
        match std::fs::read(path) {
            Ok(bytes) => parse_lease(path, &bytes).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(path)(e)),
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
        Ok(self
            .claimed()?
            .into_iter()
            .map(|subnet| (subnet, self.claim_owner(&subnet)))
            .collect())
    }

    /// Every claimed subnet, from the directory listing alone.
    fn claimed(&self) -> Result<Vec<IpNet>> {
        let dir = self.dir.join("subnets");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name().to_string_lossy().replace('_', "/");
            if let Ok(subnet) = name.parse::<IpNet>() {
                out.push(subnet);
            }
        }
        Ok(out)
    }

    /// The node holding a claim ("" if there is none).
    fn claim_owner(&self, subnet: &IpNet) -> String {
        std::fs::read_to_string(self.claim_path(subnet))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// A claim may be taken over if its node's lease expired, or if it has
    /// no lease and is older than the grace period (a crashed acquire).
    fn claim_is_stale(&self, subnet: &IpNet, owner: &str) -> Result<bool> {
        match self.read_lease(&self.lease_path(owner))? {
            Some(lease) => Ok(lease.expired(now()) || !lease.subnets.contains(subnet)),
            None => {
                let age = std::fs::metadata(self.claim_path(subnet))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok());
                Ok(age.is_some_and(|a| a > ORPHAN_GRACE))
            }
        }
    }

    /// Claims a free subnet of `fam` for `node`, retrying on lost races.
    fn claim_new(
        &self,
        node: &str,
        fam: &podnet_core::cluster::netconf::FamilyConf,
    ) -> Result<IpNet> {
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
                let in_family = subnet.addr().is_ipv4() == fam.network.addr().is_ipv4()
                    && podnet_core::cluster::carve::is_leasable(fam, &subnet);
                if in_family && self.claim_is_stale(&subnet, &owner)? {
                    if owner != node {
                        let _ = std::fs::remove_file(self.lease_path(&owner));
                    }
                    self.write_atomic(&self.claim_path(&subnet), node.as_bytes())?;
                    return Ok(subnet);
                }
            }
            return Err(StoreError::Exhausted(fam.network.to_string()));
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
            .map_err(io(&path))?;
        f.lock().map_err(io(&path))?;
        Ok(f)
    }

    /// The leases' revision: a fingerprint of their names and mtimes.
    fn revision(&self) -> Result<Revision> {
        let dir = self.dir.join("leases");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name();
            if !name.to_string_lossy().ends_with(".json") {
                continue;
            }
            let modified = entry.metadata().and_then(|m| m.modified()).ok();
            names.push((name, modified));
        }
        Ok(fingerprint(names))
    }

    /// Every lease and their revision, each file opened once. A large
    /// cluster's leases are read on two threads.
    fn snapshot(&self) -> Result<(Revision, Vec<Lease>)> {
        const SPLIT_FROM: usize = 256;
        let dir = self.dir.join("leases");
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                paths.push(path);
            }
        }
        let read = if paths.len() < SPLIT_FROM {
            self.read_leases(&paths)?
        } else {
            let (first, second) = paths.split_at(paths.len() / 2);
            let (a, b) = std::thread::scope(|scope| {
                let other = scope.spawn(|| self.read_leases(second));
                (self.read_leases(first), other.join())
            });
            let mut read = a?;
            read.extend(b.map_err(|_| StoreError::Invalid("lease reader panicked".into()))??);
            read
        };
        let rev = fingerprint(
            read.iter()
                .map(|(name, modified, _)| (name.clone(), *modified))
                .collect(),
        );
        let mut leases: Vec<Lease> = read.into_iter().map(|(_, _, l)| l).collect();
        leases.sort_by(|a, b| a.node.cmp(&b.node));
        Ok((rev, leases))
    }

    /// Each lease with its file name and mtime; one that vanished while
    /// listing is skipped.
    fn read_leases(&self, paths: &[PathBuf]) -> Result<Vec<(OsString, Option<SystemTime>, Lease)>> {
        let mut out = Vec::with_capacity(paths.len());
        for path in paths {
            let mut file = match std::fs::File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(path)(e)),
            };
            let modified = file.metadata().and_then(|m| m.modified()).ok();
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(io(path))?;
            let lease = parse_lease(path, &bytes)?;
            let name = path.file_name().unwrap_or_default().to_owned();
            out.push((name, modified, lease));
        }
        Ok(out)
    }
}

fn fingerprint(mut names: Vec<(OsString, Option<SystemTime>)>) -> Revision {
    names.sort();
    let mut h = DefaultHasher::new();
    names.hash(&mut h);
    h.finish()
}

fn parse_lease(path: &Path, bytes: &[u8]) -> Result<Lease> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

impl FileStore {
    /// Writes a lease (and its claims) as given, without allocating: for
    /// simulations and migrations, where the subnets are decided elsewhere.
    pub fn import(&self, lease: &Lease) -> Result<()> {
        for subnet in &lease.subnets {
            self.write_atomic(&self.claim_path(subnet), lease.node.as_bytes())?;
        }
        self.write_lease(lease)
    }
}

impl Store for FileStore {
    fn net_conf(&self, proposed: Option<&str>) -> Result<String> {
        let path = self.dir.join("net-conf.json");
        if let Some(p) = proposed {
            self.create_exclusive(&path, p.as_bytes())?;
        }
        std::fs::read_to_string(&path).map_err(io(&path))
    }

    fn acquire(&self, node: &NodeInfo, conf: &ClusterConf, ttl: Duration) -> Result<Lease> {
        // After a restart the node's lease names its subnets: reclaim each
        // one that is still claimed by it. Only a new node (or one whose
        // claim was taken over) needs a free subnet.
        let previous = self.read_lease(&self.lease_path(&node.name))?;
        let mut subnets = Vec::new();
        for fam in conf.families() {
            let kept = previous.as_ref().and_then(|l| {
                l.subnets
                    .iter()
                    .find(|s| {
                        s.addr().is_ipv4() == fam.network.addr().is_ipv4()
                            && podnet_core::cluster::carve::is_leasable(fam, s)
                            && self.claim_owner(s) == node.name
                    })
                    .copied()
            });
            subnets.push(match kept {
                Some(s) => s,
                None => self.claim_new(&node.name, fam)?,
            });
        }
        let lease = Lease {
            node: node.name.clone(),
            public_ip: node.public_ip,
            public_ipv6: node.public_ipv6,
            subnets,
            vtep_mac: node.vtep_mac.clone(),
            vtep_mac6: node.vtep_mac6.clone(),
            expires: now() + ttl.as_secs(),
        };
        self.write_lease(&lease)?;
        Ok(lease)
    }

    fn renew(&self, node: &NodeInfo, ttl: Duration) -> Result<Lease> {
        let path = self.lease_path(&node.name);
        let mut lease = self
            .read_lease(&path)?
            .ok_or_else(|| StoreError::Invalid(format!("node {} holds no lease", node.name)))?;
        lease.public_ip = node.public_ip;
        lease.public_ipv6 = node.public_ipv6;
        lease.vtep_mac = node.vtep_mac.clone();
        lease.vtep_mac6 = node.vtep_mac6.clone();
        lease.expires = now() + ttl.as_secs();
        self.write_lease(&lease)?;
        Ok(lease)
    }

    fn release(&self, node: &str) -> Result<()> {
        for (subnet, owner) in self.claims()? {
            if owner == node {
                let _ = std::fs::remove_file(self.claim_path(&subnet));
            }
        }
        match std::fs::remove_file(self.lease_path(node)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io(&self.lease_path(node))(e)),
            _ => Ok(()),
        }
    }

    fn list(&self) -> Result<Vec<Lease>> {
        Ok(self.snapshot()?.1)
    }

    fn watch(&self, since: Revision, timeout: Duration) -> Result<(Revision, Vec<Lease>)> {
        if since == NO_REVISION {
            return self.snapshot();
        }
        let deadline = Instant::now() + timeout;
        loop {
            if self.revision()? != since || Instant::now() >= deadline {
                return self.snapshot();
            }
            std::thread::sleep(WATCH_POLL.min(deadline.saturating_duration_since(Instant::now())));
        }
    }
}

#[cfg(test)]
mod tests;
