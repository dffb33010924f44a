//! Node leases: which node holds which pod subnet, and how to reach it.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// One node's claim on its pod subnets (one per family).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub node: String,
    /// The node's address on the underlay: the next hop for its subnets.
    pub public_ip: IpAddr,
    pub subnets: Vec<IpNet>,
    /// Backend data, e.g. the node's VTEP MAC for vxlan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep_mac: Option<String>,
    /// Seconds since the Unix epoch after which the lease may be taken.
    pub expires: u64,
}

impl Lease {
    pub fn expired(&self, now: u64) -> bool {
        self.expires <= now
    }
}
