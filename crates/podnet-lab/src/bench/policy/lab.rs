//! `bench policy` on a lab: the time from a change in the store to its
//! enforcement (new connections flipping from allowed to denied, and
//! every node's podnetd reporting the change in place), and the datapath
//! cost of policy between two pods.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use podnet_core::policy::Cluster;
use podnet_core::policy::node::{Applied, STATE_FILE};
use podnet_core::policy::source::{Kind, NamespaceRecord, PodRecord, PortRecord};
use podnet_store::records::{self, Doomed, RecordStore};

use super::super::datapath::{self, Probe, Samples};
use super::super::stats::{Summary, ms, paired_ratio};
use crate::inside::in_ns;
use crate::policy::wait_enforced;
use crate::record::{Lab, Pod};
use crate::topology::Shape;
use crate::up;

/// A lab for one phase, brought down whatever happens in `f`.
fn with_lab<T>(nodes: usize, opts: LabKind<'_>, f: impl FnOnce(&Lab) -> Result<T>) -> Result<T> {
    let work = tempfile::tempdir()?;
    let dir = work.path().join("lab");
    up::up(up::UpOptions {
        dir: dir.clone(),
        lease_ttl: None,
        nodes,
        pods_per_node: 1,
        backend: "host-gw".into(),
        direct_routing: false,
        shape: Shape::default(),
        masquerade: true,
        etcd: opts.store == "etcd",
        kube: opts.store == "kube",
        ipam_reclaim_after: None,
        policy: true,
        policy_model: opts.model,
    })?;
    let result = Lab::load(&dir)
        .and_then(|lab| lab.ok_or_else(|| anyhow!("the lab vanished")))
        .and_then(|lab| f(&lab));
    up::down(&dir)?;
    result
}

#[derive(Clone, Copy)]
struct LabKind<'a> {
    model: bool,
    store: &'a str,
}

fn pod<'a>(lab: &'a Lab, id: &str) -> Result<&'a Pod> {
    lab.pods
        .iter()
        .find(|p| p.id() == id)
        .ok_or_else(|| anyhow!("no pod {id}"))
}

fn apply(lab: &Lab, yaml: &str) -> Result<()> {
    let yaml = yaml.to_owned();
    lab.with_writer(|s| async move { records::apply_policies(&s, &yaml).await })
        .map(drop)
}

fn delete_all(lab: &Lab) -> Result<()> {
    lab.with_writer(|s| async move { records::delete_policies(&s, &Doomed::All).await })
        .map(drop)
}

/// From `from` to `to` port 80: polls new connections until one is not
/// made; how long after `since` that was.
fn flipped(from: &Pod, to: &Pod, since: Instant) -> Result<Duration> {
    const CAP: Duration = Duration::from_secs(10);
    let target = SocketAddr::new(to.ips[0], 80);
    in_ns(&format!("/var/run/netns/{}", from.ns), || {
        while since.elapsed() < CAP {
            if TcpStream::connect_timeout(&target, Duration::from_millis(20)).is_err() {
                return Ok(since.elapsed());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        bail!("{} -> {} still connects after {CAP:?}", from.id(), to.id())
    })?
}

/// The change's time to enforcement: the last pair to flip, and the last
/// node to report it in place.
fn timed(
    lab: &Lab,
    pairs: &[(&Pod, &Pod)],
    change: impl FnOnce() -> Result<()>,
) -> Result<[Duration; 2]> {
    change()?;
    let since = Instant::now();
    let flips = std::thread::scope(|s| {
        let probes: Vec<_> = pairs
            .iter()
            .map(|(from, to)| s.spawn(move || flipped(from, to, since)))
            .collect();
        probes
            .into_iter()
            .map(|p| p.join().map_err(|_| anyhow!("probe panicked"))?)
            .collect::<Result<Vec<Duration>>>()
    })?;
    wait_enforced(lab)?;
    let reported = since.elapsed();
    Ok([flips.into_iter().max().unwrap_or_default(), reported])
}

/// podnetd's own RSS holding the synthetic cluster: a 1-node lab whose
/// store is given every namespace, pod (110 of them on its node) and
/// policy as records, with policy in place.
pub fn agent_rss(cluster: &Cluster, policies: &str) -> Result<()> {
    let kind = LabKind {
        model: false,
        store: "file",
    };
    with_lab(1, kind, |lab| {
        let node = lab.nodes.first().ok_or_else(|| anyhow!("no node"))?;
        let idle = super::rss_mib(node.pid)?;
        let mut items: Vec<(String, Vec<u8>)> = Vec::new();
        for (name, labels) in &cluster.namespaces {
            let r = NamespaceRecord {
                name: name.clone(),
                labels: labels.clone(),
            };
            items.push((Kind::Namespace.key(name, name), serde_json::to_vec(&r)?));
        }
        for p in &cluster.pods {
            let r = PodRecord {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                // The synthetic node1 is the lab's node.
                node: p.node.clone(),
                labels: p.labels.clone(),
                ips: p.ips.clone(),
                ports: p
                    .ports
                    .iter()
                    .map(|n| PortRecord {
                        name: n.name.clone(),
                        port: n.port,
                        protocol: n.protocol,
                    })
                    .collect(),
            };
            items.push((
                Kind::Pod.key(&p.namespace, &p.name),
                serde_json::to_vec(&r)?,
            ));
        }
        let started = Instant::now();
        let policies = policies.to_owned();
        lab.with_writer(|s| async move {
            for (key, value) in &items {
                s.put_record(key, value).await?;
            }
            records::apply_policies(&s, &policies).await
        })?;
        let written = started.elapsed();
        let took = wait_enforced(lab)?;
        let state: Applied = serde_json::from_slice(&std::fs::read(
            lab.node_dir(&node.name).join("run").join(STATE_FILE),
        )?)?;
        println!();
        println!(
            "podnetd with the cluster's records ({} pods, {} policies; written in {:.1} s, in place {:.1} s later): \
             {} rules, {} elements",
            cluster.pods.len(),
            cluster.policies.len(),
            written.as_secs_f64(),
            took.as_secs_f64(),
            state.rules,
            state.elements
        );
        let rss = super::rss_mib(node.pid)?;
        println!(
            "  podnetd RSS: {idle:.1} MiB idle, {rss:.1} MiB with it (target < 100 MiB: {})",
            if rss < 100.0 { "met" } else { "MISSED" }
        );
        Ok(())
    })
}

/// Time from a change to enforcement on a lab of `nodes` nodes with the
/// policy model: a policy change (default deny into x), and a label
/// change (y/a no longer the peer x admits).
pub fn enforcement(nodes: usize, rounds: usize, store: &str) -> Result<()> {
    let kind = LabKind { model: true, store };
    with_lab(nodes, kind, |lab| {
        let into_x: Vec<(&Pod, &Pod)> = ["a", "b", "c"]
            .iter()
            .map(|p| Ok((pod(lab, &format!("y/{p}"))?, pod(lab, &format!("x/{p}"))?)))
            .collect::<Result<_>>()?;
        let deny =
            "kind: NetworkPolicy\nmetadata: {namespace: x, name: deny}\nspec: {podSelector: {}}\n";
        let admit_a = "kind: NetworkPolicy\nmetadata: {namespace: x, name: admit-a}\nspec:\n  \
                       podSelector: {}\n  ingress: [{from: [{namespaceSelector: {}, podSelector: \
                       {matchLabels: {pod: a}}}]}]\n";
        let from_ya: Vec<(&Pod, &Pod)> = into_x.iter().map(|(_, to)| (into_x[0].0, *to)).collect();
        let (mut policy, mut label) = (Vec::new(), Vec::new());
        for _ in 0..rounds.max(1) {
            delete_all(lab)?;
            wait_enforced(lab)?;
            policy.push(timed(lab, &into_x, || apply(lab, deny))?);
            delete_all(lab)?;
            apply(lab, admit_a)?;
            crate::policy::relabel(lab, "pods/y/a", &[("pod", Some("a"))])?;
            wait_enforced(lab)?;
            label.push(timed(lab, &from_ya, || {
                crate::policy::relabel(lab, "pods/y/a", &[("pod", Some("q"))])
            })?);
        }
        println!();
        println!(
            "time from the change in the store ({}) to enforcement, {nodes}-node lab, {} rounds",
            match store {
                "file" => "file, polled every 100 ms",
                "kube" => "the emulated Kubernetes API",
                other => other,
            },
            policy.len()
        );
        let target = if store == "file" { 200.0 } else { 100.0 };
        for (what, samples) in [("a policy change", &policy), ("a label change", &label)] {
            for (i, how) in [
                "last new connection denied",
                "last node reports it in place",
            ]
            .iter()
            .enumerate()
            {
                let v: Vec<Duration> = samples.iter().map(|s| s[i]).collect();
                if let Some(s) = Summary::of(&v) {
                    println!(
                        "  {what:16} {how:30} median {:6.1} ms  p95 {:6.1} ms  (target p95 < {target} ms: {})",
                        ms(s.median),
                        ms(s.p95),
                        if ms(s.p95) < target { "met" } else { "MISSED" }
                    );
                }
            }
        }
        Ok(())
    })
}

/// Throughput and latency between two pods on two nodes: with no policy,
/// with `unrelated` policies that select neither, and with one that
/// allows them; in rotating order, pair by pair.
pub fn datapath(unrelated: usize, pairs: usize, seconds: u64) -> Result<()> {
    let kind = LabKind {
        model: false,
        store: "file",
    };
    with_lab(2, kind, |lab| {
        let (a, b) = (pod(lab, "lab/node1-pod1")?, pod(lab, "lab/node2-pod1")?);
        let path = datapath::Path {
            from: a.ns.clone(),
            to_ns: b.ns.clone(),
            to_ip: b.ips[0].to_string(),
        };
        let probe = Probe {
            seconds: seconds.to_string(),
            cpu: datapath::last_usable_cpu()?.to_string(),
        };
        let mut others = String::new();
        for k in 0..unrelated {
            others += &format!(
                "---\nkind: NetworkPolicy\nmetadata: {{namespace: team{}, name: np{k}}}\n\
                 spec:\n  podSelector: {{matchLabels: {{app: a{}}}}}\n  ingress: [{{from: \
                 [{{podSelector: {{matchLabels: {{tier: front}}}}}}], ports: [{{port: 8080}}]}}]\n",
                k % 10,
                k % 20
            );
        }
        let allow = "kind: NetworkPolicy\nmetadata: {namespace: lab, name: allow}\nspec:\n  \
                     podSelector: {matchLabels: {pod: node2-pod1}}\n  ingress: [{from: \
                     [{podSelector: {matchLabels: {pod: node1-pod1}}}]}]\n";
        let states: [(&str, String); 3] = [
            ("no policy", String::new()),
            ("unrelated", others),
            ("one allowing", allow.to_owned()),
        ];
        let _servers = datapath::serve(&path, &probe)?;
        let mut samples: [Samples; 3] = Default::default();
        for i in 0..pairs.max(1) {
            for k in (0..3).map(|k| (k + i) % 3) {
                delete_all(lab)?;
                if !states[k].1.is_empty() {
                    apply(lab, &states[k].1)?;
                }
                wait_enforced(lab)?;
                datapath::measure(&path, &probe, &mut samples[k])?;
            }
        }
        delete_all(lab)?;
        println!();
        println!(
            "datapath with policy, cross-node host-gw, masquerade and guard on, {} pair(s) of {seconds} s",
            pairs.max(1)
        );
        let base = &samples[0];
        println!(
            "  {:32} {:6.2} Gbit/s  {:6.1} us",
            states[0].0,
            super::super::stats::median_rate(&base.gbps),
            super::super::stats::median_rate(&base.usec)
        );
        for (k, target) in [(1, 0.97), (2, 0.95)] {
            let s = &samples[k];
            let tput = paired_ratio(&s.gbps, &base.gbps).median;
            let lat = paired_ratio(&base.usec, &s.usec).median;
            println!(
                "  {:32} {:6.2} Gbit/s  {:6.1} us   vs none: throughput {tput:.3}, latency {lat:.3}  (target >= {target}: {})",
                if k == 1 {
                    format!("{unrelated} policies selecting neither")
                } else {
                    states[k].0.to_owned()
                },
                super::super::stats::median_rate(&s.gbps),
                super::super::stats::median_rate(&s.usec),
                if tput >= target && lat >= target {
                    "met"
                } else {
                    "MISSED"
                }
            );
        }
        Ok(())
    })
}
