//! Policy's records in the file store, one file each:
//!
//! ```text
//! DIR/policy/namespaces/<ns>.json
//! DIR/policy/pods/<ns>_<name>.json       (no name holds an underscore)
//! DIR/policy/policies/<ns>_<name>.json
//! ```
//!
//! The revision is a fingerprint of the files' names and mtimes, polled
//! as the leases' is.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use podnet_core::policy::source::Kind;

use super::{FileStore, WATCH_POLL, fingerprint, unavailable};
use crate::records::{RecordStore, Records, checked};
use crate::{Result, Revision};

impl FileStore {
    fn kind_dir(&self, kind: Kind) -> PathBuf {
        self.dir.join("policy").join(kind.segment())
    }

    fn record_path(&self, key: &str) -> Result<PathBuf> {
        let (kind, ns, name) = checked(key)?;
        let file = match kind {
            Kind::Namespace => format!("{ns}.json"),
            _ => format!("{ns}_{name}.json"),
        };
        Ok(self.kind_dir(kind).join(file))
    }

    /// Every record file: its key, mtime and path. A kind not written
    /// yet has no directory.
    fn record_files(&self) -> Result<Vec<(String, Option<SystemTime>, PathBuf)>> {
        let mut out = Vec::new();
        for kind in Kind::ALL {
            let dir = self.kind_dir(kind);
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(unavailable(&dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(unavailable(&dir))?;
                let file = entry.file_name().to_string_lossy().into_owned();
                let Some(stem) = file.strip_suffix(".json") else {
                    continue; // a temp file mid-write
                };
                let key = match (kind, stem.split_once('_')) {
                    (Kind::Namespace, _) => kind.key(stem, stem),
                    (_, Some((ns, name))) => kind.key(ns, name),
                    (_, None) => format!("{}/{stem}", kind.segment()),
                };
                let modified = entry.metadata().and_then(|m| m.modified()).ok();
                out.push((key, modified, entry.path()));
            }
        }
        Ok(out)
    }

    pub fn records_blocking(&self) -> Result<Records> {
        let files = self.record_files()?;
        let mut items = std::collections::BTreeMap::new();
        let mut seen = Vec::with_capacity(files.len());
        for (key, modified, path) in files {
            match std::fs::read(&path) {
                Ok(bytes) => {
                    items.insert(key.clone(), bytes);
                    seen.push((key, modified));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(unavailable(&path)(e)),
            }
        }
        Ok(Records {
            revision: fingerprint(seen),
            items,
        })
    }

    fn records_revision(&self) -> Result<Revision> {
        let files = self.record_files()?;
        Ok(fingerprint(
            files.into_iter().map(|(k, m, _)| (k, m)).collect(),
        ))
    }

    pub fn put_record_blocking(&self, key: &str, value: &[u8]) -> Result<()> {
        let path = self.record_path(key)?;
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(unavailable(dir))?;
        }
        self.write_atomic(&path, value)
    }

    pub fn delete_record_blocking(&self, key: &str) -> Result<bool> {
        let path = self.record_path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(unavailable(&path)(e)),
        }
    }

    pub fn watch_records_blocking(&self, since: &Revision, timeout: Duration) -> Result<Records> {
        let deadline = Instant::now() + timeout;
        while *since != Revision::NONE
            && self.records_revision()? == *since
            && Instant::now() < deadline
        {
            std::thread::sleep(WATCH_POLL.min(deadline.saturating_duration_since(Instant::now())));
        }
        self.records_blocking()
    }
}

impl RecordStore for FileStore {
    async fn put_record(&self, key: &str, value: &[u8]) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.blocking(move |s| s.put_record_blocking(&key, &value))
            .await
    }

    async fn delete_record(&self, key: &str) -> Result<bool> {
        let key = key.to_owned();
        self.blocking(move |s| s.delete_record_blocking(&key)).await
    }

    async fn records(&self) -> Result<Records> {
        self.blocking(|s| s.records_blocking()).await
    }

    async fn watch_records(&self, since: &Revision, timeout: Duration) -> Result<Records> {
        let since = since.clone();
        self.blocking(move |s| s.watch_records_blocking(&since, timeout))
            .await
    }
}
