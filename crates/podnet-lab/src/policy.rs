//! NetworkPolicy in the lab: the records of its pods and namespaces (the
//! lab is "whoever runs the pods"), upstream's e2e model, policies and
//! labels changed in its store with enforcement awaited on every node,
//! and `lab check --policy`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
pub use podnet_core::policy::Protocol;
use podnet_core::policy::matrix::{self, Table};
use podnet_core::policy::node::{Applied, STATE_FILE, digest};
pub use podnet_core::policy::source::Kind;
use podnet_core::policy::source::{self, NamespaceRecord, PodRecord, PortRecord};
use podnet_store::records::{self, Doomed, RecordStore};
use serde::Serialize;

use crate::inside::in_ns;
use crate::plumbing::sibling;
use crate::record::{Lab, Pod};

/// Upstream's model: namespaces x, y, z with pods a, b, c each, serving
/// TCP and UDP on 80 and 81.
pub const MODEL_NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const MODEL_PODS: [&str; 3] = ["a", "b", "c"];
pub const PORTS: [u16; 2] = [80, 81];
pub const PROTOCOLS: [Protocol; 2] = [Protocol::TCP, Protocol::UDP];
/// How long a probe waits: a denied one is dropped, so it always waits.
const PROBE: Duration = Duration::from_millis(300);
/// How long a change may take to be in place on every node.
const ENFORCE_CAP: Duration = Duration::from_secs(30);

fn lab_in(dir: &Path) -> Result<Lab> {
    Lab::load(dir)?.ok_or_else(|| anyhow!("no lab in {}", dir.display()))
}

/// The model's named ports: `serve-80-tcp`, `serve-80-udp`, ...
pub fn model_ports() -> Vec<PortRecord> {
    PORTS
        .iter()
        .flat_map(|&port| {
            PROTOCOLS.map(|protocol| PortRecord {
                name: format!("serve-{port}-{}", format!("{protocol:?}").to_lowercase()),
                port,
                protocol,
            })
        })
        .collect()
}

fn put<T: Serialize>(lab: &Lab, key: &str, record: &T) -> Result<()> {
    let value = serde_json::to_vec(record)?;
    lab.with_writer(|s| async move { s.put_record(key, &value).await })
}

pub fn put_pod(lab: &Lab, record: &PodRecord) -> Result<()> {
    put(lab, &Kind::Pod.key(&record.namespace, &record.name), record)
}

pub fn put_namespace(lab: &Lab, name: &str) -> Result<()> {
    let record = NamespaceRecord {
        name: name.to_owned(),
        labels: [(source::NAME_LABEL.to_owned(), name.to_owned())].into(),
    };
    put(lab, &Kind::Namespace.key(name, name), &record)
}

/// Writes namespace `name`'s record unless it has one.
pub fn ensure_namespace(lab: &Lab, name: &str) -> Result<()> {
    let key = Kind::Namespace.key(name, name);
    let records = lab.with_store(|s| async move { s.records().await })?;
    match records.items.contains_key(&key) {
        true => Ok(()),
        false => put_namespace(lab, name),
    }
}

/// Starts the model's servers in pod namespace `ns`: `podnetctl lab
/// serve-pod`, in its own process group, stopped with the namespace.
pub fn start_servers(ns: &str) -> Result<()> {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(sibling("podnetctl")?)
        .args(["lab", "serve-pod"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("start the pod's servers")?;
    Ok(())
}

/// `lab serve-pod`: TCP (accept, close) and UDP (answer every datagram)
/// on the model's ports, both families, until killed.
pub fn serve_pod() -> Result<()> {
    let mut threads = Vec::new();
    for port in PORTS {
        let tcp = TcpListener::bind(("::", port)).with_context(|| format!("TCP {port}"))?;
        threads.push(std::thread::spawn(move || {
            for conn in tcp.incoming() {
                drop(conn);
            }
        }));
        let udp = UdpSocket::bind(("::", port)).with_context(|| format!("UDP {port}"))?;
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(&buf[..n], from);
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Waits until every node's podnetd has the store's current records in
/// place; the time it took.
pub fn wait_enforced(lab: &Lab) -> Result<Duration> {
    let started = Instant::now();
    let want = digest(&lab.with_store(|s| async move { s.records().await })?.items);
    let mut behind: Vec<&str> = lab.nodes.iter().map(|n| n.name.as_str()).collect();
    while !behind.is_empty() {
        behind.retain(|node| {
            let state = std::fs::read(lab.node_dir(node).join("run").join(STATE_FILE));
            state
                .ok()
                .and_then(|b| serde_json::from_slice::<Applied>(&b).ok())
                .is_none_or(|a| a.digest != want)
        });
        if started.elapsed() > ENFORCE_CAP {
            bail!(
                "not in place within {ENFORCE_CAP:?} on {}: see their podnetd.log",
                behind.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(started.elapsed())
}

fn enforced(lab: &Lab, what: &str) -> Result<()> {
    let took = wait_enforced(lab)?;
    println!(
        "{what}; in place on {} nodes in {took:.1?}",
        lab.nodes.len()
    );
    Ok(())
}

/// `lab policy apply -f FILE`.
pub fn apply(dir: &Path, file: &Path) -> Result<()> {
    let lab = lab_in(dir)?;
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let keys = lab.with_writer(|s| async move { records::apply_policies(&s, &text).await })?;
    enforced(&lab, &format!("applied {}", keys.join(" ")))
}

/// `lab policy delete -f FILE | NS/NAME | --all`.
pub fn delete(dir: &Path, doomed: Doomed) -> Result<()> {
    let lab = lab_in(dir)?;
    let keys = lab.with_writer(|s| async move { records::delete_policies(&s, &doomed).await })?;
    enforced(&lab, &format!("deleted {} policies", keys.len()))
}

/// `lab label pod NS/NAME CHANGE...` or `lab label namespace NS
/// CHANGE...`: each change `key=value` or `key-`.
pub fn label(dir: &Path, kind: Kind, target: &str, changes: &[String]) -> Result<()> {
    let lab = lab_in(dir)?;
    let (ns, name) = match kind {
        Kind::Pod => target
            .split_once('/')
            .ok_or_else(|| anyhow!("\"{target}\": name a pod as NAMESPACE/NAME"))?,
        _ => (target, target),
    };
    let parsed: Vec<(&str, Option<&str>)> = changes
        .iter()
        .map(|c| match (c.split_once('='), c.strip_suffix('-')) {
            (Some((k, v)), _) => Ok((k, Some(v))),
            (None, Some(k)) => Ok((k, None)),
            _ => Err(anyhow!("\"{c}\": use key=value to set, key- to remove")),
        })
        .collect::<Result<_>>()?;
    let key = kind.key(ns, name);
    relabel(&lab, &key, &parsed)?;
    enforced(&lab, &format!("labelled {key}"))
}

/// Sets (`Some`) or removes (`None`) labels of the record at `key`.
pub fn relabel(lab: &Lab, key: &str, changes: &[(&str, Option<&str>)]) -> Result<()> {
    let current = lab.with_store(|s| async move { s.records().await })?;
    let bytes = current
        .items
        .get(key)
        .ok_or_else(|| anyhow!("no {key} in the lab's store"))?;
    let mut record: serde_json::Value = serde_json::from_slice(bytes)?;
    let labels = record["labels"]
        .as_object_mut()
        .ok_or_else(|| anyhow!("{key} has no labels"))?;
    for (k, v) in changes {
        match v {
            Some(v) => labels.insert((*k).to_owned(), (*v).into()),
            None => labels.remove(*k),
        };
    }
    put(lab, key, &record)
}

/// Connects from `ns` to `to` over `protocol`: whether it was answered.
fn probe(ns: &str, to: SocketAddr, protocol: Protocol) -> bool {
    in_ns(&format!("/var/run/netns/{ns}"), || match protocol {
        Protocol::TCP => TcpStream::connect_timeout(&to, PROBE).is_ok(),
        _ => {
            let any: SocketAddr = if to.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let Ok(s) = UdpSocket::bind(any) else {
                return false;
            };
            let mut buf = [0u8; 16];
            s.set_read_timeout(Some(PROBE)).is_ok()
                && s.send_to(b"probe", to).is_ok()
                && s.recv_from(&mut buf).is_ok()
        }
    })
    .unwrap_or(false)
}

/// Every ordered pair of `pods` probed at once (loopback counts as
/// allowed, as upstream does).
pub fn observe(pods: &[Pod], protocol: Protocol, port: u16) -> Table {
    let ids: Vec<String> = pods.iter().map(Pod::id).collect();
    let cells: BTreeMap<(String, String), bool> = std::thread::scope(|s| {
        let probes: Vec<_> =
            pods.iter()
                .flat_map(|from| pods.iter().map(move |to| (from, to)))
                .filter(|(from, to)| from.id() != to.id())
                .map(|(from, to)| {
                    s.spawn(move || {
                        let ok = to.ips.first().is_some_and(|ip| {
                            probe(&from.ns, SocketAddr::new(*ip, port), protocol)
                        });
                        ((from.id(), to.id()), ok)
                    })
                })
                .collect();
        probes.into_iter().filter_map(|p| p.join().ok()).collect()
    });
    matrix::fill(&ids, |from, to| {
        from == to || cells.get(&(from.into(), to.into())) == Some(&true)
    })
}

/// One probed table beside the model's.
#[derive(Debug, Serialize)]
pub struct Checked {
    pub protocol: Protocol,
    pub port: u16,
    /// `from`, `to`, whether a connection was made.
    pub observed: Vec<(String, String, bool)>,
    pub differences: Vec<(String, String)>,
}

/// Probes the lab's served pods on each of `over` and compares with the
/// model of the store's records.
pub fn check_tables(lab: &Lab, over: &[(Protocol, u16)]) -> Result<Vec<(Checked, String)>> {
    let records = lab.with_store(|s| async move { s.records().await })?;
    let read = source::read(&records.items, &Default::default(), "");
    for (key, why) in &read.corrupt {
        eprintln!("record {key} left out: {why}");
    }
    let pods: Vec<Pod> = lab
        .pods
        .iter()
        .filter(|p| MODEL_NAMESPACES.contains(&p.namespace.as_str()))
        .cloned()
        .collect();
    if pods.is_empty() {
        bail!("the lab has no policy model's pods: `lab up --policy-model`");
    }
    let ids: Vec<String> = pods.iter().map(Pod::id).collect();
    let mut out = Vec::new();
    for &(protocol, port) in over {
        let expected = matrix::model(&read.cluster, &ids, protocol, port);
        let observed = observe(&pods, protocol, port);
        let differences = matrix::differences(&expected, &observed);
        let shown = matrix::render(&ids, &expected, &observed);
        out.push((
            Checked {
                protocol,
                port,
                observed: observed
                    .into_iter()
                    .map(|((f, t), ok)| (f, t, ok))
                    .collect(),
                differences,
            },
            shown,
        ));
    }
    Ok(out)
}

/// `lab check --policy`: every ordered pair of the model's pods on 80 and
/// 81, TCP and UDP, beside the model; nonzero exit on any difference.
pub fn check(dir: &Path, json: bool, only: Option<(Protocol, u16)>) -> Result<()> {
    let lab = lab_in(dir)?;
    let over: Vec<(Protocol, u16)> = match only {
        Some(one) => vec![one],
        None => PROTOCOLS
            .iter()
            .flat_map(|&p| PORTS.map(move |port| (p, port)))
            .collect(),
    };
    let tables = check_tables(&lab, &over)?;
    let differing: usize = tables.iter().map(|(c, _)| c.differences.len()).sum();
    if json {
        let list: Vec<&Checked> = tables.iter().map(|(c, _)| c).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for (c, shown) in &tables {
            println!(
                "{:?} {}: {} differences\n{shown}",
                c.protocol,
                c.port,
                c.differences.len()
            );
        }
    }
    if differing > 0 {
        bail!("{differing} cells differ from the model");
    }
    Ok(())
}

/// The addresses in the lab's records, for `lab status`.
pub fn pod_records(lab: &Lab) -> Result<BTreeMap<String, PodRecord>> {
    let records = lab.with_store(|s| async move { s.records().await })?;
    Ok(records
        .items
        .iter()
        .filter_map(|(key, value)| {
            let (Kind::Pod, ns, name) = Kind::parse(key)? else {
                return None;
            };
            let record = serde_json::from_slice(value).ok()?;
            Some((format!("{ns}/{name}"), record))
        })
        .collect())
}
