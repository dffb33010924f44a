//! `podnetctl bench control-plane`: how fast podnetd converges when a node
//! joins a lab, and how it copes with thousands of peers.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use ipnet::IpNet;
use podnet_core::cluster::desired::ROUTE_PROTOCOL;
use podnet_core::cluster::lease::Lease;
use podnet_core::cluster::nexthops::NEXTHOP_ID_BASE;
use podnet_core::names::vtep_mac;
use podnet_core::subnet_file::SubnetFile;
use podnet_linux::netlink::{Change, Netlink, Nexthop};
use podnet_linux::netns::NamedNetns;
use podnet_store::file::FileStore;

use super::sim::{AgentRun, CAP, Underlay, our_routes, run_agent, sim_attrs, sim_peer, sim_subnet};
use super::stats::Summary;
use crate::plumbing::ip;
use crate::{record, up};

pub struct Options {
    pub nodes: usize,
    pub rounds: usize,
    pub peers: usize,
    /// Also measure the etcd store, beside the file store.
    pub etcd: bool,
    /// Instead, measure one agent on the Kubernetes API with `peers`
    /// Nodes, idle and under status updates, for this long each.
    pub kube: Option<Duration>,
}

pub fn run(opts: Options) -> Result<()> {
    if let Some(phase) = opts.kube {
        println!(
            "podnetctl bench control-plane --store kube: one agent, {} Nodes",
            opts.peers
        );
        return super::kube::scale(opts.peers, phase);
    }
    println!(
        "podnetctl bench control-plane: join convergence on a {}-node lab x {} rounds; \
         one agent with {} simulated peers",
        opts.nodes, opts.rounds, opts.peers
    );
    convergence(&opts, false)?;
    if opts.etcd {
        convergence(&opts, true)?;
    }
    for backend in ["host-gw", "vxlan"] {
        scale(backend, opts.peers)?;
    }
    if opts.etcd {
        super::etcd::scale(opts.peers)?;
    }
    Ok(())
}

/// Join convergence on a lab of `opts.nodes` nodes, on the file store or
/// on a 3-member etcd (then beside etcd's own put-to-watch latency).
fn convergence(opts: &Options, etcd: bool) -> Result<()> {
    let work = tempfile::tempdir()?;
    let dir = work.path().join("lab");
    up::up(up::UpOptions {
        dir: dir.clone(),
        nodes: opts.nodes,
        pods_per_node: 0,
        backend: "host-gw".into(),
        direct_routing: false,
        shape: Default::default(),
        lease_ttl: None,
        masquerade: true,
        etcd,
        ipam_reclaim_after: None,
        policy: false,
        policy_model: false,
        kube: false,
    })?;
    let measured = join_rounds(&dir, opts.rounds).and_then(|joins| {
        let floor = match etcd {
            true => Some(super::etcd::put_to_watch(&dir, 20)?),
            false => None,
        };
        Ok((joins, floor))
    });
    up::down(&dir)?;
    let (samples, floor) = measured?;
    let s = Summary::of(&samples).ok_or_else(|| anyhow!("no rounds"))?;
    println!();
    let store = if etcd { "etcd" } else { "file store" };
    println!(
        "join convergence, {store} ({} nodes, lease -> routes on every other node): {s}   target < 1 s  {}",
        opts.nodes,
        if s.median < Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        }
    );
    if let Some(floor) = floor {
        let f = Summary::of(&floor).ok_or_else(|| anyhow!("no floor samples"))?;
        let target = f.median + Duration::from_millis(20);
        println!(
            "etcd's own put -> watch event, same cluster ({} samples): {f}   join target < {:.1} ms  {}",
            floor.len(),
            target.as_secs_f64() * 1e3,
            if s.median < target { "met" } else { "MISSED" }
        );
    }
    Ok(())
}

fn join_rounds(dir: &Path, rounds: usize) -> Result<Vec<Duration>> {
    let mut samples = Vec::new();
    for round in 0..rounds {
        let record = record::Lab::load(dir)?.ok_or_else(|| anyhow!("lab vanished"))?;
        let others: Vec<String> = record.nodes.iter().map(|n| n.ns.clone()).collect();
        let name = format!(
            "node{}",
            record.nodes.iter().map(|n| n.index).max().unwrap_or(0) + 1
        );
        let adder = {
            let dir = dir.to_path_buf();
            std::thread::spawn(move || up::add_node(&dir))
        };
        // t0: the new node holds its lease: its agent writes the subnet
        // file right after the store answered (the same on every store).
        let started = Instant::now();
        let subnet_file = dir.join(&name).join("run/subnet.json");
        let subnet = loop {
            let read = std::fs::read_to_string(&subnet_file).ok();
            if let Some(file) = read.and_then(|raw| SubnetFile::parse(&raw).ok())
                && let Some(first) = file.node_subnets.first()
            {
                break first.subnet.parse::<IpNet>()?;
            }
            if adder.is_finished() || started.elapsed() > CAP {
                adder.join().map_err(|_| anyhow!("add-node panicked"))??;
                bail!("{name} never got a lease");
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let t0 = Instant::now();
        // t1: every other node routes to its subnet.
        for ns in &others {
            while !our_routes(ns)?.contains(&subnet) {
                if t0.elapsed() > CAP {
                    bail!("{ns} never learned {subnet}");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let took = t0.elapsed();
        adder.join().map_err(|_| anyhow!("add-node panicked"))??;
        eprintln!("  round {round}: {name} converged in {took:?}");
        samples.push(took);
        up::remove_node(dir, &name)?;
        // The next round's node may get the same subnet: start it only
        // once every node has dropped this one's route.
        for ns in &others {
            while our_routes(ns)?.contains(&subnet) {
                if t0.elapsed() > CAP {
                    bail!("{ns} never dropped {subnet}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    Ok(samples)
}

/// One agent, `peers` simulated peer leases in 10.0.0.0/8: time to program
/// them all, its peak RSS, and the kernel's floor for the same changes.
fn scale(backend: &str, peers: usize) -> Result<()> {
    let work = tempfile::tempdir()?;
    let tag = format!("pnbench{}", std::process::id());
    let u = Underlay::new(&tag)?;
    let store_dir = work.path().join("store");
    let store = FileStore::open(&store_dir)?;
    for i in 0..peers {
        // Subnets from 10.0.16.0/24 up: clear of the agent's own lease,
        // which is the first free one (10.0.1.0/24).
        store.import(&Lease {
            node: format!("sim{i}"),
            subnets: vec![sim_subnet(i + 16)?],
            expires: u64::MAX,
            attrs: sim_attrs(i, backend),
        })?;
    }
    let spec = format!("file:{}", store_dir.display());
    let AgentRun {
        took,
        reconcile_ms: agent_ms,
        rss_kib: rss,
    } = run_agent(&u, work.path(), &spec, backend, peers)?;
    let floor = kernel_floor(&format!("{tag}-floor"), backend, peers)?;
    let target = if backend == "host-gw" { 0.2 } else { 1.0 };
    println!();
    println!("scale, {backend}, {peers} peers:");
    println!(
        "  agent start -> all routes present  {:8.1} ms   target < {:.0} ms  {}",
        took.as_secs_f64() * 1e3,
        target * 1e3,
        if took.as_secs_f64() < target {
            "met"
        } else {
            "MISSED"
        }
    );
    if let Some(ms) = agent_ms {
        println!("  agent's reconcile (compute + apply) {ms:8} ms");
    }
    println!(
        "  kernel floor, same changes batched {:8.1} ms",
        floor.as_secs_f64() * 1e3
    );
    println!(
        "  peak RSS                          {:8.1} MiB   target < 64 MiB  {}",
        rss as f64 / 1024.0,
        if rss < 64 * 1024 { "met" } else { "MISSED" }
    );
    drop(u);
    Ok(())
}

/// The same number of route (and, for vxlan, neighbour and FDB) changes,
/// sent straight to the kernel in batches from this process.
fn kernel_floor(name: &str, backend: &str, peers: usize) -> Result<Duration> {
    let ns = NamedNetns::create(name)?;
    let netns = ns.open()?;
    let mut nl = Netlink::open_in(&netns)?;
    let ip = |args: &[&str]| ip(name, args);
    ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ])?;
    ip(&["addr", "add", "172.16.255.254/16", "dev", "eth0"])?;
    ip(&["link", "set", "eth0", "up"])?;
    ip(&["link", "set", "eth1", "up"])?;
    let eth0 = nl
        .link("eth0")?
        .ok_or_else(|| anyhow!("eth0 missing"))?
        .index;
    let vx = if backend == "vxlan" {
        ip(&[
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "id",
            "1",
            "dstport",
            "8472",
            "local",
            "172.16.255.254",
            "dev",
            "eth0",
            "nolearning",
        ])?;
        ip(&["link", "set", "vx0", "up"])?;
        Some(nl.link("vx0")?.ok_or_else(|| anyhow!("vx0 missing"))?.index)
    } else {
        None
    };
    // What the agent sends: per peer (for vxlan, a neighbour and an FDB
    // entry, then) a nexthop object and a route through it.
    let mut changes = Vec::new();
    for i in 0..peers {
        let dst = sim_subnet(i + 16)?;
        let peer = sim_peer(i);
        let id = NEXTHOP_ID_BASE + i as u32;
        let hop = match vx {
            None => Nexthop {
                id,
                gw: peer,
                oif: eth0,
                onlink: false,
                protocol: ROUTE_PROTOCOL,
            },
            Some(index) => {
                let entry = |ip| podnet_linux::netlink::Entry {
                    ip,
                    mac: vtep_mac(&peer).to_vec(),
                };
                changes.push(Change::replace_entry(index, &entry(dst.network()), false));
                changes.push(Change::replace_entry(index, &entry(peer), true));
                Nexthop {
                    id,
                    gw: dst.network(),
                    oif: index,
                    onlink: true,
                    protocol: ROUTE_PROTOCOL,
                }
            }
        };
        changes.push(Change::replace_nexthop(&hop));
        changes.push(Change::replace_route_via_nexthop(dst, id, ROUTE_PROTOCOL));
    }
    let started = Instant::now();
    nl.apply(&changes)?;
    Ok(started.elapsed())
}
