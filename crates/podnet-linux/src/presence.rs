//! podnetd's presence on its node, as a lock the plugin can test: podnetd
//! holds an exclusive `flock` on `<run-dir>/podnetd.lock` while it serves
//! the node, and the kernel drops it when podnetd exits, however it exits
//! (SIGKILL included). A subnet file outlives podnetd in `/run/podnet`; the
//! lock does not, so the plugin never attaches a pod on the word of a
//! podnetd that is gone.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock's file name, in podnetd's run dir (the subnet file's).
pub const LOCK_FILE: &str = "podnetd.lock";

/// Held while podnetd runs; released when dropped or when it exits.
#[derive(Debug)]
pub struct Presence(#[allow(dead_code)] Flock<File>);

/// Takes the lock in `run_dir`. A plugin testing it holds it for an
/// instant, so a busy lock is tried again for a second before another
/// podnetd is blamed.
pub fn hold(run_dir: &Path) -> io::Result<Presence> {
    let path = run_dir.join(LOCK_FILE);
    let started = Instant::now();
    loop {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(Presence(lock)),
            Err((_, Errno::EWOULDBLOCK)) if started.elapsed() < Duration::from_secs(1) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(io::Error::other(format!(
                    "{} is held: another podnetd serves this node",
                    path.display()
                )));
            }
            Err((_, e)) => return Err(e.into()),
        }
    }
}

/// Whether a podnetd serves the node whose run dir is `dir`; `None` where
/// none ever did (no lock file: a subnet file written by hand, or by a
/// podnetd from before the lock).
pub fn agent_running(dir: &Path) -> io::Result<Option<bool>> {
    let file = match File::open(dir.join(LOCK_FILE)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // Free: released at once, as the guard drops.
        Ok(_) => Ok(Some(false)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(Some(true)),
        Err((_, e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_says_whether_its_holder_lives() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(agent_running(dir.path()).unwrap(), None);
        let held = hold(dir.path()).unwrap();
        assert_eq!(agent_running(dir.path()).unwrap(), Some(true));
        let second = hold(dir.path()).unwrap_err().to_string();
        assert!(second.contains("another podnetd"), "{second}");
        drop(held);
        assert_eq!(agent_running(dir.path()).unwrap(), Some(false));
        // Testing it does not keep it from its next holder.
        let _again = hold(dir.path()).unwrap();
    }
}
