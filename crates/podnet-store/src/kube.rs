//! The Kubernetes API store (`--store kube`), as flannel's
//! `--kube-subnet-mgr`: a node's subnets are the `spec.podCIDRs` the
//! controller manager assigned (podnet allocates nothing), its backend
//! data goes into podnet's annotations on its Node (through `nodes/status`),
//! and peers come from a Node list kept current by a watch.
//!
//! Allocation, expiry and release do not apply: a node leaves when its
//! Node object is deleted.
//!
//! It is also NetworkPolicy's source (`policy`): Namespaces, Pods and
//! NetworkPolicies, watched the same way, whichever store holds the
//! leases.

mod policy;
pub mod slim_node;
pub mod slim_policy;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Api, ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use podnet_core::cluster::lease::{Lease, LeaseAttrs};
use podnet_core::cluster::netconf::ClusterConf;
use serde_json::json;

use self::slim_node::SlimNode;
use crate::{Result, Revision, Snapshot, Store, StoreError};

/// Nodes per list page: a bound on what one response holds in memory.
const PAGE: u32 = 500;

pub struct KubeStore {
    client: kube::Client,
    nodes: Api<SlimNode>,
    /// A watch that brings nothing, not even a bookmark, for this long is
    /// opened again: on a dead connection that fails, and the outage is
    /// reported.
    silence: Duration,
    /// The node this client leased for, and what its annotations say:
    /// restored as soon as the watch or a list shows them changed.
    mine: std::sync::Mutex<Option<(String, LeaseAttrs)>>,
    /// The Node list as of `revision`, kept current by the watch.
    cache: tokio::sync::Mutex<Option<Cache>>,
    /// Policy's records (Namespaces, Pods, NetworkPolicies), kept current
    /// by their watches.
    records: tokio::sync::Mutex<Option<policy::Cache>>,
}

/// The server closes a watch after this long (client-go picks 5 to 10
/// minutes); it is opened again from where it stopped.
const WATCH_SECS: u32 = 290;

/// How long a watch may bring nothing before it is opened again: a real
/// API server sends a bookmark about every minute.
pub const DEFAULT_SILENCE: Duration = Duration::from_secs(75);

type NodeEvents =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = kube::Result<WatchEvent<SlimNode>>> + Send>>;

#[derive(Default)]
struct Cache {
    /// The resourceVersion of the last change podnet cares about: what
    /// snapshots carry.
    revision: String,
    /// The last resourceVersion seen, bookmarks included: where the watch
    /// resumes.
    resume: String,
    nodes: BTreeMap<String, Option<std::result::Result<Lease, String>>>,
    /// The open watch, kept across calls, and when it last brought
    /// anything.
    events: Option<NodeEvents>,
    heard: Option<tokio::time::Instant>,
}

impl Cache {
    /// Takes in a Node as read; whether what podnet reads of it (its
    /// lease: podCIDRs and podnet's annotations) changed. A kubelet's
    /// status update of another Node costs this comparison, nothing more.
    fn apply(&mut self, node: &SlimNode, deleted: bool) -> bool {
        let Some(name) = node.metadata.name.clone() else {
            return false;
        };
        if let Some(rv) = &node.metadata.resource_version {
            self.resume = rv.clone();
        }
        let changed = if deleted {
            self.nodes.remove(&name).is_some()
        } else {
            let lease = slim_node::lease(node);
            self.nodes.insert(name, lease.clone()) != Some(lease)
        };
        if changed {
            self.revision = self.resume.clone();
        }
        changed
    }

    fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot {
            revision: Revision::new(self.revision.clone()),
            ..Snapshot::default()
        };
        for (name, lease) in &self.nodes {
            match lease {
                Some(Ok(l)) => {
                    snap.leases.insert(name.clone(), l.clone());
                }
                Some(Err(why)) => {
                    snap.corrupt.insert(name.clone(), why.clone());
                }
                None => {}
            }
        }
        snap
    }
}

fn unavailable(e: kube::Error) -> StoreError {
    match e {
        kube::Error::Api(s) if s.code == 403 => StoreError::Invalid(format!(
            "Kubernetes API: {} (deploy/rbac.yaml lists what podnet needs)",
            s.message
        )),
        e => StoreError::Unavailable(format!("Kubernetes API: {e}")),
    }
}

/// Every request but a watch's stream gets this long: an API server that
/// accepts a connection and never answers is an outage, reported as one.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one API call under [`CALL_TIMEOUT`].
async fn call<T>(what: &str, request: impl Future<Output = kube::Result<T>>) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, request).await {
        Ok(answer) => answer.map_err(unavailable),
        Err(_) => Err(StoreError::Unavailable(format!(
            "Kubernetes API: no answer to {what} within {CALL_TIMEOUT:?}"
        ))),
    }
}

fn is_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 410)
}

impl KubeStore {
    /// A client from `kubeconfig`, else the in-cluster service account.
    pub async fn connect(kubeconfig: Option<&Path>) -> Result<KubeStore> {
        let config = match kubeconfig {
            Some(path) => {
                let file = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    StoreError::Invalid(format!("kubeconfig {}: {e}", path.display()))
                })?;
                kube::Config::from_custom_kubeconfig(file, &Default::default())
                    .await
                    .map_err(|e| {
                        StoreError::Invalid(format!("kubeconfig {}: {e}", path.display()))
                    })?
            }
            None => kube::Config::incluster().map_err(|e| {
                StoreError::Invalid(format!(
                    "no in-cluster service account ({e}); outside a pod give --kubeconfig"
                ))
            })?,
        };
        let client = kube::Client::try_from(config)
            .map_err(|e| StoreError::Invalid(format!("Kubernetes client: {e}")))?;
        Ok(KubeStore {
            nodes: Api::all(client.clone()),
            client,
            silence: DEFAULT_SILENCE,
            mine: std::sync::Mutex::default(),
            cache: tokio::sync::Mutex::default(),
            records: tokio::sync::Mutex::default(),
        })
    }

    /// How long a quiet watch is trusted (default [`DEFAULT_SILENCE`]).
    pub fn with_watch_silence(self, silence: Duration) -> Self {
        KubeStore { silence, ..self }
    }

    /// Every Node, page by page, into a fresh cache.
    async fn relist(&self) -> Result<Cache> {
        let mut cache = Cache::default();
        let mut params = ListParams::default().limit(PAGE);
        loop {
            let page = call("a Node list", self.nodes.list(&params)).await?;
            for n in &page.items {
                cache.apply(n, false);
                // A failure here is the renewal's to report.
                let _ = self.keep_annotated(n).await;
            }
            cache.revision = page.metadata.resource_version.clone().unwrap_or_default();
            cache.resume = cache.revision.clone();
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(next) => params = params.continue_token(&next),
                None => return Ok(cache),
            }
        }
    }

    /// Restores this node's annotations if `node` (as just read) is this
    /// node's and they were removed or changed by hand.
    async fn keep_annotated(&self, node: &SlimNode) -> Result<()> {
        let mine = self.mine.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match mine {
            Some((name, attrs))
                if node.metadata.name.as_deref() == Some(name.as_str())
                    && !slim_node::annotated(node, &attrs) =>
            {
                self.annotate(&name, &attrs).await
            }
            _ => Ok(()),
        }
    }

    fn remember(&self, name: &str, attrs: &LeaseAttrs) {
        *self.mine.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((name.to_owned(), attrs.clone()));
    }

    async fn node(&self, name: &str) -> Result<Option<SlimNode>> {
        call("a Node read", self.nodes.get_opt(name)).await
    }

    async fn annotate(&self, name: &str, attrs: &LeaseAttrs) -> Result<()> {
        let patch = slim_node::annotations_patch(attrs);
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        let request = self.nodes.patch_status(name, &params, &patch);
        call("an annotation patch", request).await.map(drop)
    }

    /// This node's lease: its podCIDRs, checked against the cluster CIDRs.
    fn lease_of(
        name: &str,
        node: &SlimNode,
        attrs: &LeaseAttrs,
        conf: Option<&ClusterConf>,
    ) -> Result<Lease> {
        let subnets = slim_node::pod_cidrs(node).map_err(StoreError::Invalid)?;
        if subnets.is_empty() {
            return Err(StoreError::Unavailable(format!(
                "node {name} has no spec.podCIDRs yet: kube-controller-manager must run with \
                 --allocate-node-cidrs (and --cluster-cidr); waiting"
            )));
        }
        if let Some(conf) = conf {
            for s in &subnets {
                if !conf.families().any(|f| f.network.contains(s)) {
                    let cidrs: Vec<String> =
                        conf.families().map(|f| f.network.to_string()).collect();
                    return Err(StoreError::Invalid(format!(
                        "node {name}'s podCIDR {s} is outside the cluster CIDRs {} in net-conf",
                        cidrs.join(", ")
                    )));
                }
            }
        }
        Ok(Lease {
            node: name.to_owned(),
            subnets,
            expires: u64::MAX,
            attrs: attrs.clone(),
        })
    }
}
impl KubeStore {
    /// Every Node's name (for the uninstall).
    pub async fn node_names(&self) -> Result<Vec<String>> {
        Ok(self.relist().await?.nodes.into_keys().collect())
    }

    /// Takes podnet off a Node, as its uninstall does: podnet's
    /// annotations, and the NetworkUnavailable condition if podnet set it.
    /// Returns whether anything was there to remove.
    pub async fn forget_node(&self, name: &str) -> Result<bool> {
        // The whole Node: podnet's slim one keeps no conditions.
        let nodes: Api<k8s_openapi::api::core::v1::Node> =
            Api::all(self.nodes.clone().into_client());
        let Some(node) = call("a Node read", nodes.get_opt(name)).await? else {
            return Ok(false);
        };
        let Some(patch) = slim_node::forget_patch(&node) else {
            return Ok(false);
        };
        let (params, patch) = (PatchParams::default(), Patch::Strategic(&patch));
        let request = self.nodes.patch_status(name, &params, &patch);
        call("a Node's clean-up", request).await.map(|_| true)
    }
}

impl Store for KubeStore {
    /// Reports this node's network up: `NetworkUnavailable=False`, reason
    /// `PodnetIsUp`, through `nodes/status`. Never sets it True.
    async fn network_up(&self, name: &str) -> Result<()> {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let patch = json!({"status": {"conditions": [{
            "type": "NetworkUnavailable",
            "status": "False",
            "reason": slim_node::UP_REASON,
            "message": "podnet is running on this node",
            "lastTransitionTime": now,
            "lastHeartbeatTime": now,
        }]}});
        let (params, patch) = (PatchParams::default(), Patch::Strategic(&patch));
        let request = self.nodes.patch_status(name, &params, &patch);
        call("a condition patch", request).await.map(drop)
    }

    async fn net_conf(&self, proposed: Option<&str>) -> Result<String> {
        proposed.map(str::to_owned).ok_or_else(|| {
            StoreError::Invalid(
                "--store kube reads the net-conf from --net-conf (the DaemonSet mounts it from \
                 a ConfigMap)"
                    .into(),
            )
        })
    }

    async fn acquire(
        &self,
        name: &str,
        attrs: &LeaseAttrs,
        conf: &ClusterConf,
        _ttl: Duration,
    ) -> Result<Lease> {
        let Some(node) = self.node(name).await? else {
            return Err(StoreError::Unavailable(format!(
                "node {name} is not registered (no Node object); waiting"
            )));
        };
        let lease = Self::lease_of(name, &node, attrs, Some(conf))?;
        self.remember(name, attrs);
        self.keep_annotated(&node).await?;
        Ok(lease)
    }

    async fn renew(&self, name: &str, attrs: &LeaseAttrs, _ttl: Duration) -> Result<Lease> {
        let Some(node) = self.node(name).await? else {
            return Err(StoreError::NotFound(name.to_owned()));
        };
        let lease = Self::lease_of(name, &node, attrs, None)?;
        self.remember(name, attrs);
        self.keep_annotated(&node).await?;
        Ok(lease)
    }

    async fn release(&self, name: &str) -> Result<()> {
        Err(StoreError::Invalid(format!(
            "with --store kube a node leaves when its Node object is deleted \
             (kubectl delete node {name}); podnet holds nothing to release"
        )))
    }

    async fn list(&self) -> Result<Snapshot> {
        let cache = self.relist().await?;
        let snap = cache.snapshot();
        *self.cache.lock().await = Some(cache);
        Ok(snap)
    }

    /// Keeps one long Node watch open across calls (resumed from the last
    /// resourceVersion seen, bookmarks requested) and returns at the first
    /// change podnet cares about, or after `timeout` with the same view.
    /// Another view than `since`, or a 410, lists again.
    async fn watch(&self, since: &Revision, timeout: Duration) -> Result<Snapshot> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut guard = self.cache.lock().await;
        // Another view than the one asked about (a new client, a relist):
        // list, and return it unless it is still at `since`.
        if guard.as_ref().is_none_or(|c| c.revision != since.as_str()) {
            let fresh = self.relist().await?;
            let moved = fresh.revision != since.as_str() || *since == Revision::NONE;
            let snap = moved.then(|| fresh.snapshot());
            *guard = Some(fresh);
            if let Some(snap) = snap {
                return Ok(snap);
            }
        }
        let Some(cache) = guard.as_mut() else {
            return Err(StoreError::Unavailable("no Node list".into()));
        };
        loop {
            let events = match &mut cache.events {
                Some(events) => events,
                None => {
                    // (kube asks for bookmarks by default.)
                    let params = WatchParams::default().timeout(WATCH_SECS);
                    // An API server that hangs rather than refuses answers
                    // no watch: an outage, not a quiet spell.
                    let opened = tokio::time::timeout_at(
                        deadline.max(tokio::time::Instant::now() + OPEN_CAP),
                        self.nodes.watch(&params, &cache.resume),
                    )
                    .await;
                    match opened {
                        Err(_) => {
                            return Err(StoreError::Unavailable(format!(
                                "Kubernetes API: a watch got no answer within {OPEN_CAP:?}"
                            )));
                        }
                        Ok(Err(e)) if is_gone(&e) => {
                            drop(guard);
                            return self.list().await;
                        }
                        Ok(Err(e)) => return Err(unavailable(e)),
                        Ok(Ok(stream)) => {
                            cache.heard = Some(tokio::time::Instant::now());
                            cache.events.insert(stream.boxed())
                        }
                    }
                }
            };
            let silent_at = cache.heard.unwrap_or_else(tokio::time::Instant::now) + self.silence;
            let event = match tokio::time::timeout_at(deadline.min(silent_at), events.next()).await
            {
                // Silent too long: open it again (which fails on a dead
                // connection).
                Err(_) if tokio::time::Instant::now() >= silent_at => {
                    cache.events = None;
                    continue;
                }
                // Quiet until the deadline: the same view.
                Err(_) => return Ok(cache.snapshot()),
                // The server closed it: open it again from where it was.
                Ok(None) => {
                    cache.events = None;
                    continue;
                }
                Ok(Some(Err(e))) => {
                    cache.events = None;
                    if is_gone(&e) {
                        drop(guard);
                        return self.list().await;
                    }
                    return Err(unavailable(e));
                }
                Ok(Some(Ok(event))) => {
                    cache.heard = Some(tokio::time::Instant::now());
                    event
                }
            };
            let changed = match event {
                WatchEvent::Added(n) | WatchEvent::Modified(n) => {
                    let _ = self.keep_annotated(&n).await;
                    cache.apply(&n, false)
                }
                WatchEvent::Deleted(n) => cache.apply(&n, true),
                WatchEvent::Bookmark(b) => {
                    cache.resume = b.metadata.resource_version;
                    false
                }
                WatchEvent::Error(s) => {
                    cache.events = None;
                    let e = kube::Error::Api(s);
                    if is_gone(&e) {
                        drop(guard);
                        return self.list().await;
                    }
                    return Err(unavailable(e));
                }
            };
            if changed {
                return Ok(cache.snapshot());
            }
        }
    }
}

/// How long opening a watch may take, however short the caller's wait.
const OPEN_CAP: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests;
