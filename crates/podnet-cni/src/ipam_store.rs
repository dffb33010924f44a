//! The built-in IPAM's durable state: one JSON file per network.
//!
//! Every change is a transaction: take an exclusive lock, read the state,
//! apply a pure transition from the core, write a temp file and rename it
//! over the old one. A plugin killed at any instant leaves either the old
//! state or the new one, never a torn file (the page cache is shared, so
//! what one process renamed, the next one reads), and concurrent plugins
//! are serialised by the lock.
//!
//! Nothing is fsynced. The state records the kernel's boot id, and a state
//! from an earlier boot has its allocations freed on load: a reboot ends
//! every pod's network namespace, so nothing in it is worth keeping, and
//! durability across a power cut would buy nothing but ~0.5 ms per call.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use podnet_core::cni::{CniError, Code};
use podnet_core::ipam::IpamState;

const STATE: &str = "state.json";
const TEMP: &str = "state.json.tmp";
const LOCK: &str = "lock";

pub struct IpamStore {
    dir: PathBuf,
}

impl IpamStore {
    /// Opens (creating with mode 0700 if needed) a network's state dir.
    pub fn open(dir: &Path) -> Result<Self, CniError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_error(dir, e))?;
        Ok(IpamStore {
            dir: dir.to_path_buf(),
        })
    }

    /// Runs `change` on the state under the lock and persists the result if
    /// it changed. If `change` fails, nothing is written.
    pub fn transact<T>(
        &self,
        change: impl FnOnce(&mut IpamState) -> Result<T, CniError>,
    ) -> Result<T, CniError> {
        let lock_path = self.dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, e))?;
        lock.lock().map_err(|e| io_error(&lock_path, e))?;
        let before = self.load()?;
        let mut state = before.clone();
        let out = change(&mut state)?;
        if state != before {
            self.store(&state)?;
        }
        Ok(out)
        // The lock is released when `lock` is dropped here.
    }

    /// Reads the state without locking; for inspection only.
    pub fn load(&self) -> Result<IpamState, CniError> {
        let path = self.dir.join(STATE);
        Ok(match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<IpamState>(&bytes)
                .map_err(|e| {
                    CniError::new(
                        Code::Io,
                        format!("IPAM state {} is unreadable: {e}", path.display()),
                    )
                })?
                .in_boot(&boot_id()?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                IpamState::default().in_boot(&boot_id()?)
            }
            Err(e) => return Err(io_error(&path, e)),
        })
    }

    fn store(&self, state: &IpamState) -> Result<(), CniError> {
        let temp = self.dir.join(TEMP);
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| CniError::new(Code::Io, format!("encode IPAM state: {e}")))?;
        let write = || -> io::Result<()> {
            let mut file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(&bytes)?;
            std::fs::rename(&temp, self.dir.join(STATE))
        };
        write().map_err(|e| io_error(&self.dir.join(STATE), e))
    }
}

/// This boot of the kernel.
fn boot_id() -> Result<String, CniError> {
    let path = Path::new("/proc/sys/kernel/random/boot_id");
    std::fs::read_to_string(path)
        .map(|id| id.trim().to_owned())
        .map_err(|e| io_error(path, e))
}

fn io_error(path: &Path, e: io::Error) -> CniError {
    CniError::new(Code::Io, format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_core::ipam::{Attachment, Pool, RangeConf};
    use std::os::unix::fs::PermissionsExt;

    fn pool() -> Pool {
        let conf = RangeConf {
            subnet: "10.9.0.0/24".into(),
            ..Default::default()
        };
        Pool::from_conf(&[vec![conf]], |_, _| "ipam".into()).unwrap()
    }

    fn who(n: usize) -> Attachment {
        Attachment {
            container_id: format!("c{n}"),
            ifname: "eth0".into(),
        }
    }

    #[test]
    fn persists_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/net");
        let store = IpamStore::open(&dir).unwrap();
        store
            .transact(|s| Ok(s.allocate(&pool(), &who(1), &[])?))
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(STATE)), 0o600);
        assert_eq!(mode(&dir.join(LOCK)), 0o600);
        let again = IpamStore::open(&dir).unwrap().load().unwrap();
        assert_eq!(again.owned_by(&who(1)).len(), 1);
    }

    #[test]
    fn a_state_from_an_earlier_boot_is_not_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let store = IpamStore::open(tmp.path()).unwrap();
        store
            .transact(|s| Ok(s.allocate(&pool(), &who(1), &[])?))
            .unwrap();
        let raw = std::fs::read_to_string(tmp.path().join(STATE)).unwrap();
        let current = boot_id().unwrap();
        assert!(raw.contains(&current));
        std::fs::write(
            tmp.path().join(STATE),
            raw.replace(&current, "an-earlier-boot"),
        )
        .unwrap();
        assert!(store.load().unwrap().allocations.is_empty());
    }

    #[test]
    fn failed_change_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = IpamStore::open(tmp.path()).unwrap();
        let r: Result<(), _> = store.transact(|s| {
            s.allocate(&pool(), &who(1), &[])?;
            Err(CniError::new(Code::Io, "boom"))
        });
        assert!(r.is_err());
        assert!(store.load().unwrap().allocations.is_empty());
    }

    #[test]
    fn a_leftover_temp_file_from_a_crash_is_harmless() {
        let tmp = tempfile::tempdir().unwrap();
        let store = IpamStore::open(tmp.path()).unwrap();
        store
            .transact(|s| Ok(s.allocate(&pool(), &who(1), &[])?))
            .unwrap();
        // A crash between writing the temp file and the rename.
        std::fs::write(tmp.path().join(TEMP), b"{\"half").unwrap();
        assert_eq!(store.load().unwrap().allocations.len(), 1);
        store
            .transact(|s| Ok(s.allocate(&pool(), &who(2), &[])?))
            .unwrap();
        assert_eq!(store.load().unwrap().allocations.len(), 2);
    }

    #[test]
    fn threads_never_share_an_address() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let handles: Vec<_> = (0..16)
            .map(|n| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let store = IpamStore::open(&dir).unwrap();
                    store
                        .transact(|s| Ok(s.allocate(&pool(), &who(n), &[])?))
                        .unwrap()[0]
                        .address
                })
            })
            .collect();
        let mut ips: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 16);
        assert_eq!(
            IpamStore::open(&dir)
                .unwrap()
                .load()
                .unwrap()
                .allocations
                .len(),
            16
        );
    }
}
