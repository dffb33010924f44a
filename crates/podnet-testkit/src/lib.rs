//! Helpers for privileged tests.
//!
//! Every namespace a test makes is named `<prefix>-<pid>-<n>` and deleted by
//! a `Drop` guard, so a failing or panicking test still cleans up. Nothing
//! here touches the machine's root namespace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod containerd;
pub mod etcd;
pub mod forge;
pub mod fuzz;
pub mod netpol;
pub mod netpol_cases;
pub mod podman;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use podnet_linux::netns::NamedNetns;

/// Privileged tests fail, not skip, when not root: a skipped test would
/// let CI pass without testing anything.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this privileged test must run as root (it creates network namespaces)"
    );
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct TestNetns {
    ns: NamedNetns,
}

impl TestNetns {
    pub fn new(prefix: &str) -> Self {
        require_root();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        TestNetns {
            ns: NamedNetns::create(&name).unwrap(),
        }
    }

    pub fn name(&self) -> &str {
        self.ns.name()
    }

    pub fn path(&self) -> String {
        self.ns.path().display().to_string()
    }

    /// A command that runs inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.name(), program]);
        cmd
    }

    pub fn exec(&self, argv: &[&str]) -> Output {
        self.command(argv[0]).args(&argv[1..]).output().unwrap()
    }

    /// Runs `argv` in the namespace, panicking with its stderr on failure.
    pub fn exec_ok(&self, argv: &[&str]) -> String {
        run_ok(self.command(argv[0]).args(&argv[1..]))
    }

    /// `ip -j <args>` in this namespace, parsed.
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut argv = vec!["ip", "-j"];
        argv.extend_from_slice(args);
        let out = self.exec_ok(&argv);
        serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out }).unwrap()
    }

    /// Names of the links in this namespace.
    pub fn links(&self) -> Vec<String> {
        self.ip_json(&["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Runs `f` on a fresh thread that has entered this namespace; the
    /// calling thread never switches. Sockets made in `f` stay in it.
    pub fn in_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.path(), f)
    }

    /// A TCP server in this namespace that answers every connection with
    /// the peer address it saw, so a test can tell whether NAT happened.
    pub fn serve_peer_addr(&self, addr: &str) -> SocketAddr {
        serve_peer_addr(&self.path(), addr)
    }

    /// Connects from this namespace to a [`serve_peer_addr`] server and
    /// returns the source address the server saw.
    pub fn seen_as(&self, addr: &str) -> std::io::Result<String> {
        seen_as(&self.path(), addr)
    }

    /// `ping` once from this namespace; true if it was answered.
    pub fn ping(&self, addr: &str) -> bool {
        ping(&self.path(), addr)
    }
}

/// Runs `f` on a fresh thread that has entered the namespace at `netns`
/// (a path: a named namespace, or one a runtime mounted).
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> T {
    podnet_linux::netns::Netns::open(netns)
        .and_then(|ns| ns.run_on_thread(f))
        .unwrap()
}

/// A TCP server in `netns` that answers every connection with the peer
/// address it saw, so a test can tell whether NAT happened.
pub fn serve_peer_addr(netns: &str, addr: &str) -> SocketAddr {
    let listener = in_netns(netns, || TcpListener::bind(addr).unwrap());
    let local = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let peer = conn
                .peer_addr()
                .map(|p| p.ip().to_string())
                .unwrap_or_default();
            let _ = conn.write_all(peer.as_bytes());
        }
    });
    local
}

/// Connects from `netns` to a [`serve_peer_addr`] server and returns the
/// source address the server saw.
pub fn seen_as(netns: &str, addr: &str) -> std::io::Result<String> {
    let target: SocketAddr = addr.parse().unwrap();
    in_netns(netns, || {
        let mut conn = TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
        conn.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut seen = String::new();
        conn.read_to_string(&mut seen)?;
        Ok(seen)
    })
}

/// `GET path` over HTTP/1.0 to 127.0.0.1:`port` inside `netns`: the status
/// and body, or `None` if nothing answered.
pub fn http_get(netns: &str, port: u16, path: &str) -> Option<(u16, String)> {
    in_netns(netns, || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(c, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
        let mut raw = String::new();
        c.read_to_string(&mut raw).ok()?;
        let (head, body) = raw.split_once("\r\n\r\n")?;
        Some((
            head.split_whitespace().nth(1)?.parse().ok()?,
            body.to_owned(),
        ))
    })
}

/// `ping` once from `netns`; true if it was answered.
pub fn ping(netns: &str, addr: &str) -> bool {
    Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(["ping", "-c", "1", "-W", "2", addr])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The names in `dir`, sorted.
pub fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
