//! A real etcd member for tests, in a namespace of the test's own, on its
//! loopback: started with a temp data dir, stopped by PID and removed on
//! drop, even when the test fails.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::TestNetns;

pub struct EtcdMember {
    child: Child,
    data: std::path::PathBuf,
    pub client_url: String,
}

/// How long a member may take to answer.
const START_CAP: Duration = Duration::from_secs(30);

impl EtcdMember {
    /// One single-member cluster on `ns`'s loopback, port `port` (peers on
    /// `port + 1`). `lo` is brought up.
    pub fn start(ns: &TestNetns, port: u16) -> EtcdMember {
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        let data = std::env::temp_dir().join(format!("podnet-etcd-{}-{port}", ns.name()));
        let _ = std::fs::remove_dir_all(&data);
        let client_url = format!("http://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{}", port + 1);
        let log = std::fs::File::create(data.with_extension("log")).unwrap();
        let child = ns
            .command("etcd")
            .args(["--name", "m1", "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("m1={peer_url}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian's etcd-server; scripts/install-deps.sh installs it)");
        let member = EtcdMember {
            child,
            data,
            client_url,
        };
        member.wait_healthy(ns);
        member
    }

    fn wait_healthy(&self, ns: &TestNetns) {
        let started = Instant::now();
        loop {
            let out = ns
                .command("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &self.client_url, "endpoint", "health"])
                .output()
                .unwrap();
            if out.status.success() {
                eprintln!(
                    "etcd at {} healthy after {:?}",
                    self.client_url,
                    started.elapsed()
                );
                return;
            }
            assert!(
                started.elapsed() < START_CAP,
                "etcd at {} not healthy after {START_CAP:?}: {}",
                self.client_url,
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
        let _ = std::fs::remove_file(self.data.with_extension("log"));
    }
}

/// Runs `etcdctl` (API v3) against `endpoint` inside `ns`.
pub fn etcdctl(ns: &TestNetns, endpoint: &str, args: &[&str]) -> String {
    let mut cmd = ns.command("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint])
        .args(args);
    crate::run_ok(&mut cmd)
}
