//! The cluster store: node leases and their watch, behind one trait.
//!
//! The agent never knows which backend it talks to. A backend may allocate
//! subnets itself (the file store, etcd) or hand out subnets assigned by
//! someone else (Kubernetes `spec.podCIDRs`): `acquire` only promises a
//! lease, not how its subnets were chosen.

pub mod file;

use std::net::IpAddr;
use std::time::Duration;

use podnet_core::cluster::lease::Lease;
use podnet_core::cluster::netconf::ClusterConf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("store data {path} is corrupt: {why}")]
    Corrupt { path: String, why: String },
    #[error("no free subnet left in {0}")]
    Exhausted(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What a node tells the store about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub public_ip: IpAddr,
    pub public_ipv6: Option<IpAddr>,
    pub vtep_mac: Option<String>,
    pub vtep_mac6: Option<String>,
}

/// A fingerprint of the leases, to tell whether they changed.
pub type Revision = u64;

/// The revision of a watcher that has seen nothing yet.
pub const NO_REVISION: Revision = 0;

pub trait Store: Send + Sync {
    /// The cluster's net-conf: `proposed` is stored if there is none yet;
    /// the stored one is returned either way, so every node uses the same.
    fn net_conf(&self, proposed: Option<&str>) -> Result<String>;

    /// This node's lease. After a restart the node gets its previous
    /// subnets back; otherwise the store gives it free ones.
    fn acquire(&self, node: &NodeInfo, conf: &ClusterConf, ttl: Duration) -> Result<Lease>;

    /// Extends this node's lease (and refreshes its node data).
    fn renew(&self, node: &NodeInfo, ttl: Duration) -> Result<Lease>;

    /// Gives this node's subnets back.
    fn release(&self, node: &str) -> Result<()>;

    /// All leases, live or expired.
    fn list(&self) -> Result<Vec<Lease>>;

    /// Waits until the leases differ from `since` or `timeout` passes, and
    /// returns the current revision and leases; at once for [`NO_REVISION`].
    fn watch(&self, since: Revision, timeout: Duration) -> Result<(Revision, Vec<Lease>)>;
}

/// Opens a store from a `--store` spec such as `file:/var/lib/podnet/store`.
pub fn open(spec: &str) -> Result<Box<dyn Store>> {
    match spec.split_once(':') {
        Some(("file", dir)) if !dir.is_empty() => Ok(Box::new(file::FileStore::open(dir)?)),
        _ => Err(StoreError::Invalid(format!(
            "--store \"{spec}\" is not supported; use file:DIR"
        ))),
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
