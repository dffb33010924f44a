//! `podnetctl bench policy`: NetworkPolicy at scale, for one node. A
//! synthetic cluster (by default 10,000 pods, 110 of them on the node,
//! 100 namespaces, 1000 policies) is compiled for the node and written as
//! its table into a throwaway namespace; then one pod's label changes,
//! and the node's ruleset is compiled and updated. Prints the rule count,
//! the set elements, this process's RSS, and the medians. Then, on labs
//! (`lab`), the time from a change to enforcement and the datapath cost.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use podnet_core::policy::compile::compile;
use podnet_core::policy::{Cluster, NamedPort, NetworkPolicy, Pod, Protocol};
use podnet_linux::netns::NamedNetns;

use super::stats::{Summary, ms};
use crate::inside::in_ns;

mod lab;

pub struct Options {
    pub pods: usize,
    pub on_node: usize,
    pub namespaces: usize,
    pub policies: usize,
    pub rounds: usize,
    /// Nodes of the lab the time to enforcement is measured on (0: skip
    /// the lab phases).
    pub lab_nodes: usize,
    /// The lab's store: `file`, `etcd` or `kube` (the emulated API).
    pub store: String,
    /// Datapath pairs per state, and seconds per run.
    pub pairs: usize,
    pub seconds: u64,
}

pub fn run(opts: Options) -> Result<()> {
    println!(
        "podnetctl bench policy: {} pods ({} on the node), {} namespaces, {} policies, {} round(s)",
        opts.pods, opts.on_node, opts.namespaces, opts.policies, opts.rounds
    );
    let started = Instant::now();
    let (mut cluster, yaml) = synthetic(&opts)?;
    println!(
        "  cluster made and its policies parsed in {:.0} ms",
        ms(started.elapsed())
    );
    let ns = NamedNetns::create(&format!("pbpol{}", std::process::id()))?;
    let path = format!("/var/run/netns/{}", ns.name());
    let (mut compiles, mut writes, mut changes) = (Vec::new(), Vec::new(), Vec::new());
    let (mut last, mut updates) = (None, None);
    for round in 0..opts.rounds.max(1) {
        let t = Instant::now();
        let ruleset = compile(&cluster, "node1");
        compiles.push(t.elapsed());
        let t = Instant::now();
        in_ns(&path, || podnet_linux::nft::policy::write(&ruleset))??;
        writes.push(t.elapsed());
        // One label change: a pod on the node moves into or out of the
        // app its namespace's policies select (namespace n's select
        // a{n % 20}).
        let pod = &mut cluster.pods[round % opts.on_node.max(1)];
        let selected = format!("a{}", pod.namespace[2..].parse::<usize>()? % 20);
        let app = match pod.labels.get("app") == Some(&selected) {
            true => "elsewhere".to_owned(),
            false => selected,
        };
        pod.labels.insert("app".into(), app);
        let t = Instant::now();
        let changed = compile(&cluster, "node1");
        let how = in_ns(&path, || {
            podnet_linux::nft::policy::update(&ruleset, &changed)
        })??;
        changes.push(t.elapsed());
        updates = Some(how);
        last = Some(changed);
    }
    let ruleset = last.context("no round ran")?;
    let show = |name: &str, v: &[Duration], target: Option<f64>| {
        if let Some(s) = Summary::of(v) {
            let verdict = match target {
                Some(t) if ms(s.median) < t => format!("  (target < {t} ms: met)"),
                Some(t) => format!("  (target < {t} ms: MISSED)"),
                None => String::new(),
            };
            println!(
                "  {name:38} median {:8.1} ms  (min {:.1}, max {:.1}){verdict}",
                ms(s.median),
                ms(s.min),
                ms(s.max)
            );
        }
    };
    println!(
        "  ruleset: {} rules, {} set elements, {} sets",
        ruleset.rule_count(),
        ruleset.element_count(),
        ruleset.sets.len()
    );
    show("compile the node's ruleset", &compiles, Some(200.0));
    show("write it (one nft transaction)", &writes, None);
    show("one label change: compile and update", &changes, None);
    if let Some(how) = updates {
        println!("    (the update: {how:?})");
    }
    println!(
        "  RSS of this process (the state an agent would hold): {:.1} MiB",
        rss_mib("self")?
    );
    drop(ns);
    if opts.lab_nodes > 0 {
        let (cluster, _) = synthetic(&opts)?;
        lab::agent_rss(&cluster, &yaml)?;
        lab::enforcement(opts.lab_nodes, opts.rounds, &opts.store)?;
        lab::datapath(opts.policies, opts.pairs, opts.seconds)?;
    }
    Ok(())
}

/// A cluster shaped like a shared one: every namespace's pods in 20 apps,
/// a front and a back tier, 10 teams of namespaces; policies that select
/// an app, allowing its namespace's front tier, another team's front
/// tier, or an address block, on a port or a named port.
fn synthetic(o: &Options) -> Result<(Cluster, String)> {
    let mut c = Cluster::default();
    for n in 0..o.namespaces {
        c.namespaces.insert(
            format!("ns{n}"),
            [
                ("kubernetes.io/metadata.name".to_owned(), format!("ns{n}")),
                ("team".to_owned(), format!("t{}", n % 10)),
            ]
            .into(),
        );
    }
    for i in 0..o.pods {
        let node = if i < o.on_node {
            "node1".into()
        } else {
            format!("node{}", 2 + i % 90)
        };
        c.pods.push(Pod {
            namespace: format!("ns{}", i % o.namespaces.max(1)),
            name: format!("p{i}"),
            node,
            labels: [
                (
                    "app".to_owned(),
                    format!("a{}", (i / o.namespaces.max(1)) % 20),
                ),
                (
                    "tier".to_owned(),
                    if i % 2 == 0 { "front" } else { "back" }.to_owned(),
                ),
            ]
            .into(),
            ips: vec![format!("10.{}.{}.{}", 128 + i / 65536, (i / 256) % 256, i % 256).parse()?],
            ports: vec![NamedPort {
                name: "http".into(),
                port: 8080,
                protocol: Protocol::TCP,
            }],
        });
    }
    let mut yaml = String::new();
    for k in 0..o.policies {
        let ns = k % o.namespaces.max(1);
        let peer = match k % 4 {
            0 | 1 => "podSelector: {matchLabels: {tier: front}}".to_owned(),
            2 => format!(
                "namespaceSelector: {{matchLabels: {{team: t{}}}}}\n      podSelector: {{matchLabels: {{tier: front}}}}",
                k % 10
            ),
            _ => "ipBlock: {cidr: 10.128.0.0/9, except: [10.128.0.0/24]}".to_owned(),
        };
        let port = if k % 3 == 0 { "http" } else { "80" };
        yaml += &format!(
            "---\nkind: NetworkPolicy\nmetadata: {{name: np{k}, namespace: ns{ns}}}\nspec:\n  podSelector: {{matchLabels: {{app: a{}}}}}\n  ingress:\n  - from:\n    - {peer}\n    ports: [{{port: {port}}}]\n",
            k % 20
        );
    }
    c.policies = NetworkPolicy::parse_all(&yaml)?;
    Ok((c, yaml))
}

/// A process's resident memory (`self`: this one), in MiB.
fn rss_mib(pid: impl std::fmt::Display) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kb / 1024.0)
}
