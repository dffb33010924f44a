//! Owned files: private (0600) and replaced atomically.

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` through a uniquely named temp file (mode 0600)
/// in the same directory and a rename: a reader sees the old content or
/// the new, never a torn file.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    through_temp(path, bytes, 0o600, false, |temp| {
        std::fs::rename(temp, path)
    })
}

/// Installs `bytes` at `path` with `mode`, durably (synced before the
/// rename): a program exec'd or a config read at `path` is the old file
/// or the new one, never a half-written one, and never a file still open
/// for writing ("text file busy").
pub fn install_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    through_temp(path, bytes, mode, true, |temp| std::fs::rename(temp, path))
}

/// Creates `path` with `bytes` only if it does not exist yet, atomically:
/// the temp file is hard-linked into place, which fails if the name is
/// taken. `Ok(false)` if it was.
pub fn create_private_exclusive(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let mut created = true;
    through_temp(path, bytes, 0o600, false, |temp| {
        match std::fs::hard_link(temp, path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                created = false;
                Ok(())
            }
            other => other,
        }
    })?;
    Ok(created)
}

/// Writes a complete temp file beside `path` (synced, and given `mode`
/// whatever the umask, if `durable`), closes
/// it, hands it to `place`, and removes whatever of it is left, whether
/// `place` worked or not.
fn through_temp(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    durable: bool,
    place: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    let temp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(mode)
        .open(&temp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            if durable {
                // An installed file gets its mode whatever the umask.
                f.set_permissions(std::fs::Permissions::from_mode(mode))?;
                f.sync_all()?;
            }
            Ok(())
        }); // closed here: nothing is placed while still open for writing
    let done = written.and_then(|()| place(&temp));
    // After a rename there is nothing left (NotFound); after a link, or a
    // failure, the temp name goes.
    let _ = std::fs::remove_file(&temp);
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_temp_file_is_left_behind_whatever_happens() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.json");
        write_private_atomic(&file, b"1").unwrap();
        assert!(create_private_exclusive(&tmp.path().join("b"), b"2").unwrap());
        assert!(!create_private_exclusive(&file, b"3").unwrap());
        assert_eq!(std::fs::read(&file).unwrap(), b"1");
        // A rename onto a directory fails: the temp file must not stay.
        std::fs::create_dir(tmp.path().join("d.json")).unwrap();
        std::fs::write(tmp.path().join("d.json/x"), b"").unwrap();
        assert!(write_private_atomic(&tmp.path().join("d.json"), b"4").is_err());
        assert_eq!(
            podnet_testkit::file_names(tmp.path()),
            ["a.json", "b", "d.json"]
        );
    }
}

/// What [`install_conflist`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConflistInstall {
    /// Written (it was missing or different).
    pub written: bool,
    /// Former podnet conflists removed.
    pub removed: Vec<PathBuf>,
    /// Configs a runtime would load before ours: the node's pods go to
    /// their network, not podnet's.
    pub ahead: Vec<String>,
}

/// Installs conflist `raw` as `dir/name` (atomically, unless it is
/// already there), removes podnet's conflists of former names, and names
/// the configs that would win over it.
pub fn install_conflist(dir: &Path, name: &str, raw: &[u8]) -> io::Result<ConflistInstall> {
    use podnet_core::cni::conflist::{FORMER_NAMES, loaded_before};
    std::fs::create_dir_all(dir)?;
    let target = dir.join(name);
    let mut done = ConflistInstall::default();
    if std::fs::read(&target).map_or(true, |have| have != raw) {
        install_atomic(&target, raw, 0o644)?;
        done.written = true;
    }
    done.removed = remove_former_conflists(dir, name)?;
    let names: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    done.ahead = loaded_before(names.iter().map(String::as_str), name)
        .into_iter()
        .filter(|n| !FORMER_NAMES.contains(n))
        .map(str::to_owned)
        .collect();
    Ok(done)
}

/// Removes podnet's conflists of former names from `dir` (not `keep`, the
/// one in use; not another's config of such a name). Returns those gone.
pub fn remove_former_conflists(dir: &Path, keep: &str) -> io::Result<Vec<PathBuf>> {
    use podnet_core::cni::conflist::{FORMER_NAMES, is_podnets};
    let mut removed = Vec::new();
    for former in FORMER_NAMES.iter().filter(|f| **f != keep) {
        let path = dir.join(former);
        match std::fs::read(&path) {
            Ok(raw) if is_podnets(&raw) => {
                std::fs::remove_file(&path)?;
                removed.push(path);
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}
