//! The lab's names and addresses, decided purely from its id and shape.
//!
//! Flat (one L2 segment, as in the seeds' picture): node i is 192.168.1.(i+1)
//! on a bridge, and the external host 192.168.1.254 is the nodes' gateway.
//! Routed: node i sits alone in 192.168.i.0/24 behind a router namespace
//! (192.168.i.1), and the external host is 192.168.254.2 behind it too.
//! Dual-stack adds fd00:1::/64 (flat) or fd00:0:0:i::/64 (routed).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// Nodes 1..=MAX_NODES keep clear of the external host's addresses.
pub const MAX_NODES: usize = 250;
const EXT: u8 = 254;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Shape {
    pub routed: bool,
    pub dual_stack: bool,
}

/// An address on a segment, and the gateway beyond it (if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment {
    pub addr: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    /// The router's own address on this segment (routed only).
    pub router: Option<IpAddr>,
}

fn v4(c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 168, c, d))
}

fn v6(segment: u16, host: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, segment, 0, 0, 0, host))
}

fn flat_v6(host: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, host))
}

impl Shape {
    /// Node i's attachments, IPv4 first.
    pub fn node(self, i: usize) -> Vec<Attachment> {
        let i8 = i as u8;
        let mut out = Vec::new();
        if self.routed {
            out.push(Attachment {
                addr: v4(i8, 2),
                prefix: 24,
                gateway: Some(v4(i8, 1)),
                router: Some(v4(i8, 1)),
            });
            if self.dual_stack {
                out.push(Attachment {
                    addr: v6(i as u16, 2),
                    prefix: 64,
                    gateway: Some(v6(i as u16, 1)),
                    router: Some(v6(i as u16, 1)),
                });
            }
        } else {
            out.push(Attachment {
                addr: v4(1, i8 + 1),
                prefix: 24,
                gateway: Some(v4(1, EXT)),
                router: None,
            });
            if self.dual_stack {
                out.push(Attachment {
                    addr: flat_v6(i as u16 + 1),
                    prefix: 64,
                    gateway: Some(flat_v6(u16::from(EXT))),
                    router: None,
                });
            }
        }
        out
    }

    /// The external host's attachments, IPv4 first.
    pub fn external(self) -> Vec<Attachment> {
        let mut out = Vec::new();
        if self.routed {
            out.push(Attachment {
                addr: v4(EXT, 2),
                prefix: 24,
                gateway: Some(v4(EXT, 1)),
                router: Some(v4(EXT, 1)),
            });
            if self.dual_stack {
                out.push(Attachment {
                    addr: v6(u16::from(EXT), 2),
                    prefix: 64,
                    gateway: Some(v6(u16::from(EXT), 1)),
                    router: Some(v6(u16::from(EXT), 1)),
                });
            }
        } else {
            out.push(Attachment {
                addr: v4(1, EXT),
                prefix: 24,
                gateway: None,
                router: None,
            });
            if self.dual_stack {
                out.push(Attachment {
                    addr: flat_v6(u16::from(EXT)),
                    prefix: 64,
                    gateway: None,
                    router: None,
                });
            }
        }
        out
    }
}

pub fn node_name(i: usize) -> String {
    format!("node{i}")
}

/// Namespace names: the lab id keeps two labs (and two test runs) apart,
/// and every name stays short.
pub fn node_ns(id: &str, i: usize) -> String {
    format!("{id}-n{i}")
}

pub fn pod_ns(id: &str, node: usize, pod: usize) -> String {
    format!("{id}-n{node}p{pod}")
}

/// A policy model pod's: `x/a` is `<id>-xa`.
pub fn model_pod_ns(id: &str, namespace: &str, pod: &str) -> String {
    format!("{id}-{namespace}{pod}")
}

/// A pod added by `lab add-pod`, by its place in the lab's list.
pub fn added_pod_ns(id: &str, k: usize) -> String {
    format!("{id}-q{k}")
}

pub fn pod_name(node: usize, pod: usize) -> String {
    format!("node{node}-pod{pod}")
}

/// The underlay's own namespace: a bridge (flat) or a router (routed).
pub fn underlay_ns(id: &str, shape: Shape) -> String {
    format!("{id}-{}", if shape.routed { "rtr" } else { "fab" })
}

pub fn external_ns(id: &str) -> String {
    format!("{id}-ext")
}

/// The underlay-side name of node i's veth.
pub fn port(i: usize) -> String {
    format!("n{i}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_short() {
        let id = "pl4194304";
        let mut names = vec![underlay_ns(id, Shape::default()), external_ns(id)];
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
        assert!(names.iter().all(|n| n.len() <= 32));
    }

    #[test]
    fn flat_and_routed_addresses() {
        let flat = Shape::default();
        assert_eq!(flat.node(1)[0].addr.to_string(), "192.168.1.2");
        assert_eq!(flat.node(2)[0].addr.to_string(), "192.168.1.3");
        assert_eq!(flat.node(MAX_NODES)[0].addr.to_string(), "192.168.1.251");
        assert_eq!(flat.external()[0].addr.to_string(), "192.168.1.254");
        let routed = Shape {
            routed: true,
            dual_stack: true,
        };
        let n2 = routed.node(2);
        assert_eq!(n2[0].addr.to_string(), "192.168.2.2");
        assert_eq!(n2[0].gateway.unwrap().to_string(), "192.168.2.1");
        assert_eq!(n2[1].addr.to_string(), "fd00:0:0:2::2");
        assert_eq!(routed.external()[1].addr.to_string(), "fd00:0:0:fe::2");
    }
}
