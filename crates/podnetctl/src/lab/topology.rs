//! The lab's names and addresses, decided purely from its id and size.

use std::net::{IpAddr, Ipv4Addr};

/// The underlay subnet: node i (1-based) is 192.168.1.(i+1), as in the
/// seeds' picture; the external host is .254.
pub const UNDERLAY_PREFIX: u8 = 24;
pub const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 254);
/// Nodes 1..=MAX_NODES fit below the external host's address.
pub const MAX_NODES: usize = 250;

pub fn node_name(i: usize) -> String {
    format!("node{i}")
}

pub fn node_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 168, 1, (i + 1) as u8))
}

/// Namespace names: the lab id keeps two labs (and two test runs) apart,
/// and every name stays short.
pub fn node_ns(id: &str, i: usize) -> String {
    format!("{id}-n{i}")
}

pub fn pod_ns(id: &str, node: usize, pod: usize) -> String {
    format!("{id}-n{node}p{pod}")
}

pub fn pod_name(node: usize, pod: usize) -> String {
    format!("node{node}-pod{pod}")
}

pub fn fabric_ns(id: &str) -> String {
    format!("{id}-fab")
}

pub fn external_ns(id: &str) -> String {
    format!("{id}-ext")
}

/// The fabric-side name of node i's underlay veth.
pub fn fabric_port(i: usize) -> String {
    format!("n{i}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_short() {
        let id = "pl4194304";
        let mut names = vec![fabric_ns(id), external_ns(id)];
        for n in 1..=MAX_NODES {
            names.push(node_ns(id, n));
            for p in 1..=9 {
                names.push(pod_ns(id, n, p));
            }
        }
        let before = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), before);
        assert_eq!(node_ip(1).to_string(), "192.168.1.2");
        assert_eq!(node_ip(MAX_NODES).to_string(), "192.168.1.251");
    }
}
