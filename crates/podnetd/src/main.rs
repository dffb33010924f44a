//! `podnetd`: the node agent. It leases this node's pod subnet from the
//! cluster store, writes the subnet file for the plugin, and keeps this
//! node's routes and masquerade in line with every other node's lease.

mod agent;
mod backend;
mod backoff;
mod datapath;
mod host;
mod kernel;
mod peers;
mod policy;
mod reclaim;
mod start;
mod telemetry;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use podnet_store::etcd::flags::EtcdFlags;
use podnet_store::records::RecordStore;
use podnet_store::{Store, StoreOptions};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::agent::{Event, watch_store};

#[derive(Parser, Debug)]
#[command(name = "podnetd", version, about = "podnet node agent")]
pub struct Args {
    /// This node's name in the store (default: $NODE_NAME, which the
    /// DaemonSet sets from the downward API, else the hostname).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// This node's address on the underlay: the next hop for its pods.
    #[arg(long)]
    pub public_ip: Option<IpAddr>,
    /// This node's IPv6 underlay address (dual-stack): the next hop, or
    /// the vxlan6 endpoint, for its IPv6 pods.
    #[arg(long)]
    pub public_ipv6: Option<IpAddr>,
    /// Take the public IP from this interface (default: the interface of
    /// the default route).
    #[arg(long)]
    pub iface: Option<String>,
    /// Where the subnet file for the plugin is written.
    #[arg(long, default_value = "/run/podnet")]
    pub run_dir: PathBuf,
    /// What must outlive a restart and a reboot of the node: the WireGuard
    /// backend's private key.
    #[arg(long, default_value = "/var/lib/podnet/state")]
    pub state_dir: PathBuf,
    /// The cluster store: file:DIR (agents that share DIR: one machine,
    /// the lab), etcd:URL[,URL...] (every member), or kube (the Kubernetes
    /// API: subnets from Node.spec.podCIDRs).
    #[arg(long, default_value = "file:/var/lib/podnet/store")]
    pub store: String,
    #[command(flatten)]
    pub etcd: EtcdFlags,
    /// `--store kube`, and policy from Kubernetes: the kubeconfig to use
    /// (default: the in-cluster service account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// `--store kube`: seconds a Node watch may bring nothing, not even a
    /// bookmark (a real API server sends one about every minute), before
    /// it is opened again; on a dead connection that fails, and the
    /// outage is reported.
    #[arg(long, default_value_t = podnet_store::kube::DEFAULT_SILENCE.as_secs())]
    pub kube_watch_silence_s: u64,
    /// The cluster config (flannel's net-conf.json format). Stored on first
    /// use; every node then uses the stored one.
    #[arg(long)]
    pub net_conf: Option<PathBuf>,
    /// Masquerade pod traffic to destinations outside the cluster.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub masquerade: bool,
    /// Remove everything this agent owns on this node (routes, the
    /// backends' devices, the egress table, the subnet file) and exit. The
    /// lease and the WireGuard key stay: `podnetctl node remove` gives the
    /// lease back.
    #[arg(long)]
    pub cleanup: bool,
    /// How often, in milliseconds, the agent checks its node's own objects
    /// (subnet file, guard, gateways) and acts on what the kernel monitor
    /// saw: drift is repaired within this.
    #[arg(long, default_value_t = 1000)]
    pub resync_ms: u64,
    /// Seconds between full reconciles (the whole datapath read from the
    /// kernel) when neither the leases nor the kernel monitor asked for one.
    #[arg(long, default_value_t = agent::FULL_EVERY.as_secs())]
    pub full_resync_s: u64,
    /// The plugin's IPAM data dir (its `ipam.dataDir`): addresses whose
    /// DEL was lost are reclaimed from it.
    #[arg(long, default_value = "/var/lib/podnet/ipam")]
    pub ipam_dir: PathBuf,
    /// How long an address must be without its pod's veth before it is
    /// reclaimed, in seconds. 0 turns reclaiming off.
    #[arg(long, default_value_t = 300)]
    pub ipam_reclaim_after: u64,
    /// A CNI conflist to install into `--cni-conf-dir` once this node's
    /// subnet file is written (the DaemonSet's; `podnet install-cni
    /// --plugin-only` installs the plugin before).
    #[arg(long)]
    pub cni_conflist: Option<PathBuf>,
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    #[arg(long, default_value = podnet_core::cni::conflist::CONFLIST_NAME)]
    pub cni_conflist_name: String,
    /// `/healthz` and `/readyz` (`0`: off).
    #[arg(long, default_value = "127.0.0.1:9411", value_parser = telemetry::parse_addr)]
    pub health_addr: telemetry::Listen,
    /// `/metrics`, Prometheus text format (`0`: off; `:9412`: every
    /// address, for Prometheus to scrape).
    #[arg(long, default_value = ":9412", value_parser = telemetry::parse_addr)]
    pub metrics_addr: telemetry::Listen,
    /// Enforce NetworkPolicy on this node: needs br_netfilter, and the
    /// conflist's `"policy": true` so that ADD hands each pod over.
    #[arg(long)]
    pub policy: bool,
    /// Where the plugin's ADD hands pods over (default: RUN_DIR/policy.sock).
    #[arg(long)]
    pub policy_socket: Option<PathBuf>,
    /// Where policies, namespaces and pods come from: `kube` (the API's
    /// objects, through --kubeconfig or the in-cluster service account),
    /// `store` (records in the file or etcd store), or `auto`: kube with
    /// --store kube, a --kubeconfig or in a cluster, else the store.
    #[arg(long, default_value = "auto", value_parser = ["auto", "kube", "store"])]
    pub policy_source: String,
}

impl Args {
    /// Whether policy's source is the Kubernetes API.
    fn policy_from_kube(&self) -> bool {
        match self.policy_source.as_str() {
            "kube" => true,
            "store" => false,
            _ => {
                self.store == "kube"
                    || self.kubeconfig.is_some()
                    || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
            }
        }
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .init();
    let args = Args::parse();
    if args.cleanup {
        return datapath::cleanup(&args.run_dir);
    }
    // Two workers: the loop, and the store's watch beside it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let opts = StoreOptions {
            etcd: args.etcd.options(),
            kubeconfig: args.kubeconfig.clone(),
            kube_silence: Some(Duration::from_secs(args.kube_watch_silence_s)),
        };
        let store = podnet_store::open(&args.store, &opts).await?;
        serve(args, store).await
    });
    // Do not wait out a store watch in progress: nothing it reads matters
    // any more.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// Starts the agent and its sources, and runs its loop.
async fn serve<S: Store + RecordStore + 'static>(args: Args, store: S) -> Result<()> {
    let store = Arc::new(store);
    let resync = Duration::from_millis(args.resync_ms);
    // Up before the lease: a node waiting for its store or podCIDRs is
    // alive, not ready.
    let telemetry = telemetry::Telemetry::new(resync);
    telemetry::serve(telemetry.clone(), args.health_addr, args.metrics_addr).await?;
    if args.policy {
        // Before the lease: the socket must answer from the first ADD on.
        policy::check_prerequisites(std::path::Path::new("/proc/sys"))?;
        let opts = policy::Options {
            node: host::name(&args)?,
            telemetry: telemetry.clone(),
            socket: (args.policy_socket.clone())
                .unwrap_or_else(|| args.run_dir.join("policy.sock")),
            run_dir: args.run_dir.clone(),
            resync,
        };
        if args.policy_from_kube() && args.store != "kube" {
            let kube = podnet_store::kube::KubeStore::connect(args.kubeconfig.as_deref())
                .await?
                .with_watch_silence(Duration::from_secs(args.kube_watch_silence_s));
            policy::start(Arc::new(kube), opts)?;
        } else {
            // With --store kube, the store's records are the API's objects.
            policy::start(store.clone(), opts)?;
        }
    }
    let (agent, _presence) = start::start(&args, store.clone())
        .await
        .context("podnetd could not start")?;
    let mut agent = agent
        .with_telemetry(telemetry.clone())
        .with_full_resync(Duration::from_secs(args.full_resync_s));
    podnet_linux::netlink::monitor::spawn(agent.watch())
        .context("cannot watch the kernel for changes")?;
    let (events, inbox) = mpsc::channel(16);
    tokio::spawn(stop_on_signals(events.clone()));
    tokio::spawn(watch_store(store, events, agent.watch_wait(resync)));
    let grace = (args.ipam_reclaim_after > 0).then(|| Duration::from_secs(args.ipam_reclaim_after));
    let reclaimer = reclaim::Reclaimer::new(
        args.ipam_dir.clone(),
        grace,
        args.run_dir.join("subnet.json"),
        telemetry,
    );
    tokio::spawn(reclaim_leaks(reclaimer, resync));
    agent.run(inbox, resync).await
}

/// Reclaims leaked addresses (and reports the pools) at every resync, on
/// the blocking pool beside the agent's loop; a failure is logged once.
async fn reclaim_leaks(mut reclaimer: reclaim::Reclaimer, every: Duration) {
    let mut failures = backoff::Repeated::default();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let pass = tokio::task::spawn_blocking(move || {
            let result = reclaimer.run();
            (reclaimer, result)
        });
        let Ok((r, result)) = pass.await else {
            return;
        };
        reclaimer = r;
        match result {
            Ok(released) => {
                backoff::log("reclaiming leaked addresses", failures.succeeded());
                for (net, ip, who) in released {
                    tracing::info!(
                        "released {ip} of {}/{} on network {net}: no host veth for the grace period (a lost DEL)",
                        who.container_id,
                        who.ifname,
                    );
                }
            }
            Err(e) => backoff::log(
                "reclaiming leaked addresses",
                failures.failed("io", format!("{e:#}")),
            ),
        }
    }
}

/// SIGTERM and SIGINT stop the loop.
async fn stop_on_signals(events: mpsc::Sender<Event>) -> Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    events.send(Event::Stop(which.into())).await?;
    Ok(())
}
