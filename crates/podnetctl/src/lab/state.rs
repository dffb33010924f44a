//! `lab.json`: everything a lab made, so that any command can find it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ipnet::IpNet;
use podnet_core::cluster::desired::ROUTE_PROTOCOL;
use podnet_core::cluster::lease::Lease;
use podnet_linux::files::write_private_atomic;
use podnet_linux::netlink::Netlink;
use podnet_linux::netns::Netns;
use podnet_store::AnyStore;
use serde::{Deserialize, Serialize};
use std::future::Future;

use super::topology::Shape;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub index: usize,
    pub name: String,
    pub ns: String,
    /// Underlay addresses, IPv4 first.
    pub addrs: Vec<IpAddr>,
    pub pid: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pod {
    pub name: String,
    pub ns: String,
    pub node: String,
    /// One address per family, IPv4 first.
    pub ips: Vec<IpAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lab {
    pub id: String,
    pub dir: PathBuf,
    pub backend: String,
    pub shape: Shape,
    pub direct_routing: bool,
    pub pods_per_node: usize,
    #[serde(default = "masquerade_default")]
    pub masquerade: bool,
    /// A bridge (flat underlay) or a router (routed underlay).
    pub underlay_ns: String,
    pub external_ns: String,
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    /// The etcd members, when the lab runs on the etcd store.
    #[serde(default)]
    pub etcd: Vec<EtcdMember>,
    /// The agents' `--ipam-reclaim-after`, if not podnetd's default.
    #[serde(default)]
    pub ipam_reclaim_after: Option<u64>,
    /// The emulated Kubernetes API, when the lab runs on `--store kube`.
    #[serde(default)]
    pub kube: Option<super::kube::KubeApi>,
}

/// One etcd member: its own namespace on the underlay.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EtcdMember {
    pub name: String,
    pub ns: String,
    pub addr: IpAddr,
    pub pid: i32,
}

impl EtcdMember {
    pub fn client_url(&self) -> String {
        format!("http://{}:2379", self.addr)
    }
}

/// Labs recorded before the field existed masqueraded.
fn masquerade_default() -> bool {
    true
}

impl Lab {
    pub fn load(dir: &Path) -> Result<Option<Lab>> {
        let path = dir.join("lab.json");
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes).with_context(|| format!("{}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("{}", path.display())),
        }
    }

    /// Atomic, so a lab is never half-recorded.
    pub fn save(&self) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        Ok(write_private_atomic(&self.dir.join("lab.json"), &bytes)?)
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// The agents' `--store`: the shared directory, every etcd member, or
    /// the Kubernetes API.
    pub fn store_spec(&self) -> String {
        if self.kube.is_some() {
            "kube".into()
        } else if self.etcd.is_empty() {
            format!("file:{}", self.store_dir().display())
        } else {
            let urls: Vec<String> = self.etcd.iter().map(EtcdMember::client_url).collect();
            format!("etcd:{}", urls.join(","))
        }
    }

    /// Runs `op` on the lab's store from inside the lab: etcd members are
    /// reachable only on the underlay, so the client runs on a thread in
    /// the external host's namespace, never in the machine's own.
    pub fn with_store<T, F>(&self, op: impl FnOnce(AnyStore) -> F + Send) -> Result<T>
    where
        T: Send,
        F: Future<Output = podnet_store::Result<T>>,
    {
        let spec = self.store_spec();
        let opts = self.store_options();
        self.on_underlay(|| async move {
            let store = podnet_store::open(&spec, &opts).await?;
            Ok(op(store).await?)
        })
    }

    /// Runs `op` on a runtime of its own, on a thread inside the external
    /// host's namespace: the lab's services are on its underlay.
    pub fn on_underlay<T, F>(&self, op: impl FnOnce() -> F + Send) -> Result<T>
    where
        T: Send,
        F: Future<Output = Result<T>>,
    {
        let ns = Netns::open(format!("/var/run/netns/{}", self.external_ns))?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<T> {
                    let _inside = ns.enter()?;
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?
                        .block_on(op())
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the lab's client thread panicked"))?
        })
    }

    /// What the agents' `--store` spec does not say: on the Kubernetes
    /// API, podnet's service account.
    pub fn store_options(&self) -> podnet_store::StoreOptions {
        podnet_store::StoreOptions {
            kubeconfig: self
                .kube
                .as_ref()
                .map(|_| super::kube::kubeconfig(self, "podnet")),
            ..Default::default()
        }
    }

    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join(node)
    }

    /// Every namespace of the lab, pods first so nothing is left dangling.
    pub fn namespaces(&self) -> Vec<String> {
        let mut out: Vec<String> = self.pods.iter().map(|p| p.ns.clone()).collect();
        out.extend(self.nodes.iter().map(|n| n.ns.clone()));
        out.extend(self.etcd.iter().map(|m| m.ns.clone()));
        out.extend(self.kube.iter().map(|k| k.ns.clone()));
        out.push(self.external_ns.clone());
        out.push(self.underlay_ns.clone());
        out
    }
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
    pub pods: Vec<(String, Vec<IpAddr>)>,
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub dir: PathBuf,
    pub backend: String,
    pub shape: Shape,
    pub direct_routing: bool,
    pub nodes: Vec<NodeStatus>,
    /// The etcd members and their roles (empty on the file store).
    pub etcd: Vec<super::etcd::MemberStatus>,
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
            ready: super::probe::http_get(&n.ns, HEALTH.into(), "/readyz")
                .ok()
                .map(|(code, _)| code == 200),
            subnets: leases
                .iter()
                .find(|l| l.node == n.name)
                .map(|l| l.subnets.clone())
                .unwrap_or_default(),
            mtu: subnet_file.and_then(|f| f.mtu),
            routes,
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
            super::etcd::status(lab)
        },
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
        for (pod, ips) in &n.pods {
            let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
            out += &format!("           pod {pod} {}\n", ips.join(" "));
        }
    }
    out
}
