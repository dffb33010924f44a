//! Random NetworkPolicies, deterministic by seed: the property tests'
//! input, and the lab's seeded random runs on the kernel. Selectors use
//! labels `pod` (a, b, c) and `role` (db, web) and namespaces x, y, z, as
//! upstream's model does; ipBlocks fall in the lab's pod network.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

use super::api::{
    EgressRule, IngressRule, IpBlock, Metadata, NetworkPolicy, Peer, PolicyType, Port, PortValue,
    Protocol, Spec,
};
use super::selector::{LabelSelector, Operator, Requirement};

/// A small deterministic generator: every case is its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
    pub fn chance(&mut self, in_four: usize) -> bool {
        self.below(4) < in_four
    }
}

pub const NS: [&str; 3] = ["x", "y", "z"];
pub const NAMES: [&str; 3] = ["a", "b", "c"];

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub fn selector(r: &mut Rng) -> LabelSelector {
    let mut s = LabelSelector::default();
    match r.below(6) {
        0 => {}
        1 => {
            s.match_labels = labels(&[("pod", *r.pick(&NAMES))]);
        }
        2 => {
            s.match_labels = labels(&[("role", *r.pick(&["db", "web"]))]);
        }
        _ => {
            let operator = *r.pick(&[
                Operator::In,
                Operator::NotIn,
                Operator::Exists,
                Operator::DoesNotExist,
            ]);
            let values = match operator {
                Operator::In | Operator::NotIn => [r.pick(&NAMES), r.pick(&NAMES)]
                    .into_iter()
                    .map(|v| (*v).to_owned())
                    .collect(),
                _ => Default::default(),
            };
            s.match_expressions.push(Requirement {
                key: (*r.pick(&["pod", "role"])).to_owned(),
                operator,
                values,
            });
        }
    }
    s
}

pub fn namespace_selector(r: &mut Rng) -> LabelSelector {
    let mut s = LabelSelector::default();
    if r.chance(3) {
        s.match_labels = labels(&[("kubernetes.io/metadata.name", *r.pick(&NS))]);
    }
    s
}

pub fn peer(r: &mut Rng) -> Peer {
    match r.below(4) {
        0 => Peer {
            pod_selector: Some(selector(r)),
            namespace_selector: None,
            ip_block: None,
        },
        1 => Peer {
            pod_selector: None,
            namespace_selector: Some(namespace_selector(r)),
            ip_block: None,
        },
        2 => Peer {
            pod_selector: Some(selector(r)),
            namespace_selector: Some(namespace_selector(r)),
            ip_block: None,
        },
        _ => {
            let net = |a: u8, b: u8, len: u8| {
                IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(10, 244, a, b), len))
            };
            let cidr = *r.pick(&[
                net(0, 0, 16),
                net(1, 0, 24),
                IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 0)),
            ]);
            let except = match r.below(3) {
                0 => vec![],
                _ => vec![net(r.below(3) as u8 + 1, 2 * r.below(3) as u8 + 2, 31)],
            };
            Peer {
                pod_selector: None,
                namespace_selector: None,
                ip_block: Some(IpBlock {
                    cidr,
                    except: except.into_iter().filter(|e| cidr.contains(e)).collect(),
                }),
            }
        }
    }
}

pub fn port(r: &mut Rng) -> Port {
    let protocol = r
        .chance(2)
        .then(|| *r.pick(&[Protocol::TCP, Protocol::UDP, Protocol::SCTP]));
    let (port, end_port) = match r.below(4) {
        0 => (None, None),
        1 => (Some(PortValue::Number(*r.pick(&[80, 81]))), None),
        2 => (Some(PortValue::Number(80)), Some(81)),
        _ => (
            Some(PortValue::Name(format!(
                "serve-{}-{}",
                r.pick(&[80, 81]),
                r.pick(&["tcp", "udp"])
            ))),
            None,
        ),
    };
    Port {
        protocol,
        port,
        end_port,
    }
}

pub fn list<T>(r: &mut Rng, max: usize, mut f: impl FnMut(&mut Rng) -> T) -> Option<Vec<T>> {
    match r.below(4) {
        0 => None,
        _ => Some((0..r.below(max + 1)).map(|_| f(r)).collect()),
    }
}

/// One policy named `name`, in a random namespace; it may be one the API
/// server refuses (validate it).
pub fn policy(r: &mut Rng, name: &str) -> NetworkPolicy {
    let spec = Spec {
        pod_selector: selector(r),
        policy_types: match r.below(4) {
            0 => Some(vec![PolicyType::Ingress]),
            1 => Some(vec![PolicyType::Egress]),
            2 => Some(vec![PolicyType::Ingress, PolicyType::Egress]),
            _ => None,
        },
        ingress: list(r, 2, |r| IngressRule {
            from: list(r, 2, peer),
            ports: list(r, 2, port),
        }),
        egress: list(r, 2, |r| EgressRule {
            to: list(r, 2, peer),
            ports: list(r, 2, port),
        }),
    };
    NetworkPolicy {
        metadata: Metadata {
            name: name.to_owned(),
            namespace: (*r.pick(&NS)).into(),
        },
        spec,
    }
}

/// A pod's labels: `pod`, and sometimes `role`.
pub fn pod_labels(r: &mut Rng) -> BTreeMap<String, String> {
    let mut l = labels(&[("pod", *r.pick(&NAMES))]);
    if r.chance(2) {
        l.insert("role".into(), (*r.pick(&["db", "web"])).into());
    }
    l
}
