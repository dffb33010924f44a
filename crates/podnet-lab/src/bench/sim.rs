//! The benchmarks' simulated peers: a node namespace whose underlay holds
//! thousands of peer addresses on-link, their leases, and one real
//! podnetd run against them.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ipnet::IpNet;
use podnet_core::cluster::backend::vxlan::VxlanData;
use podnet_core::cluster::desired::ROUTE_PROTOCOL;
use podnet_core::cluster::lease::LeaseAttrs;
use podnet_core::names::{format_mac, vtep_mac};
use podnet_linux::netlink::Netlink;
use podnet_linux::netns::{NamedNetns, Netns};

use crate::plumbing::{ip, sibling};

/// How long an agent may take to program every peer.
pub const CAP: Duration = Duration::from_secs(30);

/// Routes of ours in a node, by destination.
pub fn our_routes(ns: &str) -> Result<Vec<IpNet>> {
    let netns = Netns::open(format!("/var/run/netns/{ns}"))?;
    Ok(Netlink::open_in(&netns)?
        .routes()?
        .into_iter()
        .filter(|r| r.protocol == ROUTE_PROTOCOL)
        .map(|r| r.dst)
        .collect())
}

/// A node namespace on an underlay /16 that holds every simulated peer
/// address on-link, and the hub namespace at its other end.
pub struct Underlay {
    pub node: NamedNetns,
    pub hub: NamedNetns,
    pub node_ip: IpAddr,
}

impl Underlay {
    pub fn new(tag: &str) -> Result<Underlay> {
        let node = NamedNetns::create(&format!("{tag}-node"))?;
        let hub = NamedNetns::create(&format!("{tag}-hub"))?;
        let node_ip = IpAddr::V4(Ipv4Addr::new(172, 16, 255, 254));
        ip(
            hub.name(),
            &[
                "link",
                "add",
                "up0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                node.name(),
            ],
        )?;
        ip(hub.name(), &["link", "set", "up0", "up"])?;
        ip(
            node.name(),
            &["addr", "add", &format!("{node_ip}/16"), "dev", "eth0"],
        )?;
        ip(node.name(), &["link", "set", "eth0", "up"])?;
        Ok(Underlay { node, hub, node_ip })
    }
}

/// The simulated peer `i`'s lease attributes.
pub fn sim_attrs(i: usize, backend: &str) -> LeaseAttrs {
    let public_ip = sim_peer(i);
    LeaseAttrs {
        public_ip,
        public_ipv6: None,
        backend_type: backend.to_owned(),
        backend_data: VxlanData {
            vni: 1,
            vtep_mac: format_mac(&vtep_mac(&public_ip)),
        }
        .to_value(),
        backend_v6_data: serde_json::Value::Null,
    }
}

pub fn net_conf(backend: &str) -> String {
    format!(r#"{{"Network":"10.0.0.0/8","SubnetLen":24,"Backend":{{"Type":"{backend}"}}}}"#)
}

/// What one agent did with `peers` peers: the time from its start to all
/// routes present, its own reconcile time, and its peak RSS (KiB).
pub struct AgentRun {
    pub took: Duration,
    pub reconcile_ms: Option<u64>,
    pub rss_kib: u64,
}

/// Starts podnetd in `u.node` on `store`, waits for `peers` routes, stops it.
pub fn run_agent(
    u: &Underlay,
    work: &Path,
    store: &str,
    backend: &str,
    peers: usize,
) -> Result<AgentRun> {
    let conf = work.join("net-conf.json");
    std::fs::write(&conf, net_conf(backend))?;
    let podnetd = sibling("podnetd")?;
    let log = work.join("podnetd.log");
    let spawned = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", u.node.name()])
        .arg(&podnetd)
        .args([
            "--node-name",
            "bench",
            "--public-ip",
            &u.node_ip.to_string(),
        ])
        .arg("--run-dir")
        .arg(work.join("run"))
        .args(["--store", store])
        .arg("--net-conf")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("start podnetd")?;
    let pid = child.id();
    let outcome = (|| -> Result<(Duration, u64)> {
        while our_routes(u.node.name())?.len() < peers {
            if spawned.elapsed() > CAP {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                bail!(
                    "podnetd did not program {peers} routes within {CAP:?}; its log ends: {tail:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = spawned.elapsed();
        Ok((took, peak_rss_kib(pid)?))
    })();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    let (took, rss_kib) = outcome?;
    let reconcile_ms = std::fs::read_to_string(&log)?
        .lines()
        .filter(|l| l.contains("routes reconciled"))
        .find_map(|l| {
            l.split("took_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        });
    Ok(AgentRun {
        took,
        reconcile_ms,
        rss_kib,
    })
}

/// The `i`th simulated peer's underlay address, in 172.16.0.0/16.
pub fn sim_peer(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(172, 16, (i / 250) as u8, (i % 250 + 1) as u8))
}

/// The `n`th /24 of 10.0.0.0/8.
pub fn sim_subnet(n: usize) -> Result<IpNet> {
    let addr = Ipv4Addr::new(10, (n >> 8) as u8, n as u8, 0);
    Ok(IpNet::new(IpAddr::V4(addr), 24)?)
}

pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no VmHWM for pid {pid}"))
}
