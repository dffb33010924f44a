//! Which connections the cluster's policies allow: the semantics of
//! `networking.k8s.io/v1`, written for clarity, not speed. A connection
//! needs its source's egress and its destination's ingress to allow it;
//! a pod is isolated in a direction once any policy of its namespace
//! selects it for that direction, and then allowed what the union of
//! those policies' rules allows. Replies and related packets follow the
//! connection, so only its first packet is judged here.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::api::{Peer, Policy, Port, PortValue, Protocol, Rule};
use super::selector::Labels;

/// A container port a pod declares: named ports resolve against these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub labels: Labels,
    pub ips: Vec<IpAddr>,
    pub ports: Vec<NamedPort>,
}

/// What policy reads of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// Namespaces by name, with their labels.
    pub namespaces: BTreeMap<String, Labels>,
    pub pods: Vec<Pod>,
    pub policies: Vec<Policy>,
}

/// One end of a connection, with the address it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    Pod(&'a Pod, IpAddr),
    /// A node, by name: it always reaches its own pods (kubelet's probes).
    Node(&'a str, IpAddr),
    /// Anything else: only ipBlock peers match it.
    External(IpAddr),
}

/// The first packet of a connection. `protocol: None` is one without
/// ports (ICMP): only rules without ports allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection<'a> {
    pub src: Endpoint<'a>,
    pub dst: Endpoint<'a>,
    pub protocol: Option<Protocol>,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

impl Endpoint<'_> {
    fn ip(&self) -> IpAddr {
        match *self {
            Endpoint::Pod(_, ip) | Endpoint::Node(_, ip) | Endpoint::External(ip) => ip,
        }
    }

    fn pod(&self) -> Option<&Pod> {
        match self {
            Endpoint::Pod(p, _) => Some(p),
            _ => None,
        }
    }
}

impl Cluster {
    /// Whether the policies allow `c`.
    pub fn allows(&self, c: &Connection<'_>) -> bool {
        if let (Some(a), Some(b)) = (c.src.pod(), c.dst.pod())
            && a == b
        {
            return true; // a pod always reaches itself
        }
        let egress = c
            .src
            .pod()
            .is_none_or(|src| self.direction_allows(src, Direction::Egress, &c.dst, c));
        let ingress = match (c.dst.pod(), c.src) {
            (None, _) => true,
            (Some(dst), Endpoint::Node(node, _)) if node == dst.node => true,
            (Some(dst), _) => self.direction_allows(dst, Direction::Ingress, &c.src, c),
        };
        egress && ingress
    }

    /// Whether `pod`'s policies for `dir` let it talk with `peer`.
    fn direction_allows(
        &self,
        pod: &Pod,
        dir: Direction,
        peer: &Endpoint<'_>,
        c: &Connection<'_>,
    ) -> bool {
        let mut isolated = false;
        for policy in self.selecting(pod) {
            let rules = match dir {
                Direction::Ingress => &policy.ingress,
                Direction::Egress => &policy.egress,
            };
            let Some(rules) = rules else {
                continue;
            };
            isolated = true;
            if rules.iter().any(|r| self.rule_allows(policy, r, peer, c)) {
                return true;
            }
        }
        !isolated
    }

    /// The policies of `pod`'s namespace whose podSelector selects it.
    pub fn selecting<'a>(&'a self, pod: &'a Pod) -> impl Iterator<Item = &'a Policy> + 'a {
        self.policies
            .iter()
            .filter(move |p| p.namespace == pod.namespace && p.selector.matches(&pod.labels))
    }

    fn rule_allows(
        &self,
        policy: &Policy,
        rule: &Rule,
        peer: &Endpoint<'_>,
        c: &Connection<'_>,
    ) -> bool {
        let peer_ok = rule.peers.is_empty()
            || rule
                .peers
                .iter()
                .any(|p| self.peer_matches(policy, p, peer));
        // Named ports are the destination pod's, in either direction.
        let port_ok = rule.ports.is_empty() || rule.ports.iter().any(|p| port_matches(p, c));
        peer_ok && port_ok
    }

    fn peer_matches(&self, policy: &Policy, peer: &Peer, at: &Endpoint<'_>) -> bool {
        if let Some(block) = &peer.ip_block {
            let ip = at.ip();
            return block.cidr.contains(&ip) && !block.except.iter().any(|e| e.contains(&ip));
        }
        // Selectors select pods only.
        at.pod().is_some_and(|pod| self.selects(policy, peer, pod))
    }

    /// Whether a selector peer of `policy` selects `pod`: its namespace by
    /// the namespaceSelector (absent: the policy's own), and its labels by
    /// the podSelector (absent: every pod).
    pub fn selects(&self, policy: &Policy, peer: &Peer, pod: &Pod) -> bool {
        let namespace_ok = match &peer.namespace_selector {
            Some(s) => self
                .namespaces
                .get(&pod.namespace)
                .is_some_and(|labels| s.matches(labels)),
            None => pod.namespace == policy.namespace,
        };
        namespace_ok
            && peer
                .pod_selector
                .as_ref()
                .is_none_or(|s| s.matches(&pod.labels))
    }
}

fn port_matches(p: &Port, c: &Connection<'_>) -> bool {
    let Some(protocol) = c.protocol else {
        return false;
    };
    if p.protocol.unwrap_or(Protocol::TCP) != protocol {
        return false;
    }
    match &p.port {
        None => true,
        Some(PortValue::Number(start)) => match p.end_port {
            Some(end) => (*start..=end).contains(&c.port),
            None => *start == c.port,
        },
        Some(PortValue::Name(name)) => c.dst.pod().is_some_and(|dst| {
            dst.ports
                .iter()
                .any(|n| n.name == *name && n.protocol == protocol && n.port == c.port)
        }),
    }
}
