//! `podnetctl bench datapath`: TCP throughput (iperf3, one stream) and
//! request/response latency (sockperf ping-pong) through podnet's pod
//! paths, each against a baseline of the same shape built by hand with
//! plain `ip` commands (and `wg` for a wireguard-go tunnel), alternated in
//! one run; plus a raw veth pair as the physical limit, and for wireguard
//! the CPU time per GB and one core's ChaCha20-Poly1305 speed.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use podnet_linux::netns::NamedNetns;

use super::stats::{median_rate, paired_ratio};
use crate::inside::in_ns;
use crate::plumbing::ip;
use crate::{record, up};

pub struct Options {
    pub pairs: usize,
    pub seconds: u64,
    /// The CPU both ends of every measurement run on; `None` = the last
    /// one this process may use.
    pub cpu: Option<usize>,
    /// podnet's egress masquerade, on by default as in production.
    pub masquerade: bool,
    /// `wireguard`: that backend, with vxlan beside it; else host-gw and
    /// vxlan.
    pub backend: Option<String>,
}

/// One direction to measure: from a namespace to an address in another.
#[derive(Clone)]
pub(crate) struct Path {
    pub from: String,
    pub to_ns: String,
    pub to_ip: String,
}

#[derive(Default, Clone)]
pub(crate) struct Samples {
    pub gbps: Vec<f64>,
    pub usec: Vec<f64>,
    /// CPU seconds (the whole machine's) per GB received.
    pub cpu_s_per_gb: Vec<f64>,
}

pub fn run(opts: Options) -> Result<()> {
    let backends: &[&str] = match opts.backend.as_deref() {
        None => &["host-gw", "vxlan"],
        Some("wireguard") => &["wireguard", "vxlan"],
        Some(other) => {
            bail!("--backend {other}: host-gw and vxlan run by default; wireguard on its own")
        }
    };
    let mut tools = vec!["iperf3", "sockperf"];
    if backends.contains(&"wireguard") {
        tools.extend(["wireguard-go", "wg", "openssl"]);
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            bail!("{tool} is not installed (scripts/install-deps.sh installs it)");
        }
    }
    let cpu = match opts.cpu {
        Some(cpu) => cpu,
        None => last_usable_cpu()?,
    };
    println!(
        "podnetctl bench datapath: iperf3 single stream {} s, sockperf ping-pong {} s, {} alternating pair(s) per path, both ends on CPU {cpu}, podnet's egress masquerade {}",
        opts.seconds,
        opts.seconds,
        opts.pairs,
        if opts.masquerade { "on" } else { "off" }
    );
    let probe = Probe {
        seconds: opts.seconds.to_string(),
        cpu: cpu.to_string(),
    };
    let tag = format!("pb{}", std::process::id());
    let raw = raw_veth(&tag)?;
    let raw_path = Path {
        from: format!("{tag}-ra"),
        to_ns: format!("{tag}-rb"),
        to_ip: "10.251.0.2".into(),
    };
    let mut raw_samples = Samples::default();
    {
        let _servers = serve(&raw_path, &probe)?;
        for _ in 0..opts.pairs.min(5) {
            measure(&raw_path, &probe, &mut raw_samples)?;
        }
    }
    drop(raw);
    let mut rows = Vec::new();
    let mut guard_rows = Vec::new();
    for &backend in backends {
        let work = tempfile::tempdir()?;
        let dir = work.path().join("lab");
        up::up(up::UpOptions {
            dir: dir.clone(),
            nodes: 2,
            pods_per_node: 2,
            backend: backend.into(),
            direct_routing: false,
            shape: Default::default(),
            lease_ttl: None,
            masquerade: opts.masquerade,
            etcd: false,
            ipam_reclaim_after: None,
            policy: false,
            policy_model: false,
            kube: false,
        })?;
        let result = (|| -> Result<()> {
            let record = record::Lab::load(&dir)?.ok_or_else(|| anyhow!("lab vanished"))?;
            let pod = |name: &str| -> Result<(String, String)> {
                let p = record
                    .pods
                    .iter()
                    .find(|p| p.name == name)
                    .ok_or_else(|| anyhow!("no {name}"))?;
                Ok((p.ns.clone(), p.ips[0].to_string()))
            };
            let (p11, p12, p21) = (pod("node1-pod1")?, pod("node1-pod2")?, pod("node2-pod1")?);
            let guard = GuardSwitch {
                nodes: record.nodes.iter().map(|n| n.ns.clone()).collect(),
            };
            let hand = handmade(&tag, backend)?;
            let h = |n: &str| format!("{tag}-{n}");
            let paths = [
                (
                    "same-node",
                    Path {
                        from: p11.0.clone(),
                        to_ns: p12.0.clone(),
                        to_ip: p12.1.clone(),
                    },
                    Path {
                        from: h("h1p1"),
                        to_ns: h("h1p2"),
                        to_ip: "10.250.1.3".into(),
                    },
                ),
                (
                    "cross-node",
                    Path {
                        from: p11.0.clone(),
                        to_ns: p21.0.clone(),
                        to_ip: p21.1.clone(),
                    },
                    Path {
                        from: h("h1p1"),
                        to_ns: h("h2p1"),
                        to_ip: "10.250.2.2".into(),
                    },
                ),
            ];
            for (shape, ours, theirs) in paths {
                // podnet as deployed, podnet with its guard turned off by
                // its switch, and the hand-made path.
                let mut samples: [Samples; 3] = Default::default();
                let _servers = (serve(&ours, &probe)?, serve(&theirs, &probe)?);
                for i in 0..opts.pairs {
                    // Rotate which goes first, so drift hits all alike.
                    for k in (0..3).map(|k| (k + i) % 3) {
                        guard.set(k != 1)?;
                        let path = if k == 2 { &theirs } else { &ours };
                        measure(path, &probe, &mut samples[k])?;
                    }
                    guard.set(true)?;
                    let [a, off, b] = &samples;
                    eprintln!(
                        "  {backend} {shape} pair {i}: podnet {:.1} Gbit/s {:.1} us, without anti-spoofing {:.1} Gbit/s {:.1} us, hand-made {:.1} Gbit/s {:.1} us",
                        a.gbps[i], a.usec[i], off.gbps[i], off.usec[i], b.gbps[i], b.usec[i]
                    );
                }
                let [a, off, b] = samples;
                let name = format!("{backend} {shape}");
                guard_rows.push((name.clone(), a.clone(), off));
                rows.push((name, a, b));
            }
            drop(hand);
            Ok(())
        })();
        up::down(&dir)?;
        result?;
    }
    report(&raw_samples, &rows, &guard_rows);
    if backends.contains(&"wireguard") {
        report_cpu(&rows)?;
    }
    Ok(())
}

/// The CPU time per GB of each path, and the encryption ceiling: one
/// core's ChaCha20-Poly1305 at a pod packet's size.
fn report_cpu(rows: &Rows) -> Result<()> {
    println!();
    println!("CPU time per GB received (the whole machine's, both ends on one CPU)");
    for (name, ours, theirs) in rows {
        println!(
            "{name:20} podnet {:.2} s/GB ({}), hand-made {:.2} s/GB ({})",
            median_rate(&ours.cpu_s_per_gb),
            range(&ours.cpu_s_per_gb),
            median_rate(&theirs.cpu_s_per_gb),
            range(&theirs.cpu_s_per_gb)
        );
    }
    let out = Command::new("openssl")
        .args([
            "speed",
            "-evp",
            "chacha20-poly1305",
            "-seconds",
            "1",
            "-bytes",
            "1420",
        ])
        .stderr(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kbytes = text
        .lines()
        .rev()
        .find_map(|l| {
            l.split_whitespace()
                .last()?
                .strip_suffix('k')?
                .parse::<f64>()
                .ok()
        })
        .ok_or_else(|| anyhow!("no figure in openssl speed's output: {text}"))?;
    println!(
        "ceiling: ChaCha20-Poly1305 on one core, 1420-byte packets: {:.1} Gbit/s (openssl speed)",
        kbytes * 1000.0 * 8.0 / 1e9
    );
    Ok(())
}

/// podnet's anti-spoofing in every lab node, turned off and on through
/// its supported switch (which the agents' drift repair keeps), to
/// measure what it costs.
struct GuardSwitch {
    nodes: Vec<String>,
}

impl GuardSwitch {
    fn set(&self, on: bool) -> Result<()> {
        for ns in &self.nodes {
            in_ns(&format!("/var/run/netns/{ns}"), || {
                podnet_linux::nft::guard::set_passthrough(!on)
            })??;
        }
        Ok(())
    }
}

fn range(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.1}..{hi:.1}")
}

type Rows = [(String, Samples, Samples)];

fn report(raw: &Samples, rows: &Rows, guard_rows: &Rows) {
    println!();
    println!(
        "raw veth pair (the physical limit): {:.1} Gbit/s ({}), {:.1} us ({})",
        median_rate(&raw.gbps),
        range(&raw.gbps),
        median_rate(&raw.usec),
        range(&raw.usec)
    );
    println!(
        "ratio = median of the per-pair ratios, 1.0 = as fast as the hand-made path; target >= 0.95"
    );
    let table = |title: &str,
                 rows: &Rows,
                 [mine, other]: [&str; 2],
                 target: f64,
                 pick: fn(&Samples) -> &[f64],
                 higher_is_better: bool| {
        println!();
        println!(
            "{:20} {:>20} {:>20} {:>7} {:>13}",
            title, mine, other, "ratio", "95% CI"
        );
        for (name, ours, theirs) in rows {
            let (a, b) = (pick(ours), pick(theirs));
            // Lower latency is better: baseline / podnet reads the same way
            // as podnet / baseline does for throughput.
            let r = if higher_is_better {
                paired_ratio(a, b)
            } else {
                paired_ratio(b, a)
            };
            let ci = r
                .ci95
                .map_or("-".to_string(), |(lo, hi)| format!("{lo:.2}..{hi:.2}"));
            println!(
                "{name:20} {:>20} {:>20} {:>7.3} {ci:>13}   {}",
                format!("{:.1} ({})", median_rate(a), range(a)),
                format!("{:.1} ({})", median_rate(b), range(b)),
                r.median,
                if r.median >= target { "met" } else { "MISSED" }
            );
        }
    };
    let vs_hand = ["podnet", "hand-made"];
    table("throughput, Gbit/s", rows, vs_hand, 0.95, |s| &s.gbps, true);
    table("latency, us", rows, vs_hand, 0.95, |s| &s.usec, false);
    println!();
    println!(
        "the cost of anti-spoofing: podnet with its guard / turned off by its switch; targets: throughput >= 0.97, latency >= 0.95"
    );
    let vs_off = ["anti-spoofing on", "off"];
    table(
        "throughput, Gbit/s",
        guard_rows,
        vs_off,
        0.97,
        |s| &s.gbps,
        true,
    );
    table("latency, us", guard_rows, vs_off, 0.95, |s| &s.usec, false);
}

/// The highest-numbered CPU in this process's affinity mask: CPU 0 tends
/// to take more of the machine's interrupts.
pub(crate) fn last_usable_cpu() -> Result<usize> {
    let mask = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))?;
    (0..nix::sched::CpuSet::count())
        .rev()
        .find(|&cpu| mask.is_set(cpu).unwrap_or(false))
        .ok_or_else(|| anyhow!("no usable CPU in this process's affinity mask"))
}

/// How each measurement runs: its length, and the CPU both ends share.
///
/// Both ends of a measurement share one CPU. On a small VM a sender and
/// receiver on different CPUs pay a cross-CPU wake-up per batch, and how
/// often they land apart changes from second to second: unpinned 1 s runs
/// of a raw veth pair ranged 10-23 Gbit/s, pinned ones 19-23. One CPU
/// also makes throughput a measure of the path's per-packet cost, which is
/// what podnet adds to it.
pub(crate) struct Probe {
    pub seconds: String,
    pub cpu: String,
}

impl Probe {
    /// `program` inside `ns`, on the probe's CPU.
    fn command(&self, ns: &str, program: &str) -> Command {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", &self.cpu, "ip", "netns", "exec", ns, program]);
        cmd
    }
}

/// A server that is always stopped, even if the measurement fails.
pub(crate) struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the iperf3 and sockperf servers at the end of `path`; they
/// serve every run on that path and stop when dropped.
pub(crate) fn serve(path: &Path, probe: &Probe) -> Result<[Server; 2]> {
    let start = |program: &str, args: &[&str]| -> Result<Server> {
        let child = probe
            .command(&path.to_ns, program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {program} in {}", path.to_ns))?;
        Ok(Server(child))
    };
    let servers = [
        start("iperf3", &["-s", "-p", "5201"])?,
        start("sockperf", &["sr", "-i", &path.to_ip, "-p", "11111"])?,
    ];
    // Give them a moment to listen.
    std::thread::sleep(Duration::from_millis(300));
    Ok(servers)
}

pub(crate) fn measure(path: &Path, probe: &Probe, into: &mut Samples) -> Result<()> {
    let secs = &probe.seconds;
    let busy = busy_cpu_seconds()?;
    let out = probe
        .command(&path.from, "iperf3")
        .args(["-c", &path.to_ip, "-p", "5201", "-t", secs, "-J"])
        .output()?;
    let cpu = busy_cpu_seconds()? - busy;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 output")?;
    let received = &json["end"]["sum_received"];
    let (Some(bps), Some(bytes)) = (
        received["bits_per_second"].as_f64(),
        received["bytes"].as_f64(),
    ) else {
        bail!("iperf3 {} -> {}: {}", path.from, path.to_ip, json["error"]);
    };
    into.gbps.push(bps / 1e9);
    into.cpu_s_per_gb.push(cpu / (bytes / 1e9));
    let out = probe
        .command(&path.from, "sockperf")
        .args(["pp", "-i", &path.to_ip, "-p", "11111", "-t", secs])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let median = text
        .lines()
        .find(|l| l.contains("percentile 50.000"))
        .and_then(|l| l.split('=').nth(1)?.trim().parse::<f64>().ok())
        .ok_or_else(|| {
            anyhow!(
                "sockperf {} -> {}: no median in its output",
                path.from,
                path.to_ip
            )
        })?;
    into.usec.push(median);
    Ok(())
}

/// The machine's busy CPU time so far, in seconds (from /proc/stat).
fn busy_cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .ok_or_else(|| anyhow!("/proc/stat has no cpu line"))?
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle, iowait.
    let busy: f64 = fields
        .iter()
        .enumerate()
        .filter(|(i, _)| ![3, 4].contains(i))
        .take(6)
        .map(|(_, v)| v)
        .sum();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    Ok(busy / hz)
}

fn sysctl(ns: &str, key: &str) -> Result<()> {
    let status = Command::new("ip")
        .args(["netns", "exec", ns, "sh"])
        .args(["-c", &format!("echo 1 > /proc/sys/{key}")])
        .status()?;
    if !status.success() {
        bail!("sysctl {key} in {ns}");
    }
    Ok(())
}

fn raw_veth(tag: &str) -> Result<Vec<NamedNetns>> {
    let (a, b) = (format!("{tag}-ra"), format!("{tag}-rb"));
    let out = vec![NamedNetns::create(&a)?, NamedNetns::create(&b)?];
    ip(
        &a,
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b,
        ],
    )?;
    ip(&a, &["addr", "add", "10.251.0.1/24", "dev", "eth0"])?;
    ip(&b, &["addr", "add", "10.251.0.2/24", "dev", "eth0"])?;
    ip(&a, &["link", "set", "eth0", "up"])?;
    ip(&b, &["link", "set", "eth0", "up"])?;
    Ok(out)
}

/// The hand-made baseline, taken down when dropped: its wireguard-go
/// devices first (a process in a namespace keeps the namespace alive),
/// then its namespaces.
struct Handmade {
    _netns: Vec<NamedNetns>,
    tunnels: Vec<String>,
    _sockets: tempfile::TempDir,
}

impl Drop for Handmade {
    fn drop(&mut self) {
        for ns in &self.tunnels {
            let _ = ip(ns, &["link", "del", "wg0"]);
            crate::plumbing::stop_processes_in(ns);
        }
    }
}

/// The baseline: podnet's shape, by hand. Two nodes on an underlay bridge,
/// a bridge per node with the gateway, pods on veths, and either a route
/// per peer (host-gw), a vxlan device with a permanent neighbour, FDB
/// entry and onlink route per peer (flannel's recipe), or a wireguard-go
/// device with the peer and a route to its pods (configured with `wg`).
fn handmade(tag: &str, backend: &str) -> Result<Handmade> {
    let mut made = Vec::new();
    let mut tunnels = Vec::new();
    let sockets = tempfile::tempdir()?;
    let wireguard = backend == "wireguard";
    let keys = match wireguard {
        true => vec![wg_keypair()?, wg_keypair()?],
        false => Vec::new(),
    };
    let ns = |n: &str| format!("{tag}-{n}");
    let ul = ns("ul");
    made.push(NamedNetns::create(&ul)?);
    ip(&ul, &["link", "add", "ulbr", "type", "bridge"])?;
    ip(&ul, &["link", "set", "ulbr", "up"])?;
    let vxlan = backend == "vxlan";
    let mtu = match backend {
        "vxlan" => "1450",
        "wireguard" => "1440",
        _ => "1500",
    };
    for n in 1..=2u8 {
        let node = ns(&format!("h{n}"));
        made.push(NamedNetns::create(&node)?);
        let port = format!("h{n}");
        ip(
            &ul,
            &[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &node,
            ],
        )?;
        ip(&ul, &["link", "set", &port, "master", "ulbr", "up"])?;
        ip(
            &node,
            &["addr", "add", &format!("192.168.50.{n}/24"), "dev", "eth0"],
        )?;
        ip(&node, &["link", "set", "eth0", "up"])?;
        ip(&node, &["link", "add", "br0", "type", "bridge"])?;
        ip(
            &node,
            &["addr", "add", &format!("10.250.{n}.1/24"), "dev", "br0"],
        )?;
        ip(&node, &["link", "set", "br0", "up"])?;
        sysctl(&node, "net/ipv4/ip_forward")?;
        let pods: &[u8] = if n == 1 { &[1, 2] } else { &[1] };
        for &p in pods {
            let pod = ns(&format!("h{n}p{p}"));
            made.push(NamedNetns::create(&pod)?);
            let veth = format!("v{p}");
            ip(
                &node,
                &[
                    "link", "add", &veth, "mtu", mtu, "type", "veth", "peer", "name", "eth0",
                    "mtu", mtu, "netns", &pod,
                ],
            )?;
            ip(&node, &["link", "set", &veth, "master", "br0", "up"])?;
            ip(
                &pod,
                &[
                    "addr",
                    "add",
                    &format!("10.250.{n}.{}/24", p + 1),
                    "dev",
                    "eth0",
                ],
            )?;
            ip(&pod, &["link", "set", "eth0", "up"])?;
            ip(
                &pod,
                &["route", "add", "default", "via", &format!("10.250.{n}.1")],
            )?;
        }
        let o = 3 - n;
        if vxlan {
            ip(
                &node,
                &[
                    "link",
                    "add",
                    "vx0",
                    "address",
                    &format!("02:00:00:00:00:0{n}"),
                    "mtu",
                    "1450",
                    "type",
                    "vxlan",
                    "id",
                    "1",
                    "local",
                    &format!("192.168.50.{n}"),
                    "dev",
                    "eth0",
                    "dstport",
                    "8472",
                    "nolearning",
                ],
            )?;
            ip(
                &node,
                &["addr", "add", &format!("10.250.{n}.0/32"), "dev", "vx0"],
            )?;
            ip(&node, &["link", "set", "vx0", "up"])?;
            let mac = format!("02:00:00:00:00:0{o}");
            ip(
                &node,
                &[
                    "neigh",
                    "add",
                    &format!("10.250.{o}.0"),
                    "lladdr",
                    &mac,
                    "dev",
                    "vx0",
                    "nud",
                    "permanent",
                ],
            )?;
            let fdb = Command::new("bridge")
                .args([
                    "-n",
                    &node,
                    "fdb",
                    "append",
                    &mac,
                    "dev",
                    "vx0",
                    "dst",
                    &format!("192.168.50.{o}"),
                ])
                .status()?;
            if !fdb.success() {
                bail!("bridge fdb append in {node}");
            }
            ip(
                &node,
                &[
                    "route",
                    "add",
                    &format!("10.250.{o}.0/24"),
                    "via",
                    &format!("10.250.{o}.0"),
                    "dev",
                    "vx0",
                    "onlink",
                ],
            )?;
        } else if wireguard {
            let dir = sockets.path().join(&node);
            std::fs::create_dir_all(&dir)?;
            let key = dir.join("key");
            std::fs::write(&key, &keys[usize::from(n - 1)].0)?;
            tunnels.push(node.clone());
            with_own_sockets(&node, &dir, "wireguard-go wg0")?;
            let peer = &keys[usize::from(o - 1)].1;
            let set = format!(
                "wg set wg0 listen-port 51820 private-key {} peer {peer} endpoint \
                 192.168.50.{o}:51820 allowed-ips 10.250.{o}.0/24,192.168.50.{o}/32",
                key.display()
            );
            // wireguard-go forks to the background; its socket follows.
            let started = std::time::Instant::now();
            while with_own_sockets(&node, &dir, &set).is_err() {
                if started.elapsed() > Duration::from_secs(5) {
                    bail!("hand-made wireguard-go in {node} did not answer");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            ip(
                &node,
                &["addr", "add", &format!("10.250.{n}.0/32"), "dev", "wg0"],
            )?;
            ip(&node, &["link", "set", "wg0", "mtu", "1440", "up"])?;
            ip(
                &node,
                &["route", "add", &format!("10.250.{o}.0/24"), "dev", "wg0"],
            )?;
        } else {
            ip(
                &node,
                &[
                    "route",
                    "add",
                    &format!("10.250.{o}.0/24"),
                    "via",
                    &format!("192.168.50.{o}"),
                ],
            )?;
        }
    }
    Ok(Handmade {
        _netns: made,
        tunnels,
        _sockets: sockets,
    })
}

/// Runs `script` in node `ns`, in a mount namespace where `dir` is
/// wireguard-go's socket directory: each node has its own.
fn with_own_sockets(ns: &str, dir: &std::path::Path, script: &str) -> Result<()> {
    std::fs::create_dir_all("/run/wireguard")?;
    let status = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "unshare",
            "--mount",
            "--propagation",
            "private",
        ])
        .args([
            "sh",
            "-c",
            &format!("mount --bind {} /run/wireguard && {script}", dir.display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("{script} in {ns}");
    }
    Ok(())
}

/// A private key and its public key, from `wg`.
fn wg_keypair() -> Result<(String, String)> {
    use std::io::Write;
    let private = Command::new("wg").arg("genkey").output()?.stdout;
    let mut pubkey = Command::new("wg")
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    pubkey
        .stdin
        .take()
        .ok_or_else(|| anyhow!("wg pubkey's stdin"))?
        .write_all(&private)?;
    let public = pubkey.wait_with_output()?.stdout;
    Ok((
        String::from_utf8(private)?.trim().to_owned(),
        String::from_utf8(public)?.trim().to_owned(),
    ))
}
