//! Node leases: which node holds which pod subnet, and how to reach it.
//!
//! A lease's node data has flannel's shape (`LeaseAttrs`): the underlay
//! addresses, the backend's type and the backend's own data, which is
//! opaque JSON here and read only by its backend (vxlan: `cluster::backend::vxlan`).
//! The node name, the subnets and the expiry are podnet's own fields.
//!
//! Evolution: lease data only ever gains fields, and readers ignore the
//! fields they do not know; an incompatible change is a new backend type.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How to reach a node: flannel's `LeaseAttrs`, field for field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseAttrs {
    /// The node's address on the underlay: the next hop for its subnets.
    #[serde(rename = "PublicIP")]
    pub public_ip: IpAddr,
    /// Its IPv6 underlay address, for IPv6 pod subnets (dual-stack).
    #[serde(
        rename = "PublicIPv6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub public_ipv6: Option<IpAddr>,
    /// The backend that wrote the data below (`host-gw`, `vxlan`).
    #[serde(rename = "BackendType")]
    pub backend_type: String,
    /// The backend's data for the IPv4 subnet; only that backend reads it.
    #[serde(rename = "BackendData", default, skip_serializing_if = "is_null")]
    pub backend_data: Value,
    /// The backend's data for the IPv6 subnet.
    #[serde(rename = "BackendV6Data", default, skip_serializing_if = "is_null")]
    pub backend_v6_data: Value,
}

fn is_null(v: &Value) -> bool {
    v.is_null()
}

impl LeaseAttrs {
    /// The underlay address that carries this family's pod traffic.
    pub fn underlay(&self, v4: bool) -> Option<IpAddr> {
        if v4 {
            self.public_ip.is_ipv4().then_some(self.public_ip)
        } else {
            self.public_ipv6
                .or_else(|| self.public_ip.is_ipv6().then_some(self.public_ip))
        }
    }

    /// The backend data of this family's subnet.
    pub fn backend_data(&self, v4: bool) -> &Value {
        if v4 {
            &self.backend_data
        } else {
            &self.backend_v6_data
        }
    }
}

/// One node's claim on its pod subnets (one per family).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub node: String,
    pub subnets: Vec<IpNet>,
    /// Seconds since the Unix epoch after which the lease may be taken.
    pub expires: u64,
    #[serde(flatten)]
    pub attrs: LeaseAttrs,
}

impl Lease {
    pub fn expired(&self, now: u64) -> bool {
        self.expires <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flannel_attrs_and_ignores_unknown_fields() {
        let json = r#"{"node":"n1","subnets":["10.244.1.0/24"],"expires":9,
            "PublicIP":"192.168.1.2","BackendType":"vxlan",
            "BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:01","Future":true},
            "SomethingNew":[1,2]}"#;
        let lease: Lease = serde_json::from_str(json).unwrap();
        assert_eq!(lease.attrs.backend_type, "vxlan");
        assert_eq!(lease.attrs.backend_data["VNI"], 1);
        assert!(lease.attrs.backend_v6_data.is_null());
        let back = serde_json::to_value(&lease).unwrap();
        assert_eq!(back["PublicIP"], "192.168.1.2");
        assert!(back.get("BackendV6Data").is_none() && back.get("PublicIPv6").is_none());
    }
}
