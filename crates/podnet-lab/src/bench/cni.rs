//! `podnetctl bench cni`: podnet against the reference bridge + host-local
//! plugins, plus two floors (a bare veth create/delete over netlink, the
//! kernel's; and a veth created and moved by one `ip` process, the least a
//! plugin process can do), all in one run, in throwaway namespaces, with
//! the runs interleaved so that machine noise hits every subject alike.
//! Then ADD as a node fills: the same pod's ADD on an empty node and with
//! `fill - 1` others attached.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use podnet_linux::netlink::{Netlink, VethSpec};
use podnet_linux::netns::{NamedNetns, Netns};
use serde_json::{Value, json};

use super::stats::{Summary, median_rate, ratio};
use crate::inside::in_ns;

pub struct Options {
    pub iterations: usize,
    pub concurrency: usize,
    pub rounds: usize,
    pub plugin: Option<PathBuf>,
    pub reference_dir: PathBuf,
    /// podnet's `antiSpoofing` settings to run, each as its own subject.
    pub anti_spoofing: Vec<bool>,
    /// Pods on the node for the fill check (0: skip it).
    pub fill: usize,
    /// ADD with NetworkPolicy on and off, on a 1-node lab.
    pub policy: bool,
}

/// One plugin under test: its binary, config and CNI_PATH.
struct Subject {
    name: String,
    exe: PathBuf,
    conf: String,
    cni_path: String,
    /// Name each pod in CNI_ARGS (`bench/<container id>`), as the CRI does.
    named: bool,
}

impl Subject {
    /// Runs one command and times it from spawn to exit.
    fn call(&self, command: &str, cid: &str, netns: &Path) -> Result<(Duration, Value)> {
        let started = Instant::now();
        let mut child = Command::new(&self.exe)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", cid)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.cni_path)
            .env(
                "CNI_ARGS",
                match self.named {
                    true => format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={cid}"),
                    false => String::new(),
                },
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {}", self.exe.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(self.conf.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        let took = started.elapsed();
        if !out.status.success() {
            bail!(
                "{} {command} {cid} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        let value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        Ok((took, value))
    }
}

fn first_ip(result: &Value) -> Option<String> {
    Some(result["ips"][0]["address"].as_str()?.to_owned())
}

#[derive(Default)]
struct Samples {
    add: Vec<Duration>,
    del: Vec<Duration>,
}

/// The floors, measured beside the subjects.
#[derive(Default)]
struct Floors {
    /// A veth created and deleted over netlink, no process.
    netlink: Samples,
    /// A veth created and moved into the pod by one `ip` process.
    ip: Vec<Duration>,
}

/// One concurrent round: all ADDs at once, then all DELs at once.
struct Round {
    add_rate: f64,
    del_rate: f64,
    errors: usize,
    duplicates: usize,
}

pub fn run(opts: Options) -> Result<()> {
    let plugin = match opts.plugin {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .ok_or_else(|| anyhow!("podnetctl has no directory"))?
            .join("podnet"),
    };
    for exe in [
        &plugin,
        &opts.reference_dir.join("bridge"),
        &opts.reference_dir.join("host-local"),
    ] {
        if !exe.is_file() {
            bail!(
                "{} not found (build podnet; install containernetworking-plugins)",
                exe.display()
            );
        }
    }
    let work = tempfile::tempdir()?;
    let tag = format!("podnet-bench-{}", std::process::id());
    let node = NamedNetns::create(&format!("{tag}-node"))?;
    let pods = (0..opts.concurrency.max(1))
        .map(|i| NamedNetns::create(&format!("{tag}-pod{i}")))
        .collect::<std::io::Result<Vec<_>>>()?;
    let pod_paths: Vec<PathBuf> = pods.iter().map(NamedNetns::path).collect();
    // Everything below runs inside the node namespace: plugins inherit it.
    let _in_node = node.open()?.enter()?;

    let podnet_dir = plugin.parent().map(Path::to_path_buf).unwrap_or_default();
    let reference_path = opts.reference_dir.display().to_string();
    // The reference first; then podnet with each anti-spoofing setting.
    let mut subjects = vec![Subject {
        name: "bridge+host-local".into(),
        exe: opts.reference_dir.join("bridge"),
        conf: json!({
            "cniVersion": "1.0.0", "name": "bench-ref", "type": "bridge",
            "bridge": "refbench0", "isGateway": true, "ipMasq": false,
            "ipam": { "type": "host-local", "subnet": "10.251.0.0/16",
                      "dataDir": work.path().join("host-local") },
        })
        .to_string(),
        cni_path: reference_path.clone(),
        named: false,
    }];
    for (i, &guard) in opts.anti_spoofing.iter().enumerate() {
        subjects.push(Subject {
            name: format!(
                "podnet (anti-spoofing {})",
                if guard { "on" } else { "off" }
            ),
            exe: plugin.clone(),
            conf: json!({
                "cniVersion": "1.0.0", "name": format!("bench-podnet{i}"), "type": "podnet",
                "bridge": format!("pnbench{i}"), "ipMasq": false, "antiSpoofing": guard,
                "subnetFile": work.path().join("no-subnet.json"),
                "ipam": { "subnet": format!("10.{}.0.0/16", 240 + i),
                          "dataDir": work.path().join("podnet") },
            })
            .to_string(),
            cni_path: format!("{}:{reference_path}", podnet_dir.display()),
            named: false,
        });
    }

    println!(
        "podnetctl bench cni: {} sequential ADD+DEL cycles per plugin (alternated), \
         {}-way concurrent x {} round(s)",
        opts.iterations, opts.concurrency, opts.rounds
    );
    // Warm up: bridges, IPAM dirs and page cache exist before timing.
    for s in &subjects {
        s.call("ADD", "warmup", &pod_paths[0])?;
        s.call("DEL", "warmup", &pod_paths[0])?;
    }

    let mut seq: Vec<Samples> = subjects.iter().map(|_| Samples::default()).collect();
    let mut floor = Floors::default();
    let pod0 = Netns::open(&pod_paths[0])?;
    let mut netlink = Netlink::open()?;
    let n = subjects.len();
    let order = |i: usize| (0..n).map(move |k| (k + i) % n);
    for i in 0..opts.iterations {
        for k in order(i) {
            let cid = format!("seq-{i}");
            let (add, _) = subjects[k].call("ADD", &cid, &pod_paths[0])?;
            let (del, _) = subjects[k].call("DEL", &cid, &pod_paths[0])?;
            seq[k].add.push(add);
            seq[k].del.push(del);
        }
        let (create, delete) = bare_veth(&mut netlink, &pod0)?;
        floor.netlink.add.push(create);
        floor.netlink.del.push(delete);
        floor.ip.push(ip_veth(&mut netlink, pods[0].name())?);
        if (i + 1) % 50 == 0 {
            eprintln!("  ... {} / {} cycles", i + 1, opts.iterations);
        }
    }

    let mut rounds: Vec<Vec<Round>> = subjects.iter().map(|_| Vec::new()).collect();
    for r in 0..opts.rounds {
        for k in order(r) {
            rounds[k].push(concurrent(&subjects[k], &pod_paths, r));
        }
    }

    report(&subjects, &seq, &floor, &rounds, opts.concurrency)?;
    if opts.fill > 1 {
        // With the guard on, if it is among the subjects.
        let k = opts.anti_spoofing.iter().position(|on| *on).unwrap_or(0) + 1;
        fill_check(&subjects[k], &pod_paths[0], opts.fill, &tag)?;
    }
    drop(_in_node);
    if opts.policy {
        policy_share(&plugin, opts.iterations, &pod_paths[0])?;
    }
    Ok(())
}

/// ADD with NetworkPolicy on against ADD without, on one node of a lab
/// whose podnetd enforces policy: the same plugin, node and pool, the
/// conflist's `"policy": true` the only difference. Each pod's record is
/// written before its ADD (untimed: the pod object exists before its
/// sandbox).
fn policy_share(plugin: &Path, iterations: usize, pod: &Path) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lab_dir = dir.path().join("lab");
    println!();
    println!("ADD with NetworkPolicy: a 1-node lab with podnetd --policy");
    crate::up::up(crate::up::UpOptions {
        dir: lab_dir.clone(),
        lease_ttl: None,
        nodes: 1,
        pods_per_node: 0,
        backend: "host-gw".into(),
        direct_routing: false,
        shape: crate::topology::Shape::default(),
        masquerade: true,
        etcd: false,
        kube: false,
        ipam_reclaim_after: None,
        policy: true,
        policy_model: false,
    })?;
    let measured = (|| -> Result<[Vec<Duration>; 2]> {
        let lab = crate::record::Lab::load(&lab_dir)?.ok_or_else(|| anyhow!("the lab vanished"))?;
        let node = lab.nodes.first().ok_or_else(|| anyhow!("no node"))?;
        let run = lab.node_dir(&node.name);
        let subject = |policy: bool| {
            let mut conf = json!({
                "cniVersion": "1.0.0", "name": "podnet", "type": "podnet",
                "subnetFile": run.join("run/subnet.json"),
                "ipam": { "dataDir": run.join("ipam") },
            });
            if policy {
                conf["policy"] = json!(true);
                conf["policySocket"] = json!(run.join("run/policy.sock"));
            }
            Subject {
                name: format!("podnet, policy {}", if policy { "on" } else { "off" }),
                exe: plugin.to_path_buf(),
                conf: conf.to_string(),
                cni_path: "/usr/lib/cni".into(),
                named: true,
            }
        };
        let subjects = [subject(false), subject(true)];
        // A policy selecting every pod the bench adds: each ADD puts its
        // pod in the isolated, selected and peer sets.
        let policy = "kind: NetworkPolicy\nmetadata: {namespace: bench, name: bench}\n\
                      spec: {podSelector: {matchLabels: {app: bench}}, ingress: [{from: \
                      [{podSelector: {matchLabels: {app: bench}}}]}]}\n";
        lab.with_writer(
            |s| async move { podnet_store::records::apply_policies(&s, policy).await },
        )?;
        let node_ns = format!("/var/run/netns/{}", node.ns);
        let mut samples: [Vec<Duration>; 2] = Default::default();
        for i in 0..iterations.max(1) + 1 {
            for k in [i % 2, (i + 1) % 2] {
                let cid = format!("pol-{i}-{k}");
                crate::policy::put_pod(
                    &lab,
                    &podnet_core::policy::source::PodRecord {
                        namespace: "bench".into(),
                        name: cid.clone(),
                        node: node.name.clone(),
                        labels: [("app".to_owned(), "bench".to_owned())].into(),
                        ips: Vec::new(),
                        ports: Vec::new(),
                    },
                )?;
                // Let podnetd see the record, as it would the pod object.
                crate::policy::wait_enforced(&lab)?;
                let (add, _) = in_ns(&node_ns, || subjects[k].call("ADD", &cid, pod))??;
                in_ns(&node_ns, || subjects[k].call("DEL", &cid, pod))??;
                if i > 0 {
                    samples[k].push(add);
                }
            }
        }
        Ok(samples)
    })();
    crate::up::down(&lab_dir)?;
    let [off, on] = measured?;
    let summary = |v: &[Duration]| Summary::of(v).ok_or_else(|| anyhow!("no samples"));
    let (off, on) = (summary(&off)?, summary(&on)?);
    println!("  podnet ADD, policy off            {off}   (n={})", off.n);
    println!("  podnet ADD, policy on             {on}   (n={})", on.n);
    let share = on.median.as_secs_f64() - off.median.as_secs_f64();
    println!(
        "policy's share of ADD (median on - median off)   {:6.3} ms   target <= 1.00  {}",
        share * 1e3,
        verdict(share <= 1e-3)
    );
    Ok(())
}

/// A veth created with its peer moved into the pod, by one `ip` process
/// (timed from spawn to exit), then deleted (not timed).
fn ip_veth(netlink: &mut Netlink, pod: &str) -> Result<Duration> {
    let started = Instant::now();
    let status = Command::new("ip")
        .args([
            "link",
            "add",
            "pnbenchip",
            "type",
            "veth",
            "peer",
            "name",
            "eth8",
        ])
        .args(["netns", pod])
        .status()?;
    let took = started.elapsed();
    if !status.success() {
        bail!("ip link add failed: {status}");
    }
    let index = netlink
        .link("pnbenchip")?
        .ok_or_else(|| anyhow!("ip's veth vanished"))?
        .index;
    netlink.delete_link(index)?;
    Ok(took)
}

/// ADD as a node fills: the median of a probe pod's ADD (each followed by
/// its DEL) on the empty node, before and after, against the same with
/// `fill - 1` other pods attached.
fn fill_check(subject: &Subject, probe: &Path, fill: usize, tag: &str) -> Result<()> {
    const PROBES: usize = 15;
    let cycles = |label: &str| -> Result<Vec<Duration>> {
        (0..PROBES)
            .map(|j| {
                let cid = format!("probe-{label}-{j}");
                let (add, _) = subject.call("ADD", &cid, probe)?;
                subject.call("DEL", &cid, probe)?;
                Ok(add)
            })
            .collect()
    };
    let mut empty = cycles("empty-before")?;
    let others = (1..fill)
        .map(|i| NamedNetns::create(&format!("{tag}-fill{i}")))
        .collect::<std::io::Result<Vec<_>>>()?;
    for (i, ns) in others.iter().enumerate() {
        subject.call("ADD", &format!("fill-{i}"), &ns.path())?;
    }
    let full = cycles("full");
    for (i, ns) in others.iter().enumerate() {
        subject.call("DEL", &format!("fill-{i}"), &ns.path())?;
    }
    let full = full?;
    empty.extend(cycles("empty-after")?);
    let summary = |v: &[Duration]| Summary::of(v).ok_or_else(|| anyhow!("no samples"));
    let (first, last) = (summary(&empty)?, summary(&full)?);
    println!();
    println!("ADD as a node fills: {}", subject.name);
    println!(
        "  ADD, the only pod on the node      {first}   (n={})",
        first.n
    );
    println!(
        "  ADD, pod {fill:3} on the node         {last}   (n={})",
        last.n
    );
    let flat = ratio(last.median, first.median);
    println!(
        "  pod {fill} / first pod               {flat:6.3}   target <= 1.05  {}",
        verdict(flat <= 1.05)
    );
    Ok(())
}

/// The kernel's floor: a veth pair with its peer born in the pod netns,
/// created and deleted through netlink with no process start at all.
fn bare_veth(netlink: &mut Netlink, pod: &Netns) -> Result<(Duration, Duration)> {
    let spec = VethSpec {
        host_name: "pnbenchfloor",
        peer_name: "eth9",
        peer_netns: pod,
        mtu: 1500,
        peer_mac: None,
    };
    let started = Instant::now();
    netlink.create_veth(&spec)?;
    let created = started.elapsed();
    let index = netlink
        .link("pnbenchfloor")?
        .ok_or_else(|| anyhow!("floor veth vanished"))?
        .index;
    let started = Instant::now();
    netlink.delete_link(index)?;
    Ok((created, started.elapsed()))
}

fn concurrent(subject: &Subject, pods: &[PathBuf], round: usize) -> Round {
    let cid = |i: usize| format!("conc-{round}-{i}");
    let batch = |command: &'static str| {
        let started = Instant::now();
        let results: Vec<Result<(Duration, Value)>> = std::thread::scope(|s| {
            let handles: Vec<_> = pods
                .iter()
                .enumerate()
                .map(|(i, pod)| s.spawn(move || subject.call(command, &cid(i), pod)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("thread panicked"))))
                .collect()
        });
        (started.elapsed(), results)
    };
    let (add_wall, adds) = batch("ADD");
    let (del_wall, dels) = batch("DEL");
    let ips: Vec<String> = adds
        .iter()
        .filter_map(|r| r.as_ref().ok().and_then(|(_, v)| first_ip(v)))
        .collect();
    let unique: HashSet<&String> = ips.iter().collect();
    let errors = adds.iter().chain(&dels).filter(|r| r.is_err()).count();
    for e in adds.iter().chain(&dels).filter_map(|r| r.as_ref().err()) {
        eprintln!("  {} error: {e:#}", subject.name);
    }
    let rate = |wall: Duration| pods.len() as f64 / wall.as_secs_f64();
    Round {
        add_rate: rate(add_wall),
        del_rate: rate(del_wall),
        errors,
        duplicates: ips.len() - unique.len(),
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn report(
    subjects: &[Subject],
    seq: &[Samples],
    floors: &Floors,
    rounds: &[Vec<Round>],
    concurrency: usize,
) -> Result<()> {
    let summary = |v: &[Duration]| Summary::of(v).ok_or_else(|| anyhow!("no samples"));
    println!();
    println!(
        "{:28} {:>11} {:>11}   {:>18}",
        "sequential (N each)", "median", "p95", "range"
    );
    let mut rows = Vec::new();
    for (s, samples) in subjects.iter().zip(seq) {
        rows.push((format!("{} ADD", s.name), summary(&samples.add)?));
        rows.push((format!("{} DEL", s.name), summary(&samples.del)?));
    }
    let floor = &floors.netlink;
    rows.push((
        "bare veth create (netlink)".to_owned(),
        summary(&floor.add)?,
    ));
    rows.push((
        "bare veth delete (netlink)".to_owned(),
        summary(&floor.del)?,
    ));
    rows.push((
        "veth create+move (one `ip`)".to_owned(),
        summary(&floors.ip)?,
    ));
    for (label, s) in &rows {
        println!("{label:28} {s}   (n={})", s.n);
    }

    let ref_add = summary(&seq[0].add)?.median;
    let ref_del = summary(&seq[0].del)?.median;
    let floor_del = summary(&floor.del)?.median;
    let floor_ip = summary(&floors.ip)?.median;
    for (s, samples) in subjects.iter().zip(seq).skip(1) {
        let add = summary(&samples.add)?.median;
        let add_ratio = ratio(add, ref_add);
        let del = summary(&samples.del)?.median;
        let del_ratio = ratio(del, floor_del);
        println!();
        println!("ratios of medians: {}", s.name);
        println!(
            "  ADD / reference ADD               {add_ratio:6.3}   target <= 0.25  {}",
            verdict(add_ratio <= 0.25)
        );
        println!(
            "  DEL / bare veth delete            {del_ratio:6.3}   target <= 1.20  {}",
            verdict(del_ratio <= 1.2)
        );
        let ip_ratio = ratio(add, floor_ip);
        println!(
            "  ADD / veth create+move by `ip`    {ip_ratio:6.3}   target <= 1.50  {}",
            verdict(ip_ratio <= 1.5)
        );
        println!(
            "  DEL / reference DEL               {:6.3}",
            ratio(del, ref_del)
        );
    }

    // The guard's share of ADD, with both settings in the run.
    let setting = |on: bool| {
        subjects
            .iter()
            .position(|s| s.name.ends_with(if on { "on)" } else { "off)" }))
    };
    if let (Some(on), Some(off)) = (setting(true), setting(false)) {
        let share = summary(&seq[on].add)?.median.as_secs_f64()
            - summary(&seq[off].add)?.median.as_secs_f64();
        println!();
        println!(
            "the guard's share of ADD (median on - median off)   {:6.3} ms   target <= 0.20  {}",
            share * 1e3,
            verdict(share <= 0.2e-3)
        );
    }

    println!();
    println!(
        "concurrent ({concurrency}-way), median of {} round(s)",
        rounds[0].len()
    );
    let mut add_rates = vec![0.0; subjects.len()];
    for (k, s) in subjects.iter().enumerate() {
        let add = median_rate(&rounds[k].iter().map(|r| r.add_rate).collect::<Vec<_>>());
        let del = median_rate(&rounds[k].iter().map(|r| r.del_rate).collect::<Vec<_>>());
        let errors: usize = rounds[k].iter().map(|r| r.errors).sum();
        let dups: usize = rounds[k].iter().map(|r| r.duplicates).sum();
        add_rates[k] = add;
        println!(
            "  {:20} ADD {add:7.1} pods/s   DEL {del:7.1} pods/s   errors {errors}   duplicate IPs {dups}",
            s.name
        );
    }
    for (s, rate) in subjects.iter().zip(&add_rates).skip(1) {
        let tput = rate / add_rates[0].max(f64::MIN_POSITIVE);
        println!(
            "  {} / reference ADD throughput {tput:6.2}   target >= 4     {}",
            s.name,
            verdict(tput >= 4.0)
        );
    }
    Ok(())
}
