//! `podnetctl bench control-plane --store kube`: one agent, at podnetd's
//! default settings, on an emulated API server holding thousands of
//! realistic Nodes, first idle, then while their kubelets update their
//! status (heartbeats, images, conditions) at 50 a second. What a node of
//! a large cluster pays: the agent's CPU, its full reconciles by cause,
//! its API requests, its peak RSS.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use podnet_store::kube::slim_node::{BACKEND_DATA, BACKEND_TYPE, PUBLIC_IP};
use serde_json::{Value, json};

use super::sim::{CAP, Underlay, net_conf, our_routes, peak_rss_kib, sim_attrs, sim_subnet};
use crate::inside::block_on_in;
use crate::plumbing::sibling;

/// Status-only updates of other Nodes per second, as kubelets make them.
const UPDATES_PER_SECOND: u32 = 50;
const API: &str = "127.0.0.1:6443";
const METRICS: &str = "127.0.0.1:9412";

pub fn scale(peers: usize, phase: Duration) -> Result<()> {
    let work = tempfile::tempdir()?;
    let tag = format!("pnbenchk{}", std::process::id());
    let u = Underlay::new(&tag)?;
    let ns = format!("/var/run/netns/{}", u.node.name());
    let kube_dir = work.path().join("kube");
    std::fs::create_dir_all(&kube_dir)?;
    let _api = Process::spawn(
        Command::new("ip")
            .args(["netns", "exec", u.node.name()])
            .arg(sibling("podnet-kube-emu")?)
            .args(["--listen", API, "--dir"])
            .arg(&kube_dir),
        &work.path().join("api.log"),
    )?;
    wait_for(|| Ok(kube_dir.join("ready").exists()), "the API server")?;
    let admin = kube_dir.join("admin.kubeconfig");
    let started = Instant::now();
    block_on_in(&ns, || register(&admin, peers))?;
    println!(
        "  {peers} Nodes registered in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let conf = work.path().join("net-conf.json");
    std::fs::write(&conf, net_conf("host-gw"))?;
    let agent = Process::spawn(
        Command::new("ip")
            .args(["netns", "exec", u.node.name()])
            .arg(sibling("podnetd")?)
            .args(["--node-name", "bench", "--public-ip"])
            .arg(u.node_ip.to_string())
            .arg("--run-dir")
            .arg(work.path().join("run"))
            .args(["--store", "kube", "--kubeconfig"])
            .arg(kube_dir.join("podnet.kubeconfig"))
            .arg("--net-conf")
            .arg(&conf),
        &work.path().join("podnetd.log"),
    )?;
    let spawned = Instant::now();
    wait_for(
        || Ok(our_routes(u.node.name())?.len() >= peers),
        "every peer's route",
    )?;
    println!(
        "  agent start -> {peers} routes: {:.0} ms",
        spawned.elapsed().as_secs_f64() * 1e3
    );
    // Let the start's own echoes settle.
    std::thread::sleep(Duration::from_secs(2));

    let idle = measure(&ns, &admin, agent.pid, phase, 0)?;
    let busy = measure(&ns, &admin, agent.pid, phase, UPDATES_PER_SECOND)?;
    let rss = peak_rss_kib(agent.pid)?;
    println!();
    println!(
        "kube store, {peers} Nodes, podnetd defaults (--resync-ms 1000, --full-resync-s 60, \
         --kube-watch-silence-s 75), {} s per phase:",
        phase.as_secs()
    );
    for (name, m) in [("idle", &idle), ("50 status updates/s", &busy)] {
        println!(
            "  {name:<20} CPU {:5.2}% of a core   target < 2%  {}",
            m.cpu_percent,
            verdict(m.cpu_percent < 2.0)
        );
        println!(
            "  {name:<20} API requests {:5.1}/min   {}",
            m.requests_per_minute,
            if m.updates == 0 {
                format!("target <= 2  {}", verdict(m.requests_per_minute <= 2.0))
            } else {
                String::new()
            }
        );
        println!("  {name:<20} full reconciles by cause: {:?}", m.reconciles);
    }
    let by_updates = busy.reconciles.iter().find(|(c, _)| c == "leases");
    let caused = by_updates.map_or(0, |(_, n)| *n);
    println!(
        "  reconciles caused by {} status-only updates: {caused}   target 0  {}",
        busy.updates,
        verdict(caused == 0)
    );
    println!(
        "  peak RSS {:.1} MiB   target < 64 MiB  {}",
        rss as f64 / 1024.0,
        verdict(rss < 64 * 1024)
    );
    drop(agent);
    drop(u);
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

struct Phase {
    cpu_percent: f64,
    requests_per_minute: f64,
    /// Full reconciles during the phase, by cause.
    reconciles: Vec<(String, u64)>,
    updates: u64,
}

/// One phase of `length`, with `rate` status-only updates a second.
fn measure(
    ns: &str,
    admin: &std::path::Path,
    pid: u32,
    length: Duration,
    rate: u32,
) -> Result<Phase> {
    let (cpu0, req0, rec0) = (cpu_ticks(pid)?, requests(ns, admin)?, reconciles(ns)?);
    let started = Instant::now();
    let updates = block_on_in(ns, || churn(admin, length, rate))?;
    let took = started.elapsed().as_secs_f64();
    let (cpu1, req1, rec1) = (cpu_ticks(pid)?, requests(ns, admin)?, reconciles(ns)?);
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    let reconciles = rec1
        .into_iter()
        .map(|(cause, n)| {
            let before = rec0
                .iter()
                .find(|(c, _)| *c == cause)
                .map_or(0, |(_, b)| *b);
            (cause, n - before)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    Ok(Phase {
        cpu_percent: (cpu1 - cpu0) as f64 / ticks / took * 100.0,
        requests_per_minute: (req1 - req0) as f64 * 60.0 / took,
        reconciles,
        updates,
    })
}

/// Registers the agent's own Node and `peers` others, each as kubelet,
/// the controller manager and its podnet would leave it.
async fn register(admin: &std::path::Path, peers: usize) -> Result<()> {
    let api = client(admin).await?;
    let own = node("bench", sim_subnet(1)?.to_string(), None)?;
    api.create(&PostParams::default(), &own).await?;
    // 32 at a time.
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..peers {
        let api = api.clone();
        let node = node(&peer_name(i), sim_subnet(i + 16)?.to_string(), Some(i))?;
        pending.spawn(async move { api.create(&PostParams::default(), &node).await });
        while pending.len() >= 32 || (i + 1 == peers && !pending.is_empty()) {
            if let Some(done) = pending.join_next().await {
                done??;
            }
        }
    }
    Ok(())
}

fn peer_name(i: usize) -> String {
    format!("worker-{i:05}")
}

/// A Node as a real cluster has it: addresses, capacity, conditions, node
/// info, a few dozen images; and, for a peer, podnet's annotations.
fn node(name: &str, pod_cidr: String, peer: Option<usize>) -> Result<Node> {
    let mut annotations = json!({
        "node.alpha.kubernetes.io/ttl": "0",
        "volumes.kubernetes.io/controller-managed-attach-detach": "true",
    });
    if let Some(i) = peer {
        let attrs = sim_attrs(i, "host-gw");
        annotations[BACKEND_TYPE] = json!("host-gw");
        annotations[BACKEND_DATA] = json!(attrs.backend_data.to_string());
        annotations[PUBLIC_IP] = json!(attrs.public_ip.to_string());
    }
    let images: Vec<Value> = (0..30)
        .map(|k| json!({"names": [format!("registry.example/app-{k}@sha256:{k:064x}")], "sizeBytes": 50_000_000 + k}))
        .collect();
    let value = json!({
        "metadata": {"name": name, "annotations": annotations, "labels": {
            "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": name, "node.kubernetes.io/instance-type": "m5.large",
        }},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr], "providerID": format!("aws:///{name}")},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "172.16.0.1"}, {"type": "Hostname", "address": name}],
            "capacity": {"cpu": "2", "memory": "8009632Ki", "pods": "110"},
            "allocatable": {"cpu": "1930m", "memory": "7286176Ki", "pods": "110"},
            "conditions": conditions(0),
            "nodeInfo": {"kubeletVersion": "v1.33.1", "containerRuntimeVersion": "containerd://1.7.27",
                "kernelVersion": "6.1.0", "osImage": "Debian GNU/Linux 12", "architecture": "amd64",
                "operatingSystem": "linux", "machineID": "", "systemUUID": "", "bootID": "",
                "kubeProxyVersion": ""},
            "images": images,
        },
    });
    Ok(serde_json::from_value(value)?)
}

/// The conditions a kubelet reports, heartbeat `beat`.
fn conditions(beat: u64) -> Value {
    let at = format!(
        "2026-12-05T{:02}:{:02}:{:02}Z",
        beat / 3600 % 24,
        beat / 60 % 60,
        beat % 60
    );
    let c = |kind: &str, status: &str| {
        json!({"type": kind, "status": status, "lastHeartbeatTime": at,
               "lastTransitionTime": "2026-12-01T00:00:00Z", "reason": format!("Kubelet{kind}"), "message": ""})
    };
    json!([
        c("MemoryPressure", "False"),
        c("DiskPressure", "False"),
        c("PIDPressure", "False"),
        c("Ready", "True"),
    ])
}

/// `rate` status-only updates a second to other Nodes, for `length`:
/// heartbeats, and now and then a changed image list. Returns how many.
async fn churn(admin: &std::path::Path, length: Duration, rate: u32) -> Result<u64> {
    if rate == 0 {
        tokio::time::sleep(length).await;
        return Ok(0);
    }
    let api = client(admin).await?;
    let names: Vec<String> = api
        .list_metadata(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .filter(|n| n != "bench")
        .collect();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < length {
        tick.tick().await;
        let name = &names[fastrand_index(sent, names.len())];
        let mut status = json!({"status": {"conditions": conditions(sent + 1)}});
        if sent.is_multiple_of(10) {
            status["status"]["images"] =
                json!([{"names": [format!("registry.example/new-{sent}")], "sizeBytes": sent}]);
        }
        api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&status))
            .await?;
        sent += 1;
    }
    Ok(sent)
}

/// A spread of indexes without a random source: a multiplicative hash.
fn fastrand_index(n: u64, len: usize) -> usize {
    (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16) as usize % len.max(1)
}

async fn client(kubeconfig: &std::path::Path) -> Result<Api<Node>> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await?;
    Ok(Api::all(kube::Client::try_from(config)?))
}

/// Requests podnet's service account has made, from the emulator.
fn requests(ns: &str, admin: &std::path::Path) -> Result<u64> {
    block_on_in(ns, || async {
        let file = kube::config::Kubeconfig::read_from(admin)?;
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await?;
        let client = kube::Client::try_from(config)?;
        let request = http::Request::get("/emulator/requests").body(Vec::new())?;
        let text = client.request_text(request).await?;
        let v: Value = serde_json::from_str(&text)?;
        v["podnet"]
            .as_u64()
            .ok_or_else(|| anyhow!("no count in {text}"))
    })
}

/// The agent's full reconciles so far, by cause, from its metrics.
fn reconciles(ns: &str) -> Result<Vec<(String, u64)>> {
    let name = ns.rsplit('/').next().unwrap_or(ns);
    let (_, page) = crate::probe::http_get(name, METRICS.parse()?, "/metrics")?;
    Ok(page
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("podnet_reconciles_total{cause=\"")?;
            let (cause, n) = rest.split_once("\"} ")?;
            Some((cause.to_owned(), n.trim().parse().ok()?))
        })
        .collect())
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // After the name: state is field 3, utime 14 and stime 15.
    let at = |field: usize| -> Result<u64> {
        fields
            .get(field - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("no field {field} in /proc/{pid}/stat"))
    };
    Ok(at(14)? + at(15)?)
}

fn wait_for(mut done: impl FnMut() -> Result<bool>, what: &str) -> Result<()> {
    let started = Instant::now();
    while !done()? {
        if started.elapsed() > CAP * 4 {
            bail!("{what}: not within {:?}", CAP * 4);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A child process (`ip netns exec` execs in place: its PID is the
/// program's), stopped when dropped.
struct Process {
    child: std::process::Child,
    pid: u32,
}

impl Process {
    fn spawn(cmd: &mut Command, log: &std::path::Path) -> Result<Process> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("{cmd:?}"))?;
        let pid = child.id();
        Ok(Process { child, pid })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}
