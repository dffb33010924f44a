//! Upstream's NetworkPolicy model for the ported e2e cases
//! ([`crate::netpol_cases`]): its 9 pods as podnet's [`Cluster`], the
//! expected truth table from a step's operations, and the matrices side by
//! side with their differences.

use std::net::{IpAddr, Ipv4Addr};

use podnet_core::policy::matrix;
pub use podnet_core::policy::matrix::Table;
use podnet_core::policy::{Cluster, NamedPort, NetworkPolicy, Pod, PolicyError, Protocol};

use crate::netpol_cases::{Expect, Relabel, Sel, Step};

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];
pub const PORTS: [u16; 2] = [80, 81];

/// Pod `p` of namespace `n`'s address, as the cases' ipBlocks assume.
pub fn address(n: usize, p: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 250, n as u8, p as u8 + 2)
}

pub fn ids() -> Vec<String> {
    NAMESPACES
        .iter()
        .flat_map(|n| PODS.iter().map(move |p| format!("{n}/{p}")))
        .collect()
}

pub fn protocol(name: &str) -> Protocol {
    match name {
        "UDP" => Protocol::UDP,
        "SCTP" => Protocol::SCTP,
        _ => Protocol::TCP,
    }
}

/// The model with `relabel` applied and `policies` in effect; pods spread
/// over `nodes` nodes (`node1`, `node2`, ...).
pub fn cluster(relabel: &[Relabel], policies: &str, nodes: usize) -> Result<Cluster, PolicyError> {
    let mut c = Cluster::default();
    for (n, ns) in NAMESPACES.iter().enumerate() {
        c.namespaces.insert(
            (*ns).into(),
            [("kubernetes.io/metadata.name".to_owned(), (*ns).to_owned())].into(),
        );
        for (p, name) in PODS.iter().enumerate() {
            let ports = PORTS
                .iter()
                .flat_map(|port| {
                    [
                        (Protocol::TCP, "tcp"),
                        (Protocol::UDP, "udp"),
                        (Protocol::SCTP, "sctp"),
                    ]
                    .map(|(protocol, proto)| NamedPort {
                        name: format!("serve-{port}-{proto}"),
                        port: *port,
                        protocol,
                    })
                })
                .collect();
            c.pods.push(Pod {
                namespace: (*ns).into(),
                name: (*name).into(),
                node: format!("node{}", 1 + (n * 3 + p) % nodes.max(1)),
                labels: [("pod".to_owned(), (*name).to_owned())].into(),
                ips: vec![IpAddr::V4(address(n, p))],
                ports,
            });
        }
    }
    for (kind, name, key, value) in relabel {
        let labels = match *kind {
            "namespace" => c.namespaces.get_mut(*name),
            _ => c
                .pods
                .iter_mut()
                .find(|p| format!("{}/{}", p.namespace, p.name) == *name)
                .map(|p| &mut p.labels),
        };
        let Some(labels) = labels else {
            continue;
        };
        match value {
            Some(v) => labels.insert((*key).into(), (*v).into()),
            None => labels.remove(*key),
        };
    }
    c.policies = NetworkPolicy::parse_all(policies)?;
    Ok(c)
}

fn covers(sel: &Sel, id: &str) -> bool {
    let (ns, pod) = id.split_once('/').unwrap_or((id, ""));
    sel.namespace.is_none_or(|n| n == ns) && sel.pod.is_none_or(|p| p == pod)
}

/// Upstream's expected table: its operations applied in order.
pub fn expected(step: &Step) -> Table {
    let ids = ids();
    let mut t: Table = ids
        .iter()
        .flat_map(|f| {
            ids.iter()
                .map(move |to| ((f.clone(), to.clone()), step.default))
        })
        .collect();
    for e in step.expect {
        for ((from, to), cell) in t.iter_mut() {
            let hit = match e {
                Expect::Peer(a, b, _) | Expect::One(a, b, _) => covers(a, from) && covers(b, to),
                Expect::AllIngress(b, _) => covers(b, to),
                Expect::AllEgress(a, _) => covers(a, from),
            };
            if hit {
                *cell = match e {
                    Expect::Peer(.., v)
                    | Expect::One(.., v)
                    | Expect::AllIngress(_, v)
                    | Expect::AllEgress(_, v) => *v,
                };
            }
        }
    }
    t
}

/// The model's table for `protocol` and `port`.
pub fn model_table(c: &Cluster, protocol: Protocol, port: u16) -> Table {
    matrix::model(c, &ids(), protocol, port)
}

/// A table filled by `cell(from, to)`.
pub fn table(cell: impl FnMut(&str, &str) -> bool) -> Table {
    matrix::fill(&ids(), cell)
}

/// `None` if `observed` agrees with `expected` (loopback aside), else a
/// report headed by `what`: how many cells differ, and both tables.
pub fn compare(what: &str, expected: &Table, observed: &Table) -> Option<String> {
    let diff = matrix::differences(expected, observed);
    (!diff.is_empty()).then(|| {
        format!(
            "{what}: {} cells differ\n{}",
            diff.len(),
            matrix::render(&ids(), expected, observed)
        )
    })
}
