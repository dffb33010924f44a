//! The built-in IPAM's durable state: one JSON file per network.
//!
//! Every change is a transaction: take an exclusive lock, read the state,
//! apply a pure transition from the core, and write the result. A plugin
//! killed at any instant leaves a complete state behind (the page cache is
//! shared, so what one process wrote, the next one reads), and concurrent
//! plugins are serialised by the lock.
//!
//! The write is: the new state into `state.json.tmp`, then unlink
//! `state.json`, then rename the temp file to it. So at every instant
//! either `state.json` is complete, or it is missing and the temp file is
//! complete; `load` reads whichever holds. Renaming over an existing file
//! would be one step, but ext4 then starts writing the new file out before
//! the rename returns (its `auto_da_alloc` guard), which cost 0.1-0.5 ms
//! per call here.
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
        let (before, from_temp) = self.read()?;
        if from_temp {
            // A writer died between its unlink and its rename: finish its
            // rename, so that this writer's temp file is never the only copy.
            self.commit()?;
        }
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
        Ok(self.read()?.0)
    }

    /// The state, and whether it came from the temp file.
    fn read(&self) -> Result<(IpamState, bool), CniError> {
        for (name, from_temp) in [(STATE, false), (TEMP, true)] {
            let path = self.dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let state = serde_json::from_slice::<IpamState>(&bytes).map_err(|e| {
                        CniError::new(
                            Code::Io,
                            format!("IPAM state {} is unreadable: {e}", path.display()),
                        )
                    })?;
                    return Ok((state.in_boot(&boot_id()?), from_temp));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&path, e)),
            }
        }
        Ok((IpamState::default().in_boot(&boot_id()?), false))
    }

    fn store(&self, state: &IpamState) -> Result<(), CniError> {
        let temp = self.dir.join(TEMP);
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| CniError::new(Code::Io, format!("encode IPAM state: {e}")))?;
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| io_error(&temp, e))?;
        file.write_all(&bytes).map_err(|e| io_error(&temp, e))?;
        drop(file);
        let state_path = self.dir.join(STATE);
        match std::fs::remove_file(&state_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(&state_path, e)),
            _ => {}
        }
        self.commit()
    }

    /// Renames the complete temp file to the state file, which is absent.
    fn commit(&self) -> Result<(), CniError> {
        let state_path = self.dir.join(STATE);
        std::fs::rename(self.dir.join(TEMP), &state_path).map_err(|e| io_error(&state_path, e))
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
    fn a_crash_between_unlink_and_rename_loses_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = IpamStore::open(tmp.path()).unwrap();
        store
            .transact(|s| Ok(s.allocate(&pool(), &who(1), &[])?))
            .unwrap();
        // The writer got as far as unlinking the state file.
        std::fs::rename(tmp.path().join(STATE), tmp.path().join(TEMP)).unwrap();
        assert_eq!(store.load().unwrap().allocations.len(), 1);
        // The next writer finishes the rename before it writes its own.
        store
            .transact(|s| Ok(s.allocate(&pool(), &who(2), &[])?))
            .unwrap();
        assert!(!tmp.path().join(TEMP).exists());
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
