//! The cluster store: node leases and their watch, behind one trait.
//!
//! The agent never knows which backend it talks to. A backend may allocate
//! subnets itself (the file store, etcd) or hand out subnets assigned by
//! someone else (Kubernetes `spec.podCIDRs`): `acquire` only promises a
//! lease, not how its subnets were chosen.
//!
//! The trait is async: the etcd and Kubernetes clients are, and the agent
//! runs on tokio. A synchronous backend (the file store) does its blocking
//! work on tokio's blocking pool.

mod any;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod etcd;
pub mod file;
pub mod kube;
#[cfg(any(test, feature = "conformance"))]
pub mod memory;
pub mod records;

pub use any::{AnyStore, StoreOptions, open};

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use ipnet::IpNet;
use podnet_core::cluster::lease::{Lease, LeaseAttrs};
use podnet_core::cluster::netconf::ClusterConf;

/// What went wrong, by what the agent should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// This node holds no lease (released, or expired and removed): the
    /// only error after which a node acquires again.
    #[error("node {0} holds no lease")]
    NotFound(String),
    /// Another node holds the subnet this node had.
    #[error("subnet {subnet} is now held by node {holder}")]
    Conflict { subnet: IpNet, holder: String },
    /// The store cannot be reached or read right now: keep everything as
    /// it is and retry with backoff.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// One record cannot be read.
    #[error("record {key} is corrupt: {why}")]
    Corrupt { key: String, why: String },
    /// Every subnet of a cluster CIDR is held.
    #[error("no free /{subnet_len} subnet left in {cidr}")]
    Exhausted { cidr: IpNet, subnet_len: u8 },
    /// A configuration error (a bad spec, net-conf or name).
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// The error's kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::NotFound(_) => "not_found",
            StoreError::Conflict { .. } => "conflict",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::Exhausted { .. } => "exhausted",
            StoreError::Invalid(_) => "invalid",
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A point in the store's history, opaque to everyone but its backend:
/// an etcd revision, a Kubernetes resourceVersion, a fingerprint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Revision(String);

impl Revision {
    /// The revision of a watcher that has seen nothing yet.
    pub const NONE: Revision = Revision(String::new());

    pub fn new(token: impl Into<String>) -> Revision {
        Revision(token.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every lease record at one revision, keyed by the store's record key
/// (a file name, an etcd key, a Node name). A record that does not parse
/// is listed apart, with why, and never stops the others.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub revision: Revision,
    pub leases: BTreeMap<String, Lease>,
    pub corrupt: BTreeMap<String, String>,
}

pub trait Store: Send + Sync {
    /// The cluster's net-conf: `proposed` is stored if there is none yet;
    /// the stored one is returned either way, so every node uses the same.
    fn net_conf(&self, proposed: Option<&str>) -> impl Future<Output = Result<String>> + Send;

    /// This node's lease. After a restart the node gets its previous
    /// subnets back; otherwise the store gives it free ones, or
    /// [`StoreError::Exhausted`].
    fn acquire(
        &self,
        node: &str,
        attrs: &LeaseAttrs,
        conf: &ClusterConf,
        ttl: Duration,
    ) -> impl Future<Output = Result<Lease>> + Send;

    /// Extends this node's lease and refreshes its node data.
    /// [`StoreError::NotFound`] if it holds none any more,
    /// [`StoreError::Conflict`] if another node holds its subnet.
    fn renew(
        &self,
        node: &str,
        attrs: &LeaseAttrs,
        ttl: Duration,
    ) -> impl Future<Output = Result<Lease>> + Send;

    /// Gives this node's subnets back; releasing nothing is not an error.
    fn release(&self, node: &str) -> impl Future<Output = Result<()>> + Send;

    /// Every lease record now. A backend may still list leases that have
    /// expired (the file store does): judge expiry against the time of
    /// the read, never later, so that an outage expires nobody.
    fn list(&self) -> impl Future<Output = Result<Snapshot>> + Send;

    /// Returns the full lease set as soon as anything committed after
    /// `since` is visible, or when `timeout` passes (then possibly at
    /// `since` itself); at once for [`Revision::NONE`].
    fn watch(
        &self,
        since: &Revision,
        timeout: Duration,
    ) -> impl Future<Output = Result<Snapshot>> + Send;

    /// Tells the cluster this node's network is up (its routes are in
    /// place). Only the Kubernetes store has somewhere to say it.
    fn network_up(&self, _node: &str) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}

/// A lease for `node` that lives `ttl` from now.
fn lease_for(node: &str, subnets: Vec<IpNet>, attrs: &LeaseAttrs, ttl: Duration) -> Lease {
    Lease {
        node: node.to_owned(),
        subnets,
        expires: now() + ttl.as_secs(),
        attrs: attrs.clone(),
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
