//! A containerd of the test's own, as kubelet's runtime: started inside a
//! network namespace the test made (with `nsenter --net`, which keeps the
//! host's mount namespace, so the pod netns mounts are visible), with a
//! temp root, state, socket, runc root and CNI dirs, cgroupfs, and a pause
//! image built offline and imported with `ctr`.
//!
//! Dropped, even after a failed test: containerd, its shims and their
//! containers are killed by PID, mounts under its dir are undone, the shim
//! sockets it left in /run/containerd/s and the pods' cgroups are removed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub use cri::Cri;

mod cri;

/// The sandbox image every test containerd uses; never pulled.
pub const PAUSE_IMAGE: &str = "docker.io/podnet/pause:test";
const CAP: Duration = Duration::from_secs(60);
static NEXT: AtomicUsize = AtomicUsize::new(0);

pub struct Containerd {
    pub dir: PathBuf,
    netns: String,
    child: Option<Child>,
    /// The cgroup (under /sys/fs/cgroup) that holds every pod's.
    cgroup_root: String,
}

impl Containerd {
    /// A containerd in the namespace at `netns` (a path), ready to serve
    /// CRI, with empty CNI dirs for the test to fill.
    pub fn start(netns: &str) -> Containerd {
        crate::require_root();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("podnet-ctrd-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&tag);
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = Containerd {
            dir,
            netns: netns.to_owned(),
            child: None,
            cgroup_root: tag,
        };
        for d in [c.cni_bin(), c.cni_conf()] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(c.dir.join("config.toml"), c.config()).unwrap();
        c.restart();
        let out = c
            .ctr()
            .args(["images", "import", "--snapshotter", "native"])
            .arg(pause_archive(&c.dir.join("pause")))
            .output()
            .unwrap();
        assert!(out.status.success(), "ctr import: {out:?}");
        c
    }

    /// Imports an image archive as `ctr -n k8s.io images import` does for
    /// an operator; returns the names of every image it then holds.
    pub fn import_image(&self, archive: &Path) -> Vec<String> {
        let out = self
            .ctr()
            .args(["images", "import", "--snapshotter", "native"])
            .arg(archive)
            .output()
            .unwrap();
        assert!(out.status.success(), "ctr import: {out:?}");
        let out = self.ctr().args(["images", "ls", "-q"]).output().unwrap();
        assert!(out.status.success(), "ctr images ls: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    pub fn cni_bin(&self) -> PathBuf {
        self.dir.join("cni/bin")
    }

    pub fn cni_conf(&self) -> PathBuf {
        self.dir.join("cni/net.d")
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn runc_root(&self) -> PathBuf {
        self.dir.join("runc")
    }

    /// A kubelet-style (cgroupfs) cgroup parent for the pod `uid`.
    pub fn cgroup_parent(&self, uid: &str) -> String {
        format!("/{}/pod{uid}", self.cgroup_root)
    }

    /// A kubelet-like CRI client of this containerd.
    pub fn cri(&self) -> Cri {
        Cri::connect(self)
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(self.socket()).args(["-n", "k8s.io"]);
        c
    }

    fn config(&self) -> String {
        let d = self.dir.display();
        format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/net.d"
    max_conf_num = 1
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
        )
    }

    /// Starts containerd (again) and waits until its CRI plugin is up.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "containerd is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("containerd.log"))
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.netns))
            .arg("containerd")
            .arg("--config")
            .arg(self.dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let out = self.ctr().args(["plugins", "ls"]).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            if text.lines().any(|l| {
                l.contains("io.containerd.grpc.v1")
                    && l.contains(" cri ")
                    && l.trim_end().ends_with("ok")
            }) {
                return;
            }
            assert!(
                started.elapsed() < CAP,
                "containerd's CRI never came up: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, as an OOM killer or a crash would: shims and pods live on.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// PIDs of the shims this containerd started.
    pub fn shims(&self) -> Vec<i32> {
        let socket = self.socket().display().to_string();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                args.first()
                    .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"))
                    && args
                        .windows(2)
                        .any(|w| w[0] == b"-address" && w[1] == socket.as_bytes())
            })
            .collect()
    }

    /// The sockets its shims made in /run/containerd/s, from the address
    /// file each shim leaves in its bundle.
    fn shim_sockets(&self) -> Vec<PathBuf> {
        let tasks = self.state().join("io.containerd.runtime.v2.task");
        let mut out = Vec::new();
        for ns in std::fs::read_dir(tasks).into_iter().flatten().flatten() {
            for bundle in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                if let Ok(addr) = std::fs::read_to_string(bundle.path().join("address")) {
                    let path = addr.trim().trim_start_matches("unix://");
                    if path.starts_with("/run/containerd/s/") {
                        out.push(PathBuf::from(path));
                    }
                }
            }
        }
        out
    }

    /// Forgets every sandbox, as a node whose containerd state was wiped:
    /// containerd stopped, its pods killed, its dirs emptied. What the
    /// CNI plugin set up for them stays, as a lost DEL would leave it.
    pub fn wipe(&mut self) {
        self.kill();
        self.stop_pods();
        unmount_under(&self.dir);
        for d in ["root", "state", "runc", "opt"] {
            let _ = std::fs::remove_dir_all(self.dir.join(d));
        }
    }

    fn stop_pods(&self) {
        for pid in self.shims() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let root = self.runc_root().join("k8s.io");
        let list = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["list", "-q"])
            .output();
        for id in list
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
            .lines()
        {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force", id])
                .output();
        }
        for socket in self.shim_sockets() {
            let _ = std::fs::remove_file(socket);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.kill();
        self.stop_pods();
        unmount_under(&self.dir);
        remove_cgroup(&Path::new("/sys/fs/cgroup").join(&self.cgroup_root));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Lazily unmounts every mount at or under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Removes a cgroup and its children (all empty once their tasks died).
fn remove_cgroup(path: &Path) {
    for child in std::fs::read_dir(path).into_iter().flatten().flatten() {
        if child.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup(&child.path());
        }
    }
    let _ = std::fs::remove_dir(path);
}

/// The pause image, built offline in `dir`: an OCI archive of one static
/// binary (busybox, run as `sleep`).
fn pause_archive(dir: &Path) -> PathBuf {
    {
        let blobs = dir.join("layout/blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        std::fs::copy("/bin/busybox", rootfs.join("busybox")).unwrap();
        let layer = tar_of(&rootfs, &dir.join("layer.tar"));
        let blob = |bytes: &[u8]| -> String {
            let hex: String = Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            std::fs::write(blobs.join(&hex), bytes).unwrap();
            format!("sha256:{hex}")
        };
        let layer_digest = blob(&layer);
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Entrypoint": ["/busybox", "sleep", "2147483647"] },
            "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        })
        .to_string();
        let config_digest = blob(config.as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer.len(),
            }],
        })
        .to_string();
        let manifest_digest = blob(manifest.as_bytes());
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest.len(),
                "platform": { "architecture": "amd64", "os": "linux" },
                "annotations": {
                    "io.containerd.image.name": PAUSE_IMAGE,
                    "org.opencontainers.image.ref.name": "test",
                },
            }],
        });
        let layout = dir.join("layout");
        std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
        let mut f = std::fs::File::create(layout.join("oci-layout")).unwrap();
        f.write_all(br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let archive = dir.join("pause.tar");
        tar_of(&layout, &archive);
        archive
    }
}

/// `dir`'s contents as a tar owned by root; returns the tar's bytes.
fn tar_of(dir: &Path, out: &Path) -> Vec<u8> {
    let status = Command::new("tar")
        .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success(), "tar {}", dir.display());
    std::fs::read(out).unwrap()
}
