//! A real etcd member for tests, in a namespace of the test's own, on its
//! loopback: started with a temp data dir, stopped by PID and removed on
//! drop, even when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TestNetns;

pub struct EtcdMember {
    child: Child,
    data: std::path::PathBuf,
    pub client_url: String,
}

/// How long a member may take to answer.
const START_CAP: Duration = Duration::from_secs(30);

/// A CA, a server certificate (for 127.0.0.1 unless made `for` another
/// name) and a client certificate, made with `openssl` (EC P-256, valid
/// one day).
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Certs {
    pub fn make(dir: &Path) -> Certs {
        Certs::make_for(dir, "IP:127.0.0.1")
    }

    /// The same, the server's certificate for `server_san` (`IP:...`).
    pub fn make_for(dir: &Path, server_san: &str) -> Certs {
        let at = |name: &str| dir.join(name);
        let openssl = |args: &[&str]| {
            crate::run_ok(Command::new("openssl").current_dir(dir).args(args));
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509", "-days", "1", "-subj", "/CN=podnet-test-ca"],
                &ec[..],
                &["-keyout", "ca.key", "-out", "ca.pem"],
            ]
            .concat(),
        );
        for (name, san) in [("server", server_san), ("client", "DNS:podnet-node")] {
            let (key, csr, pem) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
            );
            let subj = format!("/CN={name}");
            let ext = format!("subjectAltName={san}");
            openssl(
                &[
                    &["req"],
                    &ec[..],
                    &[
                        "-keyout", &key, "-out", &csr, "-subj", &subj, "-addext", &ext,
                    ],
                ]
                .concat(),
            );
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "1",
                "-copy_extensions",
                "copy",
            ]);
        }
        Certs {
            ca: at("ca.pem"),
            server_cert: at("server.pem"),
            server_key: at("server.key"),
            client_cert: at("client.pem"),
            client_key: at("client.key"),
        }
    }
}

impl EtcdMember {
    /// One single-member cluster on `ns`'s loopback, port `port` (peers on
    /// `port + 1`). `lo` is brought up.
    pub fn start(ns: &TestNetns, port: u16) -> EtcdMember {
        EtcdMember::start_with(ns, port, None)
    }

    /// The same, serving TLS that requires a client certificate.
    pub fn start_tls(ns: &TestNetns, port: u16, certs: &Certs) -> EtcdMember {
        EtcdMember::start_with(ns, port, Some(certs))
    }

    fn start_with(ns: &TestNetns, port: u16, certs: Option<&Certs>) -> EtcdMember {
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        let data = std::env::temp_dir().join(format!("podnet-etcd-{}-{port}", ns.name()));
        let _ = std::fs::remove_dir_all(&data);
        let scheme = if certs.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{}", port + 1);
        let log = std::fs::File::create(data.with_extension("log")).unwrap();
        let mut cmd = ns.command("etcd");
        if let Some(c) = certs {
            cmd.arg("--cert-file")
                .arg(&c.server_cert)
                .arg("--key-file")
                .arg(&c.server_key)
                .arg("--trusted-ca-file")
                .arg(&c.ca)
                .arg("--client-cert-auth");
        }
        let cluster = format!("m1={peer_url}");
        let child = cmd
            .args(podnet_lab::etcd::member_args(
                "m1",
                &data,
                &client_url,
                &peer_url,
                &cluster,
            ))
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
        member.wait_healthy(ns, certs);
        member
    }

    fn wait_healthy(&self, ns: &TestNetns, certs: Option<&Certs>) {
        let started = Instant::now();
        loop {
            let mut cmd = ns.command("etcdctl");
            if let Some(c) = certs {
                cmd.arg("--cacert")
                    .arg(&c.ca)
                    .arg("--cert")
                    .arg(&c.client_cert)
                    .arg("--key")
                    .arg(&c.client_key);
            }
            let out = cmd
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

    /// Stops the member (SIGSTOP) until the guard drops, even in a panic:
    /// a member that hangs rather than refuses.
    pub fn freeze(&self) -> Frozen {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
        Frozen(pid)
    }
}

pub struct Frozen(nix::unistd::Pid);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
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
