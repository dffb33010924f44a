//! The lab's plumbing: the binaries it runs, `ip`, progress steps,
//! underlay ports, agents started and stopped by PID.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::record::Lab;
use crate::topology::Attachment;

const READY_CAP: Duration = Duration::from_secs(20);

/// The binaries the lab runs, found next to podnetctl.
pub fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .ok_or_else(|| anyhow!("podnetctl has no directory"))?
        .join(name);
    if !path.is_file() {
        bail!(
            "{} not found next to podnetctl (build the workspace)",
            path.display()
        );
    }
    Ok(path)
}

/// Runs `ip -n ns`: the lab never runs `ip` in the machine's own
/// namespace. Fails with its stderr.
pub fn ip(ns: &str, args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .context("run ip")?;
    if !out.status.success() {
        bail!(
            "ip -n {ns} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub fn step(msg: &str) {
    print!("  {msg} ... ");
    let _ = std::io::stdout().flush();
}

/// Connects `ns` to the underlay as `eth0`: to the fabric bridge (flat),
/// or to its own router port (routed); addresses and default routes per
/// `attachments`.
pub fn plug(lab: &Lab, ns: &str, port: &str, attachments: &[Attachment]) -> Result<()> {
    let under = lab.underlay_ns.as_str();
    ip(
        under,
        &[
            "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ],
    )?;
    if lab.shape.routed {
        ip(under, &["link", "set", port, "up"])?;
    } else {
        ip(under, &["link", "set", port, "master", "fab0", "up"])?;
    }
    for a in attachments {
        let v6 = a.addr.is_ipv6();
        let with_prefix = |addr: IpAddr| format!("{addr}/{}", a.prefix);
        let mut add = vec!["addr", "add"];
        let addr = with_prefix(a.addr);
        add.extend([addr.as_str(), "dev", "eth0"]);
        if v6 {
            add.push("nodad");
        }
        ip(ns, &add)?;
        if let Some(router) = a.router {
            let r = with_prefix(router);
            let mut add = vec!["addr", "add", r.as_str(), "dev", port];
            if v6 {
                add.push("nodad");
            }
            ip(under, &add)?;
        }
    }
    ip(ns, &["link", "set", "eth0", "up"])?;
    for a in attachments {
        if let Some(gw) = a.gateway {
            let family = if a.addr.is_ipv6() { "-6" } else { "-4" };
            ip(
                ns,
                &[family, "route", "add", "default", "via", &gw.to_string()],
            )?;
        }
    }
    Ok(())
}

pub fn start_agent(lab: &Lab, name: &str, ns: &str, addrs: &[IpAddr]) -> Result<i32> {
    let dir = lab.node_dir(name);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let log = std::fs::File::create(dir.join("podnetd.log"))?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]);
    if lab.backend == "wireguard" {
        // wireguard-go opens its UAPI socket in a fixed directory: each
        // node has its own, bound over it in a mount namespace of podnetd's
        // (and so of the wireguard-go it starts). Still one PID: every
        // step execs the next.
        let sockets = wireguard_sockets(lab, name);
        std::fs::create_dir_all(&sockets)?;
        std::fs::create_dir_all(WIREGUARD_SOCKET_DIR)?;
        cmd.args(["unshare", "--mount", "--propagation", "private", "--"])
            .args([
                "sh",
                "-c",
                "mount --bind \"$1\" \"$2\" && shift 2 && exec \"$@\"",
            ])
            .arg("sh")
            .arg(&sockets)
            .arg(WIREGUARD_SOCKET_DIR);
    }
    cmd.arg(sibling("podnetd")?)
        .args(["--node-name", name])
        .args(["--public-ip", &addrs[0].to_string()]);
    if let Some(v6) = addrs.get(1) {
        cmd.args(["--public-ipv6", &v6.to_string()]);
    }
    if lab.kube.is_some() {
        cmd.arg("--kubeconfig").arg(lab.kubeconfig("podnet"));
        // A watch quiet for 5 s is reopened (the emulator bookmarks about
        // once a minute, as a real server does): an API server that hangs
        // is seen within seconds, for one request per 5 s per agent.
        cmd.args(["--kube-watch-silence-s", "5"]);
    }
    cmd.arg("--run-dir")
        .arg(dir.join("run"))
        .arg("--store")
        .arg(lab.store_spec())
        .arg("--net-conf")
        .arg(lab.dir.join("net-conf.json"))
        .arg(format!("--masquerade={}", lab.masquerade))
        .arg("--ipam-dir")
        .arg(dir.join("ipam"))
        .arg("--state-dir")
        .arg(dir.join("state"));
    if let Some(secs) = lab.ipam_reclaim_after {
        cmd.arg(format!("--ipam-reclaim-after={secs}"));
    }
    if lab.policy {
        cmd.arg("--policy");
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: ^C on `lab up` must not stop the agents.
        .process_group(0)
        .spawn()
        .context("start podnetd")?;
    // `ip netns exec` execs podnetd in place, so this is podnetd's PID.
    Ok(child.id() as i32)
}

/// wireguard-go's socket directory, as it was built.
const WIREGUARD_SOCKET_DIR: &str = "/run/wireguard";

/// A lab node's own wireguard-go socket directory, seen from outside.
pub fn wireguard_sockets(lab: &Lab, node: &str) -> PathBuf {
    lab.node_dir(node).join("wireguard")
}

/// Stops every process left in namespace `ns` (SIGTERM, then SIGKILL),
/// by PID.
pub fn stop_processes_in(ns: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
    {
        signal_agent(pid, Signal::SIGTERM);
    }
}

pub fn wait_for_file(path: &Path, pid: i32) -> Result<()> {
    let started = Instant::now();
    while !path.exists() {
        if !alive(pid) {
            bail!("podnetd (pid {pid}) exited; see its podnetd.log");
        }
        if started.elapsed() > READY_CAP {
            bail!("{} did not appear within {READY_CAP:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub fn alive(pid: i32) -> bool {
    // A zombie has exited; only its parent has not reaped it yet.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// SIGTERM, then SIGKILL if it has not exited after a while.
pub fn stop_agent(pid: i32) {
    signal_agent(pid, Signal::SIGTERM);
}

/// Sends `signal` and waits for the agent to exit (SIGKILL after 5 s).
pub fn signal_agent(pid: i32, signal: Signal) {
    if pid <= 0 || !alive(pid) {
        return;
    }
    let _ = kill(Pid::from_raw(pid), signal);
    let started = Instant::now();
    while alive(pid) && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if alive(pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}
