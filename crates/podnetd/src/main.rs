//! `podnetd`: the node agent. It leases this node's pod subnet from the
//! cluster store, writes the subnet file for the plugin, and keeps this
//! node's routes and masquerade in line with every other node's lease.

mod agent;
mod datapath;
mod node;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};

#[derive(Parser, Debug)]
#[command(name = "podnetd", version, about = "podnet node agent")]
pub struct Args {
    /// This node's name in the store (default: the hostname).
    #[arg(long)]
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
    /// The cluster store, e.g. file:/var/lib/podnet/store.
    #[arg(long, default_value = "file:/var/lib/podnet/store")]
    pub store: String,
    /// The cluster config (flannel's net-conf.json format). Stored on first
    /// use; every node then uses the stored one.
    #[arg(long)]
    pub net_conf: Option<PathBuf>,
    /// Masquerade pod traffic to destinations outside the cluster.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub masquerade: bool,
    /// Remove everything this agent owns on this node (routes, vxlan
    /// devices, the egress table, the subnet file) and exit. The lease
    /// stays: `podnetctl node remove` gives it back.
    #[arg(long)]
    pub cleanup: bool,
    /// The longest the agent waits between reconciles, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub resync_ms: u64,
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
    let stop = stop_on_signals()?;
    let resync = Duration::from_millis(args.resync_ms);
    let mut agent = agent::Agent::start(args).context("podnetd could not start")?;
    agent.run(&stop, resync)
}

/// SIGTERM and SIGINT set the returned flag. They are blocked in every
/// thread and taken by one waiting thread, so no signal handler is needed.
fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            tracing::info!("{sig}: stopping; the datapath stays in place");
            flag.store(true, Ordering::SeqCst);
        }
    });
    Ok(stop)
}
