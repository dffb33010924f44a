//! This node's WireGuard key: made once in `--state-dir`, kept 0600.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use podnet_core::cluster::backend::wireguard::{Key, format_key, parse_key};

use super::KEY_FILE;

pub(super) fn key_path(state_dir: &Path) -> PathBuf {
    state_dir.join(KEY_FILE)
}

/// This node's private key: made once, kept 0600 across restarts and
/// reboots. A key another podnetd wrote first is the one kept.
pub(super) fn load_or_make_key(state_dir: &Path) -> Result<Key> {
    let path = key_path(state_dir);
    if let Some(key) = read_key(&path)? {
        return Ok(key);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .with_context(|| format!("--state-dir {}", state_dir.display()))?;
    let text = format!("{}\n", format_key(&fresh_key()?));
    if podnet_linux::files::create_private_exclusive(&path, text.as_bytes())? {
        tracing::info!(path = %path.display(), "WireGuard key made");
    }
    read_key(&path)?.ok_or_else(|| anyhow!("{} vanished after it was written", path.display()))
}

/// The key in `path`, `None` if there is no file; a file that holds no
/// key is an error naming it.
pub(super) fn read_key(path: &Path) -> Result<Option<Key>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_key(&text).map(Some).ok_or_else(|| {
            anyhow!(
                "{} is not a WireGuard private key (base64 of 32 bytes): remove it, and podnetd \
                 makes a new one",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!(e).context(path.display().to_string())),
    }
}

/// 32 random bytes, clamped as `wg genkey` clamps them.
pub(super) fn fresh_key() -> Result<Key> {
    use std::io::Read;
    let mut key = Key::default();
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    key[0] &= 248;
    key[31] = (key[31] & 127) | 64;
    Ok(key)
}

pub(super) fn public_of(private: &Key) -> Key {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*private)).to_bytes()
}
