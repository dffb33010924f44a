//! Anti-spoofing: what a pod's port on the bridge may send, as the keys
//! of the nftables sets that the node's guard chain looks up.
//!
//! A port is guarded once its interface index is in [`PORTS`]; from then
//! on an IP packet or ARP claim it sends must carry the pod's MAC and one
//! of the pod's addresses ([`ADDRS4`], [`ADDRS6`]: port, MAC and address
//! in one key, so a packet costs one lookup), anything else the pod's MAC
//! ([`MACS`]), and a neighbour advertisement must name one of the pod's
//! addresses ([`TARGETS6`]). Every
//! key starts with the interface index, which the kernel does not reuse:
//! a later pod given the same address has another index, so it never
//! inherits its predecessor's elements, and a deleted port's elements
//! match nothing until they are pruned.

use std::net::IpAddr;

/// The table, in the bridge family: it sees a frame where it enters the
/// node, before the bridge forwards it or hands it to the node's stack.
pub const TABLE: &str = "podnet-guard";
pub const PORTS: &str = "ports";
pub const MACS: &str = "macs";
pub const ADDRS4: &str = "addrs4";
pub const ADDRS6: &str = "addrs6";
pub const TARGETS6: &str = "targets6";
/// Every set; each key starts with the port's interface index.
pub const SETS: [&str; 5] = [PORTS, MACS, ADDRS4, ADDRS6, TARGETS6];

/// A pod's port and what it may claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub addrs: Vec<IpAddr>,
}

/// The set elements that admit `port`: (set, key). nftables lays out a
/// concatenated key with each part padded to 4 bytes; an interface index
/// is in host byte order, addresses in network order.
pub fn elements(port: &Port) -> Vec<(&'static str, Vec<u8>)> {
    let index = port.ifindex.to_ne_bytes();
    let key = |rest: &[u8]| {
        let mut key = index.to_vec();
        key.extend_from_slice(rest);
        key.resize(key.len().next_multiple_of(4), 0);
        key
    };
    // The MAC takes 8 bytes in a concatenation.
    let mac = [&port.mac[..], &[0, 0]].concat();
    let mut out = vec![(PORTS, index.to_vec()), (MACS, key(&mac))];
    for addr in &port.addrs {
        match addr {
            IpAddr::V4(v4) => out.push((ADDRS4, key(&[&mac[..], &v4.octets()].concat()))),
            IpAddr::V6(v6) => {
                out.push((ADDRS6, key(&[&mac[..], &v6.octets()].concat())));
                out.push((TARGETS6, key(&v6.octets())));
            }
        }
    }
    out
}

/// The interface index a key belongs to.
pub fn key_ifindex(key: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(key.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_nftables_concatenation_layout() {
        let port = Port {
            ifindex: 7,
            mac: [2, 0, 0, 0, 0, 9],
            addrs: vec!["10.1.2.3".parse().unwrap(), "fd00::5".parse().unwrap()],
        };
        let els = elements(&port);
        let idx = 7u32.to_ne_bytes();
        assert_eq!(els[0], (PORTS, idx.to_vec()));
        assert_eq!(els[1].0, MACS);
        assert_eq!(els[1].1, [&idx[..], &[2, 0, 0, 0, 0, 9, 0, 0]].concat());
        let mac = [2, 0, 0, 0, 0, 9, 0, 0];
        assert_eq!(els[2], (ADDRS4, [&idx[..], &mac, &[10, 1, 2, 3]].concat()));
        let v6: std::net::Ipv6Addr = "fd00::5".parse().unwrap();
        assert_eq!(els[3], (ADDRS6, [&idx[..], &mac, &v6.octets()].concat()));
        assert_eq!(els[4], (TARGETS6, [&idx[..], &v6.octets()].concat()));
        assert!(els.iter().all(|(_, k)| key_ifindex(k) == Some(7)));
    }

    #[test]
    fn a_short_key_has_no_index() {
        assert_eq!(key_ifindex(&[1, 2]), None);
    }
}
