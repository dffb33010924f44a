//! The cluster's policies compiled for one node into a flat ruleset: one
//! rule per policy rule (two when it has both numbered and named ports),
//! whatever the number of pods, and sets whose elements follow the pods.
//! Pods entering or leaving a selector change elements, never rules.
//!
//! Two chains, each judging a connection's first packet (replies and
//! related packets pass by connection tracking):
//! - `ingress`, for packets to this node's pods: a destination in no
//!   policy's ingress selection passes; else one of the rules of the
//!   policies selecting it must match;
//! - `egress`, for packets from this node's pods, the same way.
//!
//! [`Ruleset::allows`] evaluates the ruleset purely; the property tests
//! hold it to the model.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::api::{Peer, Policy, Port, PortValue, Protocol, Rule};
use super::model::{Cluster, Pod};

/// One element of a set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    /// An address or prefix (pods are /32 or /128).
    Net(IpNet),
    /// A protocol and port range.
    Ports(Protocol, u16, u16),
    /// A pod's named port: its address, protocol and port.
    Named(IpAddr, Protocol, u16),
}

/// What a rule matches on; each `String` names a set of [`Ruleset::sets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledRule {
    /// The pods its policy selects in this direction (on this node).
    pub selected: String,
    /// The peers it allows (`None`: every peer).
    pub peers: Option<String>,
    /// The ports it allows (`None`: every port and protocol).
    pub ports: Option<PortSet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSet {
    /// Protocol and destination port in a set of [`Element::Ports`].
    Numbered(String),
    /// Destination address, protocol and port in a set of
    /// [`Element::Named`].
    Named(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    /// The node's pods some policy isolates in this direction.
    pub isolated: String,
    pub rules: Vec<CompiledRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub sets: BTreeMap<String, BTreeSet<Element>>,
    pub ingress: Chain,
    pub egress: Chain,
}

/// The first packet of a connection, as the node's hooks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Option<Protocol>,
    pub port: u16,
}

impl Ruleset {
    pub fn rule_count(&self) -> usize {
        self.ingress.rules.len() + self.egress.rules.len()
    }

    pub fn element_count(&self) -> usize {
        self.sets.values().map(BTreeSet::len).sum()
    }

    /// Whether the ingress chain lets `p` reach its destination.
    pub fn ingress_allows(&self, p: &Packet) -> bool {
        self.chain_allows(&self.ingress, p, p.dst, p.src)
    }

    /// Whether the egress chain lets `p` leave its source.
    pub fn egress_allows(&self, p: &Packet) -> bool {
        self.chain_allows(&self.egress, p, p.src, p.dst)
    }

    fn chain_allows(&self, chain: &Chain, p: &Packet, own: IpAddr, peer: IpAddr) -> bool {
        if p.src == p.dst || !self.has(&chain.isolated, &Element::Net(own.into())) {
            return true;
        }
        chain.rules.iter().any(|r| {
            self.has(&r.selected, &Element::Net(own.into()))
                && r.peers.as_ref().is_none_or(|s| self.has_addr(s, peer))
                && r.ports
                    .as_ref()
                    .is_none_or(|ports| self.ports_match(ports, p))
        })
    }

    fn has(&self, set: &str, e: &Element) -> bool {
        self.sets.get(set).is_some_and(|s| s.contains(e))
    }

    /// An interval set's lookup: any prefix holding the address.
    fn has_addr(&self, set: &str, ip: IpAddr) -> bool {
        self.sets.get(set).is_some_and(|s| {
            s.iter()
                .any(|e| matches!(e, Element::Net(n) if n.contains(&ip)))
        })
    }

    fn ports_match(&self, ports: &PortSet, p: &Packet) -> bool {
        let Some(protocol) = p.protocol else {
            return false;
        };
        match ports {
            PortSet::Numbered(set) => self.sets.get(set).is_some_and(|s| {
                s.iter().any(|e| {
                    matches!(e, Element::Ports(proto, lo, hi)
                        if *proto == protocol && (*lo..=*hi).contains(&p.port))
                })
            }),
            PortSet::Named(set) => self.has(set, &Element::Named(p.dst, protocol, p.port)),
        }
    }
}

/// The ruleset of node `node`: its own pods' selections, every pod of the
/// cluster as a peer.
pub fn compile(cluster: &Cluster, node: &str) -> Ruleset {
    let mut out = Ruleset {
        ingress: Chain {
            isolated: "isolated-ingress".into(),
            rules: Vec::new(),
        },
        egress: Chain {
            isolated: "isolated-egress".into(),
            rules: Vec::new(),
        },
        ..Ruleset::default()
    };
    for name in [&out.ingress.isolated, &out.egress.isolated] {
        out.sets.insert(name.clone(), BTreeSet::new());
    }
    let local: Vec<&Pod> = cluster.pods.iter().filter(|p| p.node == node).collect();
    let mut shared = Shared::default();
    for (i, policy) in cluster.policies.iter().enumerate() {
        for (dir, rules) in [("ingress", &policy.ingress), ("egress", &policy.egress)] {
            let Some(rules) = rules else {
                continue;
            };
            let selected: BTreeSet<Element> = local
                .iter()
                .filter(|p| p.namespace == policy.namespace && policy.selector.matches(&p.labels))
                .flat_map(|p| addresses(p))
                .collect();
            let chain_name = format!("p{i}-{dir}");
            let isolated = match dir {
                "ingress" => out.ingress.isolated.clone(),
                _ => out.egress.isolated.clone(),
            };
            out.sets
                .entry(isolated)
                .or_default()
                .extend(selected.iter().cloned());
            out.sets.insert(chain_name.clone(), selected);
            for (j, rule) in rules.iter().enumerate() {
                let compiled = compile_rule(
                    cluster,
                    policy,
                    rule,
                    &format!("p{i}-{dir}-r{j}"),
                    &local,
                    dir == "ingress",
                    &chain_name,
                    &mut shared,
                );
                let chain = match dir {
                    "ingress" => &mut out.ingress.rules,
                    _ => &mut out.egress.rules,
                };
                chain.extend(compiled);
            }
        }
    }
    out.sets.extend(shared.by_name);
    out
}

/// One policy rule: one compiled rule, or two when it has numbered and
/// named ports (the two are ORed).
#[allow(clippy::too_many_arguments)]
fn compile_rule(
    cluster: &Cluster,
    policy: &Policy,
    rule: &Rule,
    name: &str,
    local: &[&Pod],
    ingress: bool,
    selected: &str,
    sets: &mut Shared,
) -> Vec<CompiledRule> {
    let peers = (!rule.peers.is_empty()).then(|| {
        let set = format!("{name}-peers");
        let elements = rule
            .peers
            .iter()
            .flat_map(|p| peer_elements(cluster, policy, p))
            .collect();
        sets.add(set, elements)
    });
    let base = CompiledRule {
        selected: selected.into(),
        peers,
        ports: None,
    };
    if rule.ports.is_empty() {
        return vec![base];
    }
    let (named, numbered): (Vec<&Port>, Vec<&Port>) = rule
        .ports
        .iter()
        .partition(|p| matches!(p.port, Some(PortValue::Name(_))));
    let mut out = Vec::new();
    if !numbered.is_empty() {
        let set = sets.add(
            format!("{name}-ports"),
            numbered.iter().map(|p| port_range(p)).collect(),
        );
        out.push(CompiledRule {
            ports: Some(PortSet::Numbered(set)),
            ..base.clone()
        });
    }
    if !named.is_empty() {
        // Named ports are the destination pod's: for ingress this node's
        // selected pods, for egress any pod of the cluster.
        let destinations: Vec<&Pod> = match ingress {
            true => local.to_vec(),
            false => cluster.pods.iter().collect(),
        };
        let elements = named
            .iter()
            .flat_map(|p| {
                let protocol = p.protocol.unwrap_or(Protocol::TCP);
                let Some(PortValue::Name(wanted)) = &p.port else {
                    return Vec::new();
                };
                destinations
                    .iter()
                    .flat_map(|pod| {
                        pod.ports
                            .iter()
                            .filter(|n| n.name == *wanted && n.protocol == protocol)
                            .flat_map(|n| {
                                pod.ips
                                    .iter()
                                    .map(|ip| Element::Named(*ip, protocol, n.port))
                            })
                    })
                    .collect()
            })
            .collect();
        let set = sets.add(format!("{name}-named"), elements);
        out.push(CompiledRule {
            ports: Some(PortSet::Named(set)),
            ..base
        });
    }
    out
}

/// The rules' sets, each content kept once: policies with the same peers
/// or ports share a set, so elements grow with distinct selections, not
/// with the policies that repeat them.
#[derive(Default)]
struct Shared {
    by_name: BTreeMap<String, BTreeSet<Element>>,
    by_content: BTreeMap<BTreeSet<Element>, String>,
}

impl Shared {
    /// The name to use for `elements`: an earlier set's with the same
    /// content, else `name`. Empty sets are not shared (their kind, which
    /// the rules give, could differ).
    fn add(&mut self, name: String, elements: BTreeSet<Element>) -> String {
        if !elements.is_empty() {
            if let Some(existing) = self.by_content.get(&elements) {
                return existing.clone();
            }
            self.by_content.insert(elements.clone(), name.clone());
        }
        self.by_name.insert(name.clone(), elements);
        name
    }
}

fn addresses(p: &Pod) -> impl Iterator<Item = Element> + '_ {
    p.ips.iter().map(|ip| Element::Net(IpNet::from(*ip)))
}

fn port_range(p: &Port) -> Element {
    let protocol = p.protocol.unwrap_or(Protocol::TCP);
    match (&p.port, p.end_port) {
        (Some(PortValue::Number(start)), Some(end)) => Element::Ports(protocol, *start, end),
        (Some(PortValue::Number(port)), None) => Element::Ports(protocol, *port, *port),
        _ => Element::Ports(protocol, 0, u16::MAX),
    }
}

/// A peer as addresses: its pods', or its block without the excepts.
fn peer_elements(cluster: &Cluster, policy: &Policy, peer: &Peer) -> Vec<Element> {
    if let Some(block) = &peer.ip_block {
        return subtract(block.cidr, &block.except)
            .into_iter()
            .map(Element::Net)
            .collect();
    }
    cluster
        .pods
        .iter()
        .filter(|pod| cluster.selects(policy, peer, pod))
        .flat_map(|p| addresses(p).collect::<Vec<_>>())
        .collect()
}

/// `net` without `except`, as the fewest prefixes.
pub fn subtract(net: IpNet, except: &[IpNet]) -> Vec<IpNet> {
    if except.iter().any(|e| e.contains(&net)) {
        return Vec::new();
    }
    if !except.iter().any(|e| net.contains(e)) {
        return vec![net];
    }
    match net.subnets(net.prefix_len() + 1) {
        Ok(halves) => halves.flat_map(|h| subtract(h, except)).collect(),
        Err(_) => Vec::new(),
    }
}
