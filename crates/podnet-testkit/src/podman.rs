//! podman confined to a temp dir (its config, vfs storage and run state),
//! run inside a test-made namespace with nsenter: not `ip netns exec`,
//! which remounts /sys and leaves runc without a cgroup mount. Dropped:
//! its containers are removed and its storage reset.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Podman {
    dir: PathBuf,
    netns: String,
}

impl Podman {
    /// podman in the namespace at `netns`, its files under `dir`;
    /// `extra_conf` is appended to its containers.conf (a `[network]`
    /// section, say).
    pub fn new(dir: &Path, netns: &str, extra_conf: &str) -> Podman {
        // The machine's own nofile limit is below podman's default, and
        // runc may not raise it.
        let conf = format!(
            "[containers]\n\
             default_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             events_logfile_path = \"{}\"\n\
             tmp_dir = \"{}\"\n\
             {extra_conf}",
            dir.join("events.log").display(),
            // Its own libpod state: another test's `system reset` must not
            // reach this one's containers.
            dir.join("tmp").display()
        );
        std::fs::write(dir.join("containers.conf"), conf).unwrap();
        Podman {
            dir: dir.to_owned(),
            netns: netns.to_owned(),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns))
            .arg("podman")
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .args(["--storage-driver", "vfs"])
            .args(args);
        cmd
    }

    /// Runs podman; panics with its stderr if it fails. Its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Stops the containers (podman runs CNI DEL) and removes storage.
        let _ = self
            .cmd(&["rm", "--force", "--all", "--time", "0"])
            .output();
        let _ = self.cmd(&["system", "reset", "--force"]).output();
    }
}
