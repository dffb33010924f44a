//! `bench control-plane --store etcd`: simulated nodes lease their subnets
//! through one real etcd, all at once, and then one agent converges to
//! every one of them. The member runs in the benchmark's hub namespace, on
//! the underlay; the clients run on a thread inside it.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use podnet_core::cluster::netconf::ClusterConf;
use podnet_store::Store;
use podnet_store::etcd::{EtcdOptions, EtcdStore};

use super::sim::{AgentRun, Underlay, net_conf, run_agent, sim_attrs};
use crate::etcd::{spawn, wait_healthy};
use crate::inside::block_on_in;
use crate::plumbing::ip;

/// Clients shared by the simulated nodes, and leases in flight at once.
const CLIENTS: usize = 32;
const IN_FLIGHT: usize = 32;

pub fn scale(peers: usize) -> Result<()> {
    let work = tempfile::tempdir()?;
    let u = Underlay::new(&format!("pnbenche{}", std::process::id()))?;
    let etcd_ip: IpAddr = "172.16.255.253".parse()?;
    ip(
        u.hub.name(),
        &["addr", "add", &format!("{etcd_ip}/16"), "dev", "up0"],
    )?;
    let log = std::fs::File::create(work.path().join("etcd.log"))?;
    let peers_spec = format!("m1=http://{etcd_ip}:2380");
    let mut member = spawn(
        u.hub.name(),
        "m1",
        etcd_ip,
        &peers_spec,
        work.path(),
        "bench",
        log,
    )?;
    let result = (|| -> Result<()> {
        let endpoint = format!("http://{etcd_ip}:2379");
        wait_healthy(u.hub.name(), &endpoint)?;
        let hub = format!("/var/run/netns/{}", u.hub.name());
        let leased = block_on_in(&hub, || lease_all(&endpoint, peers))?;
        let secs = leased.took.as_secs_f64();
        println!();
        println!("etcd, {peers} simulated nodes leasing at once ({CLIENTS} clients):");
        println!(
            "  all leased                          {secs:8.2} s    target < 10 s  {}",
            if secs < 10.0 { "met" } else { "MISSED" }
        );
        println!(
            "  acquisitions per second          {:8.0}",
            peers as f64 / secs
        );
        println!("  lost races retried               {:8}", leased.conflicts);
        // One family: a key is its subnet, so etcd itself rules duplicates
        // out and this counts what every node was handed, as a check of
        // the whole path. Two dual-stack keys can share a family's subnet:
        // the store's tests race those.
        println!("  duplicate subnets                {:8}", leased.duplicates);

        let spec = format!("etcd:{endpoint}");
        let AgentRun {
            took,
            reconcile_ms,
            rss_kib,
        } = run_agent(&u, work.path(), &spec, "host-gw", peers)?;
        println!("one agent on etcd, host-gw, {peers} peers:");
        println!(
            "  agent start -> all routes present {:8.1} ms",
            took.as_secs_f64() * 1e3
        );
        if let Some(ms) = reconcile_ms {
            println!(
                "  its list -> all routes (reconcile) {ms:7} ms   target < 300 ms  {}",
                if ms < 300 { "met" } else { "MISSED" }
            );
        }
        println!(
            "  peak RSS                          {:8.1} MiB   target < 64 MiB  {}",
            rss_kib as f64 / 1024.0,
            if rss_kib < 64 * 1024 { "met" } else { "MISSED" }
        );
        if leased.duplicates > 0 {
            bail!("{} subnets were leased twice", leased.duplicates);
        }
        Ok(())
    })();
    let _ = member.kill();
    let _ = member.wait();
    drop(u);
    result
}

struct Leased {
    took: Duration,
    conflicts: usize,
    duplicates: usize,
}

/// `peers` simulated nodes acquire at once, through shared clients.
async fn lease_all(endpoint: &str, peers: usize) -> Result<Leased> {
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let store = EtcdStore::connect(&[endpoint.to_owned()], &EtcdOptions::default()).await?;
        clients.push(Arc::new(store));
    }
    let conf_json = net_conf("host-gw");
    clients[0].net_conf(Some(&conf_json)).await?;
    let conf = Arc::new(ClusterConf::parse(&conf_json)?);
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(peers);
    for i in 0..peers {
        let (store, conf, slots) = (clients[i % CLIENTS].clone(), conf.clone(), slots.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire().await?;
            let attrs = sim_attrs(i, "host-gw");
            let ttl = Duration::from_secs(3600);
            store
                .acquire(&format!("sim{i}"), &attrs, &conf, ttl)
                .await
                .with_context(|| format!("sim{i}"))
        }));
    }
    for t in tasks {
        t.await??;
    }
    let took = started.elapsed();
    let snap = clients[0].list().await?;
    let all: Vec<_> = snap
        .leases
        .values()
        .flat_map(|l| l.subnets.clone())
        .collect();
    let distinct: BTreeSet<_> = all.iter().collect();
    if snap.leases.len() != peers {
        bail!("{} leases listed, {peers} acquired", snap.leases.len());
    }
    Ok(Leased {
        took,
        conflicts: clients.iter().map(|c| c.conflicts()).sum(),
        duplicates: all.len() - distinct.len(),
    })
}

/// etcd's own latency from a put to the watch event, on the lab's cluster,
/// seen from the external host: the floor for join convergence.
pub fn put_to_watch(dir: &std::path::Path, samples: usize) -> Result<Vec<Duration>> {
    let lab = crate::record::Lab::load(dir)?.ok_or_else(|| anyhow!("lab vanished"))?;
    let endpoints: Vec<String> = lab.etcd.iter().map(|m| m.client_url()).collect();
    lab.on_underlay(|| async {
        let mut client = etcd_client::Client::connect(&endpoints, None).await?;
        let key = "/podnet-bench/floor";
        let mut out = Vec::with_capacity(samples);
        for i in 0..samples {
            let mut watch = client.watch(key, None).await?;
            watch.message().await?; // created
            let t = Instant::now();
            client.put(key, i.to_string(), None).await?;
            while watch
                .message()
                .await?
                .is_some_and(|r| r.events().is_empty())
            {}
            out.push(t.elapsed());
        }
        Ok(out)
    })
}
