//! The lab: a multi-node podnet cluster of network namespaces on one
//! machine, with real agents and the real plugin.
//!
//! ```text
//!  pod ns ─veth─ node ns (podnetd, bridge podnet0) ─eth0─┐
//!  pod ns ─veth─ node ns (podnetd, bridge podnet0) ─eth0─┼─ fabric ns (bridge fab0)
//!                           external ns (192.168.1.254) ─┘
//! ```
//!
//! Everything it makes (namespaces, agent PIDs, store, run dirs) is
//! recorded in `<dir>/lab.json`, so `down` can remove it all.

pub mod check;
pub mod etcd;
pub mod kube;
pub mod probe;
pub mod state;
pub mod topology;
pub mod up;

use std::path::Path;

use anyhow::{Context, Result, bail};
use podnet_store::Store;

use state::Lab;

pub const DEFAULT_DIR: &str = "/run/podnet-lab";

pub fn down(dir: &Path) -> Result<()> {
    let Some(lab) = Lab::load(dir)? else {
        bail!("no lab in {}", dir.display());
    };
    println!("stopping {} agents", lab.nodes.len());
    for pid in lab
        .nodes
        .iter()
        .map(|n| n.pid)
        .chain(lab.etcd.iter().map(|m| m.pid))
        .chain(lab.kube.iter().map(|k| k.pid))
    {
        up::stop_agent(pid);
    }
    for ns in lab.namespaces() {
        if let Err(e) = podnet_linux::netns::NamedNetns::delete(&ns) {
            eprintln!("  {e}");
        }
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    println!("lab removed");
    Ok(())
}

pub fn status(dir: &Path, json: bool) -> Result<()> {
    let Some(lab) = Lab::load(dir)? else {
        bail!("no lab in {}", dir.display());
    };
    let snap = lab.with_store(|s| async move { s.list().await })?;
    let leases: Vec<_> = snap.leases.into_values().collect();
    let report = state::status_report(&lab, &leases)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", state::render_status(&report));
    }
    Ok(())
}
