//! flannel's etcd layout, decided purely:
//!
//! ```text
//! <prefix>/config                          the net-conf
//! <prefix>/subnets/10.244.3.0-24           one lease (IPv4)
//! <prefix>/subnets/10.244.3.0-24&fd00:244:0:3::-64   dual-stack
//! ```
//!
//! A lease's value is flannel's `LeaseAttrs` JSON with podnet's own fields
//! beside it (`node`, `subnets`, `expires`). A value flannel wrote lacks
//! them: its subnets come from the key and its node name from its address.

use ipnet::IpNet;
use podnet_core::cluster::lease::{Lease, LeaseAttrs};
use serde::Deserialize;

pub const DEFAULT_PREFIX: &str = "/podnet.io/network";

pub fn config_key(prefix: &str) -> String {
    format!("{prefix}/config")
}

pub fn subnets_prefix(prefix: &str) -> String {
    format!("{prefix}/subnets/")
}

/// The key of a lease on `subnets` (IPv4 first, as flannel writes it).
pub fn subnet_key(prefix: &str, subnets: &[IpNet]) -> String {
    let mut sorted = subnets.to_vec();
    sorted.sort_by_key(|s| s.addr().is_ipv6());
    let parts: Vec<String> = sorted
        .iter()
        .map(|s| format!("{}-{}", s.network(), s.prefix_len()))
        .collect();
    format!("{}{}", subnets_prefix(prefix), parts.join("&"))
}

/// The subnets a key names; `None` for a key that is not a lease's.
pub fn parse_subnet_key(prefix: &str, key: &str) -> Option<Vec<IpNet>> {
    let rest = key.strip_prefix(&subnets_prefix(prefix))?;
    rest.split('&')
        .map(|part| {
            let (ip, len) = part.rsplit_once('-')?;
            IpNet::new(ip.parse().ok()?, len.parse().ok()?).ok()
        })
        .collect()
}

/// A stored value: flannel's fields, and podnet's where podnet wrote it.
#[derive(Deserialize)]
struct Value {
    #[serde(flatten)]
    attrs: LeaseAttrs,
    node: Option<String>,
}

/// The lease a listed key holds. A listed key is live (its etcd lease
/// keeps it), so it never counts as expired.
pub fn parse_lease(prefix: &str, key: &str, value: &[u8]) -> Result<Lease, String> {
    let subnets =
        parse_subnet_key(prefix, key).ok_or("not a subnet key (IP-LEN, or IP-LEN&IP6-LEN6)")?;
    let v: Value = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    Ok(Lease {
        node: v.node.unwrap_or_else(|| v.attrs.public_ip.to_string()),
        subnets,
        expires: u64::MAX,
        attrs: v.attrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_flannels() {
        let p = "/coreos.com/network";
        let v4: IpNet = "10.5.34.0/24".parse().unwrap();
        let v6: IpNet = "fc00:0:0:2::/64".parse().unwrap();
        assert_eq!(
            subnet_key(p, &[v4]),
            "/coreos.com/network/subnets/10.5.34.0-24"
        );
        assert_eq!(
            subnet_key(p, &[v6, v4]),
            "/coreos.com/network/subnets/10.5.34.0-24&fc00:0:0:2::-64",
            "IPv4 first"
        );
        for subnets in [vec![v4], vec![v4, v6]] {
            let key = subnet_key(p, &subnets);
            assert_eq!(parse_subnet_key(p, &key), Some(subnets));
        }
        assert_eq!(parse_subnet_key(p, "/coreos.com/network/config"), None);
        assert_eq!(
            parse_subnet_key(p, "/coreos.com/network/subnets/x-24"),
            None
        );
        assert_eq!(config_key(DEFAULT_PREFIX), "/podnet.io/network/config");
    }

    /// A lease as flannel's documentation shows one: LeaseAttrs only.
    #[test]
    fn a_value_flannel_wrote_is_read() {
        let p = "/coreos.com/network";
        let key = "/coreos.com/network/subnets/10.5.34.0-24";
        let value = br#"{"PublicIP":"172.17.8.101","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"ae:8f:a3:9b:21:5c"}}"#;
        let lease = parse_lease(p, key, value).unwrap();
        assert_eq!(lease.node, "172.17.8.101");
        assert_eq!(lease.subnets[0].to_string(), "10.5.34.0/24");
        assert_eq!(lease.attrs.backend_data["VtepMAC"], "ae:8f:a3:9b:21:5c");
        assert!(!lease.expired(u64::MAX - 1));
        assert!(parse_lease(p, key, b"{ not json").is_err());
    }
}
