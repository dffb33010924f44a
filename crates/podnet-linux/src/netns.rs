//! Network namespaces: open one by path, and enter it for a scope.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sched::{CloneFlags, setns};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("netns {path} does not exist")]
    NotFound { path: PathBuf },
    #[error("netns {path} is not a network namespace")]
    NotNetns { path: PathBuf },
    #[error("cannot open netns {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot enter netns {path}: {source}")]
    Enter { path: PathBuf, source: nix::Error },
}

/// An open handle on a network namespace. Holding it keeps the namespace
/// alive even if its bind mount is removed.
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// Opens and verifies `path`: it must exist and be a network namespace.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, NetnsError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => NetnsError::NotFound { path: path.clone() },
            _ => NetnsError::Open {
                path: path.clone(),
                source,
            },
        })?;
        // Ask the kernel what kind of namespace this is, without entering
        // it: a plain file, or a uts or mount namespace, fails here.
        if ns_type(&file) != Some(CloneFlags::CLONE_NEWNET.bits()) {
            return Err(NetnsError::NotNetns { path });
        }
        Ok(Netns { file, path })
    }

    /// The namespace the calling thread is in now.
    pub fn current() -> Result<Self, NetnsError> {
        let path = PathBuf::from("/proc/thread-self/ns/net");
        let file = File::open(&path).map_err(|source| NetnsError::Open {
            path: path.clone(),
            source,
        })?;
        Ok(Netns { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Moves the calling thread into this namespace until the guard drops.
    pub fn enter(&self) -> Result<NetnsGuard, NetnsError> {
        let home = Netns::current()?;
        setns(&self.file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
            path: self.path.clone(),
            source,
        })?;
        Ok(NetnsGuard { home })
    }

    /// Runs `f` inside this namespace and returns to the original one.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, NetnsError> {
        let _guard = self.enter()?;
        Ok(f())
    }

    /// Runs `f` inside this namespace on a short-lived thread of its own,
    /// so the caller's thread never switches (a tokio worker must not). A
    /// panic in `f` is the caller's.
    pub fn run_on_thread<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        std::thread::scope(|s| {
            s.spawn(|| self.run(f))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

// NS_GET_NSTYPE: _IO(0xb7, 0x3), see ioctl_ns(2).
nix::ioctl_none!(ns_get_nstype, 0xb7, 0x3);

/// The `CLONE_NEW*` type of a namespace file, or None if it is not one.
#[allow(unsafe_code)]
fn ns_type(file: &File) -> Option<i32> {
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd, which
    // `file` keeps open for the duration of the call.
    unsafe { ns_get_nstype(file.as_raw_fd()) }.ok()
}

/// Returns the thread to its original namespace on drop.
pub struct NetnsGuard {
    home: Netns,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.home.file, CloneFlags::CLONE_NEWNET) {
            // Carrying on in the wrong namespace would program the wrong
            // host; nothing is safer than stopping here.
            eprintln!("podnet: fatal: cannot return to the original netns: {e}");
            std::process::abort();
        }
    }
}

/// A named namespace under /var/run/netns, made with `ip netns add` so that
/// `ip netns exec` and `nsenter` find it, and deleted on drop.
#[derive(Debug)]
pub struct NamedNetns {
    name: String,
}

impl NamedNetns {
    pub fn create(name: &str) -> io::Result<Self> {
        ip_netns("add", name)?;
        let ns = NamedNetns {
            name: name.to_owned(),
        };
        // Loopback is down in a new namespace; everyone expects it up.
        let up = Command::new("ip")
            .args(["-n", name, "link", "set", "lo", "up"])
            .status()?;
        if !up.success() {
            return Err(io::Error::other(format!("cannot bring lo up in {name}")));
        }
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    pub fn open(&self) -> Result<Netns, NetnsError> {
        Netns::open(self.path())
    }

    /// Keeps the namespace after this handle is gone (a lab outlives the
    /// command that built it); returns its name.
    pub fn keep(self) -> String {
        let name = self.name.clone();
        std::mem::forget(self);
        name
    }

    /// Deletes a named namespace that some earlier process kept.
    pub fn delete(name: &str) -> io::Result<()> {
        ip_netns("del", name)
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        if let Err(e) = ip_netns("del", &self.name) {
            eprintln!("podnet: cannot delete netns {}: {e}", self.name);
        }
    }
}

fn ip_netns(verb: &str, name: &str) -> io::Result<()> {
    let out = Command::new("ip").args(["netns", verb, name]).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip netns {verb} {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
