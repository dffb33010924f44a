//! `lab.json`: everything a lab made, so that any command can find it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use podnet_linux::files::write_private_atomic;
use podnet_store::AnyStore;
use serde::{Deserialize, Serialize};
use std::future::Future;

use crate::inside::block_on_in;
use crate::topology::Shape;

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
    /// Its Kubernetes namespace (`lab`, or the policy model's x, y, z).
    #[serde(default = "lab_namespace")]
    pub namespace: String,
    /// Its network namespace.
    pub ns: String,
    pub node: String,
    /// One address per family, IPv4 first.
    pub ips: Vec<IpAddr>,
}

impl Pod {
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
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
    pub kube: Option<KubeApi>,
    /// The agents enforce NetworkPolicy (`podnetd --policy`, the conflist's
    /// `"policy": true`), and the lab writes its pods' records.
    #[serde(default)]
    pub policy: bool,
}

/// The running emulated API server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubeApi {
    pub ns: String,
    pub pid: i32,
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

/// The namespace the lab's own pods are in.
pub fn lab_namespace() -> String {
    "lab".into()
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

    /// As [`Lab::with_store`], with the right to write policy's records:
    /// on the Kubernetes API, as the cluster's admin (the lab plays the
    /// users and kubelet writing namespaces, pods and policies).
    pub fn with_writer<T, F>(&self, op: impl FnOnce(AnyStore) -> F + Send) -> Result<T>
    where
        T: Send,
        F: Future<Output = podnet_store::Result<T>>,
    {
        let spec = self.store_spec();
        let mut opts = self.store_options();
        if self.kube.is_some() {
            opts.kubeconfig = Some(self.kubeconfig("admin"));
        }
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
        block_on_in(&format!("/var/run/netns/{}", self.external_ns), op)
    }

    /// What the agents' `--store` spec does not say: on the Kubernetes
    /// API, podnet's service account.
    pub fn store_options(&self) -> podnet_store::StoreOptions {
        podnet_store::StoreOptions {
            kubeconfig: self.kube.as_ref().map(|_| self.kubeconfig("podnet")),
            ..Default::default()
        }
    }

    /// `podnet` (the agents' service account) or `admin` (the lab).
    pub fn kubeconfig(&self, user: &str) -> PathBuf {
        self.dir.join("kube").join(format!("{user}.kubeconfig"))
    }

    /// `ns/name` of each pod, in the lab's order.
    pub fn pod_ids(&self) -> Vec<String> {
        self.pods.iter().map(Pod::id).collect()
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
