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
    /// Its IPv6 underlay address, for IPv6 pod subnets (dual-stack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ipv6: Option<IpAddr>,
    pub subnets: Vec<IpNet>,
    /// vxlan: the MAC of the node's `podnet.vxlan` device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep_mac: Option<String>,
    /// vxlan: the MAC of the node's `podnet.vxlan6` device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep_mac6: Option<String>,
    /// Seconds since the Unix epoch after which the lease may be taken.
    pub expires: u64,
}

impl Lease {
    pub fn expired(&self, now: u64) -> bool {
        self.expires <= now
    }

    /// The underlay address that carries this family's pod traffic.
    pub fn underlay(&self, v4: bool) -> Option<IpAddr> {
        if v4 {
            self.public_ip.is_ipv4().then_some(self.public_ip)
        } else {
            self.public_ipv6
                .or_else(|| self.public_ip.is_ipv6().then_some(self.public_ip))
        }
    }

    /// The VTEP MAC of this family's vxlan device.
    pub fn vtep(&self, v4: bool) -> Option<&str> {
        if v4 {
            self.vtep_mac.as_deref()
        } else {
            self.vtep_mac6.as_deref()
        }
    }
}
