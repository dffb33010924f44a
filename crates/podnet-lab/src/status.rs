//! `lab status`: each node's agent, readiness, lease, MTU, routes, its
//! WireGuard tunnels (public keys only), pods, and the etcd members'
//! roles.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use ipnet::IpNet;
use podnet_core::cluster::desired::ROUTE_PROTOCOL;
use podnet_core::cluster::lease::Lease;
use podnet_linux::netlink::Netlink;
use podnet_linux::netns::Netns;
use podnet_store::Store;
use serde::Serialize;

use crate::record::Lab;
use crate::topology::Shape;

pub fn status(dir: &Path, json: bool) -> Result<()> {
    let Some(lab) = Lab::load(dir)? else {
        bail!("no lab in {}", dir.display());
    };
    let snap = lab.with_store(|s| async move { s.list().await })?;
    let leases: Vec<_> = snap.leases.into_values().collect();
    let mut report = status_report(&lab, &leases)?;
    if lab.policy {
        report.pods = pod_details(&lab)?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_status(&report));
    }
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub addrs: Vec<IpAddr>,
    pub agent_running: bool,
    /// podnetd's `/readyz` (`None`: no answer).
    pub ready: Option<bool>,
    pub subnets: Vec<IpNet>,
    pub mtu: Option<u32>,
    /// podnetd's routes in this node: destination and next hop.
    pub routes: Vec<(IpNet, Option<IpAddr>)>,
    /// The wireguard backend's devices, from their wireguard-go.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tunnels: Vec<Tunnel>,
    pub pods: Vec<(String, Vec<IpAddr>)>,
}

/// A WireGuard device as its wireguard-go reports it, without its
/// private key; its public key is the one the node's lease announces.
#[derive(Debug, Serialize)]
pub struct Tunnel {
    pub device: String,
    pub public_key: Option<String>,
    pub listen_port: u16,
    pub peers: Vec<TunnelPeer>,
}

#[derive(Debug, Serialize)]
pub struct TunnelPeer {
    pub public_key: String,
    pub endpoint: Option<std::net::SocketAddr>,
    pub allowed_ips: Vec<String>,
    /// Seconds since the last handshake (`None`: none yet).
    pub handshake_age_s: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// The node's WireGuard devices, read from the sockets its wireguard-go
/// opened in the node's own socket directory.
fn tunnels(lab: &Lab, node: &str, lease: Option<&Lease>) -> Vec<Tunnel> {
    use podnet_core::cluster::backend::wireguard::{DEVICES, format_key, public_key};
    let announced = lease.and_then(|l| public_key(&l.attrs, true).map(|k| format_key(&k)));
    let dir = crate::plumbing::wireguard_sockets(lab, node);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    DEVICES
        .iter()
        .filter_map(|name| {
            let client =
                wireguard_uapi::xplatform::Client::create(dir.join(format!("{name}.sock")));
            let device = client.get().ok()?;
            Some(Tunnel {
                device: (*name).to_owned(),
                public_key: announced.clone(),
                listen_port: device.listen_port,
                peers: device
                    .peers
                    .iter()
                    .map(|p| TunnelPeer {
                        public_key: format_key(&p.public_key),
                        endpoint: p.endpoint,
                        allowed_ips: p
                            .allowed_ips
                            .iter()
                            .map(|a| format!("{}/{}", a.ipaddr, a.cidr_mask))
                            .collect(),
                        handshake_age_s: (!p.last_handshake_time.is_zero())
                            .then(|| now.saturating_sub(p.last_handshake_time).as_secs()),
                        rx_bytes: p.rx_bytes,
                        tx_bytes: p.tx_bytes,
                    })
                    .collect(),
            })
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub dir: PathBuf,
    pub backend: String,
    pub shape: Shape,
    pub direct_routing: bool,
    pub nodes: Vec<NodeStatus>,
    /// The etcd members and their roles (empty on the file store).
    pub etcd: Vec<crate::etcd::MemberStatus>,
    /// With policy: every pod as its record says, and its netns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodDetails>,
}

#[derive(Debug, Serialize)]
pub struct PodDetails {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub addresses: Vec<IpAddr>,
    pub named_ports: Vec<podnet_core::policy::source::PortRecord>,
    /// Its network namespace (`ip netns exec` it).
    pub netns: String,
}

/// The lab's pods with their records' labels and named ports.
fn pod_details(lab: &Lab) -> Result<Vec<PodDetails>> {
    let mut records = crate::policy::pod_records(lab)?;
    Ok(lab
        .pods
        .iter()
        .map(|p| {
            let record = records.remove(&p.id());
            PodDetails {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                node: p.node.clone(),
                labels: record
                    .as_ref()
                    .map(|r| r.labels.clone())
                    .unwrap_or_default(),
                addresses: p.ips.clone(),
                named_ports: record.map(|r| r.ports).unwrap_or_default(),
                netns: p.ns.clone(),
            }
        })
        .collect())
}

pub fn status_report(lab: &Lab, leases: &[Lease]) -> Result<StatusReport> {
    let mut nodes = Vec::new();
    for n in &lab.nodes {
        let ns = Netns::open(format!("/var/run/netns/{}", n.ns))?;
        let routes = Netlink::open_in(&ns)?
            .routes()?
            .into_iter()
            .filter(|r| r.protocol == ROUTE_PROTOCOL)
            .map(|r| (r.dst, r.gw))
            .collect();
        let subnet_file = std::fs::read_to_string(lab.node_dir(&n.name).join("run/subnet.json"))
            .ok()
            .and_then(|raw| podnet_core::subnet_file::SubnetFile::parse(&raw).ok());
        nodes.push(NodeStatus {
            name: n.name.clone(),
            addrs: n.addrs.clone(),
            agent_running: std::path::Path::new(&format!("/proc/{}", n.pid)).exists(),
            ready: crate::probe::http_get(&n.ns, HEALTH.into(), "/readyz")
                .ok()
                .map(|(code, _)| code == 200),
            subnets: leases
                .iter()
                .find(|l| l.node == n.name)
                .map(|l| l.subnets.clone())
                .unwrap_or_default(),
            mtu: subnet_file.and_then(|f| f.mtu),
            routes,
            tunnels: tunnels(lab, &n.name, leases.iter().find(|l| l.node == n.name)),
            pods: lab
                .pods
                .iter()
                .filter(|p| p.node == n.name)
                .map(|p| (p.name.clone(), p.ips.clone()))
                .collect(),
        });
    }
    Ok(StatusReport {
        dir: lab.dir.clone(),
        backend: lab.backend.clone(),
        shape: lab.shape,
        direct_routing: lab.direct_routing,
        nodes,
        etcd: if lab.etcd.is_empty() {
            Vec::new()
        } else {
            crate::etcd::status(lab)
        },
        pods: Vec::new(),
    })
}

/// podnetd's default `--health-addr`, which the lab's agents keep.
const HEALTH: ([u8; 4], u16) = ([127, 0, 0, 1], 9411);

pub fn render_status(r: &StatusReport) -> String {
    let mut out = format!(
        "lab {}  backend {}{}  underlay {}{}\n",
        r.dir.display(),
        r.backend,
        if r.direct_routing {
            " (DirectRouting)"
        } else {
            ""
        },
        if r.shape.routed { "routed" } else { "flat" },
        if r.shape.dual_stack {
            ", dual-stack"
        } else {
            ""
        },
    );
    for m in &r.etcd {
        out += &format!(
            "etcd {:4} {:15} pid {:7} {}\n",
            m.name,
            m.addr.to_string(),
            m.pid,
            m.role
        );
    }
    for n in &r.nodes {
        let subnets: Vec<String> = n.subnets.iter().map(ToString::to_string).collect();
        out += &format!(
            "{:8} {:15} lease {:18} mtu {:5} agent {} {}\n",
            n.name,
            n.addrs[0].to_string(),
            subnets.join(","),
            n.mtu.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
            if n.agent_running { "running" } else { "DOWN" },
            match n.ready {
                Some(true) => "ready",
                Some(false) => "not ready",
                None => "(no health answer)",
            }
        );
        for (dst, via) in &n.routes {
            out += &format!(
                "           route {dst} via {}\n",
                via.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
            );
        }
        for t in &n.tunnels {
            out += &format!(
                "           {} key {} port {}\n",
                t.device,
                t.public_key.as_deref().unwrap_or("-"),
                t.listen_port
            );
            for p in &t.peers {
                out += &format!(
                    "             peer {} {} {} handshake {}\n",
                    p.public_key,
                    p.endpoint
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "-".into()),
                    p.allowed_ips.join(","),
                    p.handshake_age_s
                        .map(|s| format!("{s} s ago"))
                        .unwrap_or_else(|| "none".into())
                );
            }
        }
        for (pod, ips) in &n.pods {
            let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
            out += &format!("           pod {pod} {}\n", ips.join(" "));
        }
    }
    out
}
