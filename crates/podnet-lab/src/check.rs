//! `lab check`: the connectivity matrix. A cell is OK only when a TCP
//! connection succeeded and the receiver saw one of the sender's own
//! addresses (no NAT); pod -> external must instead arrive as the pod's
//! node (masqueraded).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Result, bail};
use ipnet::IpNet;
use podnet_core::ipam::addr::first_host;
use podnet_core::subnet_file::SubnetFile;
use podnet_store::Snapshot;
use podnet_store::Store;
use serde::Serialize;

use crate::probe;
use crate::record::Lab;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    PodToPod,
    NodeToPod,
    PodToNode,
    PodToExternal,
}

/// One probe to run: who sends, to which address, and what the receiver
/// must see as the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub kind: Kind,
    pub from: String,
    pub from_ns: String,
    pub to: String,
    pub to_ip: IpAddr,
    pub expect: BTreeSet<IpAddr>,
}

#[derive(Debug, Serialize)]
pub struct Cell {
    pub kind: Kind,
    pub family: u8,
    pub from: String,
    pub to: String,
    pub to_ip: IpAddr,
    pub seen: Option<IpAddr>,
    pub ok: bool,
    pub error: Option<String>,
    /// The first try could not connect and the second could: said, so a
    /// flaky path shows, but not a failure.
    pub retried: bool,
}

fn of_family(addrs: &[IpAddr], v4: bool) -> Option<IpAddr> {
    addrs.iter().copied().find(|a| a.is_ipv4() == v4)
}

/// Each node's subnets: from its lease, or, where its lease record does
/// not read, from the subnet file its agent wrote.
pub type NodeSubnets = BTreeMap<String, Vec<IpNet>>;

pub fn node_subnets(lab: &Lab, snap: &Snapshot) -> NodeSubnets {
    lab.nodes
        .iter()
        .map(|n| {
            let leased = snap.leases.values().find(|l| l.node == n.name);
            let subnets = match leased {
                Some(l) => l.subnets.clone(),
                None => std::fs::read_to_string(lab.node_dir(&n.name).join("run/subnet.json"))
                    .ok()
                    .and_then(|raw| SubnetFile::parse(&raw).ok())
                    .map(|f| {
                        f.node_subnets
                            .iter()
                            .filter_map(|r| r.subnet.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            (n.name.clone(), subnets)
        })
        .collect()
}

/// Every pair the matrix covers, in every family the lab has, decided
/// from the lab and its nodes' subnets.
pub fn plan(lab: &Lab, subnets: &NodeSubnets) -> Vec<Probe> {
    // A node answers from its underlay address, towards its own pods from
    // its bridge (the gateway: the first host of each subnet), and over
    // vxlan from its device (the subnet's network address).
    let node_addrs = |name: &str, addrs: &[IpAddr]| -> BTreeSet<IpAddr> {
        let mut own: BTreeSet<IpAddr> = subnets
            .get(name)
            .into_iter()
            .flatten()
            .flat_map(|s| [first_host(s), s.network()])
            .collect();
        own.extend(addrs.iter().copied());
        own
    };
    let external: Vec<IpAddr> = lab.shape.external().iter().map(|a| a.addr).collect();
    let families: &[bool] = if lab.shape.dual_stack {
        &[true, false]
    } else {
        &[true]
    };
    let mut out = Vec::new();
    for &v4 in families {
        let probe = |kind,
                     from: &str,
                     from_ns: &str,
                     to: &str,
                     to_ip: Option<IpAddr>,
                     expect: BTreeSet<IpAddr>| {
            to_ip.map(|to_ip| Probe {
                kind,
                from: from.to_owned(),
                from_ns: from_ns.to_owned(),
                to: to.to_owned(),
                to_ip,
                expect,
            })
        };
        for from in &lab.pods {
            let own: BTreeSet<IpAddr> = of_family(&from.ips, v4).into_iter().collect();
            for to in lab.pods.iter().filter(|p| p.name != from.name) {
                out.extend(probe(
                    Kind::PodToPod,
                    &from.name,
                    &from.ns,
                    &to.name,
                    of_family(&to.ips, v4),
                    own.clone(),
                ));
            }
            for node in &lab.nodes {
                out.extend(probe(
                    Kind::PodToNode,
                    &from.name,
                    &from.ns,
                    &node.name,
                    of_family(&node.addrs, v4),
                    own.clone(),
                ));
            }
            // Leaving the cluster, a pod is masqueraded as its node (unless
            // the agents run without masquerade).
            let node_ip = lab
                .nodes
                .iter()
                .find(|n| n.name == from.node)
                .and_then(|n| of_family(&n.addrs, v4));
            out.extend(probe(
                Kind::PodToExternal,
                &from.name,
                &from.ns,
                "external",
                of_family(&external, v4),
                match lab.masquerade {
                    true => node_ip.into_iter().collect(),
                    false => own.clone(),
                },
            ));
        }
        for node in &lab.nodes {
            let own = node_addrs(&node.name, &node.addrs);
            for to in &lab.pods {
                out.extend(probe(
                    Kind::NodeToPod,
                    &node.name,
                    &node.ns,
                    &to.name,
                    of_family(&to.ips, v4),
                    own.clone(),
                ));
            }
        }
    }
    out
}

pub fn run(dir: &Path, json: bool) -> Result<()> {
    let Some(lab) = Lab::load(dir)? else {
        bail!("no lab in {}", dir.display());
    };
    // The matrix does not need the store: without it, the nodes' subnet
    // files say what each node holds.
    let snap = lab
        .with_store(|s| async move { s.list().await })
        .unwrap_or_else(|e| {
            eprintln!("lab check: {e:#}; using the nodes' subnet files");
            Snapshot::default()
        });
    let cells = matrix(&lab, &node_subnets(&lab, &snap))?;
    let failed = cells.iter().filter(|c| !c.ok).count();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": failed == 0,
                "cells": cells,
                "unreadable_records": snap.corrupt,
            }))?
        );
    } else {
        print!("{}", render(&cells));
        for (key, why) in &snap.corrupt {
            println!("unreadable lease record in the store: {key} ({why})");
        }
    }
    if failed > 0 {
        bail!("{failed} of {} probes failed", cells.len());
    }
    Ok(())
}

/// Starts a receiver in every namespace and runs every probe.
pub fn matrix(lab: &Lab, subnets: &NodeSubnets) -> Result<Vec<Cell>> {
    for ns in lab
        .pods
        .iter()
        .map(|p| &p.ns)
        .chain(lab.nodes.iter().map(|n| &n.ns))
        .chain([&lab.external_ns])
    {
        probe::serve(ns)?;
    }
    Ok(plan(lab, subnets)
        .into_iter()
        .map(|p| {
            // A probe that could not connect is tried once more: on a busy
            // machine one lost SYN outlasts the timeout. A wrong source
            // address is never retried: that is a real failure.
            let mut seen = probe::seen_by(&p.from_ns, p.to_ip);
            let retried = seen.is_err();
            if retried {
                seen = probe::seen_by(&p.from_ns, p.to_ip);
            }
            let ok = seen.as_ref().is_ok_and(|s| p.expect.contains(s));
            Cell {
                kind: p.kind,
                family: if p.to_ip.is_ipv4() { 4 } else { 6 },
                from: p.from,
                to: p.to,
                to_ip: p.to_ip,
                seen: seen.as_ref().ok().copied(),
                ok,
                error: seen.err().map(|e| format!("{e:#}")),
                retried,
            }
        })
        .collect())
}

fn render(cells: &[Cell]) -> String {
    let mut out = String::new();
    for kind in [
        Kind::PodToPod,
        Kind::NodeToPod,
        Kind::PodToNode,
        Kind::PodToExternal,
    ] {
        let these: Vec<&Cell> = cells.iter().filter(|c| c.kind == kind).collect();
        let ok = these.iter().filter(|c| c.ok).count();
        out += &format!("{kind:?}: {ok}/{} ok\n", these.len());
        for c in &these {
            let again = if c.retried { ", on the second try" } else { "" };
            let verdict = match (&c.seen, c.ok) {
                (Some(seen), true) => format!("ok (seen as {seen}{again})"),
                (None, true) => "ok".to_owned(),
                (Some(seen), false) => format!("FAIL (seen as {seen})"),
                (None, false) => format!("FAIL ({})", c.error.as_deref().unwrap_or("?")),
            };
            out += &format!(
                "  {:14} -> {:14} {:15} {verdict}\n",
                c.from,
                c.to,
                c.to_ip.to_string()
            );
        }
    }
    let ok = cells.iter().filter(|c| c.ok).count();
    let retried = cells.iter().filter(|c| c.retried && c.ok).count();
    out += &format!("{ok}/{} probes ok", cells.len());
    if retried > 0 {
        out += &format!(" ({retried} on a second try)");
    }
    out += "\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Node, Pod};

    fn lab() -> Lab {
        let node = |i: usize| Node {
            index: i,
            name: format!("node{i}"),
            ns: format!("x-n{i}"),
            addrs: vec![format!("192.168.1.{}", i + 1).parse().unwrap()],
            pid: 0,
        };
        let pod = |n: usize, ip: &str| Pod {
            name: format!("node{n}-pod1"),
            namespace: "lab".into(),
            ns: format!("x-n{n}p1"),
            node: format!("node{n}"),
            ips: vec![ip.parse().unwrap()],
        };
        Lab {
            id: "x".into(),
            dir: "/tmp/x".into(),
            backend: "host-gw".into(),
            shape: Default::default(),
            direct_routing: false,
            pods_per_node: 1,
            masquerade: true,
            underlay_ns: "x-fab".into(),
            external_ns: "x-ext".into(),
            nodes: vec![node(1), node(2)],
            pods: vec![pod(1, "10.244.1.2"), pod(2, "10.244.2.2")],
            etcd: Vec::new(),
            ipam_reclaim_after: None,
            kube: None,
            policy: false,
        }
    }

    #[test]
    fn plan_covers_every_pair_with_the_right_expectation() {
        let leases: NodeSubnets =
            [("node1".to_owned(), vec!["10.244.1.0/24".parse().unwrap()])].into();
        let p = plan(&lab(), &leases);
        let count = |k: Kind| p.iter().filter(|x| x.kind == k).count();
        assert_eq!(count(Kind::PodToPod), 2);
        assert_eq!(count(Kind::NodeToPod), 4);
        assert_eq!(count(Kind::PodToNode), 4);
        assert_eq!(count(Kind::PodToExternal), 2);
        let ext = p
            .iter()
            .find(|x| x.kind == Kind::PodToExternal && x.from == "node2-pod1")
            .unwrap();
        assert_eq!(ext.expect, ["192.168.1.3".parse().unwrap()].into());
        let unmasqueraded = plan(
            &Lab {
                masquerade: false,
                ..lab()
            },
            &leases,
        );
        let ext = unmasqueraded
            .iter()
            .find(|x| x.kind == Kind::PodToExternal && x.from == "node2-pod1")
            .unwrap();
        assert_eq!(ext.expect, ["10.244.2.2".parse().unwrap()].into());
        let local = p
            .iter()
            .find(|x| x.kind == Kind::NodeToPod && x.from == "node1")
            .unwrap();
        assert!(local.expect.contains(&"10.244.1.1".parse().unwrap()));
    }
}
