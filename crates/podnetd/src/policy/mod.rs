//! NetworkPolicy on this node: the store's records (namespaces, pods,
//! policies) and the pods this node's plugin hands over at ADD are
//! compiled into this node's ruleset and written as `inet podnet-policy`.
//!
//! One loop owns the state. It takes the store's watch, the plugin's
//! requests from the local socket, and a resync tick; every turn is the
//! same reconcile (compile, compare with what is in place, write if
//! different, or if the table drifted), so a restart, a resync and a
//! repair are one path.

mod enforcer;
mod socket;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use podnet_store::records::RecordStore;
use tokio::sync::mpsc;

use crate::backoff::{self, Backoff, Repeated};
use enforcer::Enforcer;
pub use socket::Ask;

/// What policy keeps in `--run-dir` (the socket there by default):
/// `--cleanup` removes them.
pub const RUN_FILES: [&str; 3] = [
    "policy.sock",
    podnet_core::policy::node::STATE_FILE,
    enforcer::BOUND_FILE,
];

/// How long the store's watch waits before listing anyway.
const WATCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The `br_netfilter` switches same-node enforcement needs: bridged
/// packets reach the `inet` hooks, and conntrack, only through them.
const BRIDGE_SWITCHES: [&str; 2] = [
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
];

/// Refuses to start policy without `br_netfilter` on: podnetd can neither
/// load the module nor (in its DaemonSet) write `/proc/sys`.
pub fn check_prerequisites(proc_sys: &Path) -> Result<()> {
    let off: Vec<String> = BRIDGE_SWITCHES
        .iter()
        .filter(|key| std::fs::read_to_string(proc_sys.join(key)).map_or(true, |v| v.trim() != "1"))
        .map(|key| key.replace('/', "."))
        .collect();
    if !off.is_empty() {
        bail!(
            "NetworkPolicy needs br_netfilter on this node, for pods on one bridge: \
             load the module (`modprobe br_netfilter`, and list it in /etc/modules-load.d) \
             and set {} in /etc/sysctl.d",
            off.iter()
                .map(|k| format!("{k}=1"))
                .collect::<Vec<_>>()
                .join(" and ")
        );
    }
    Ok(())
}

pub struct Options {
    pub node: String,
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    pub run_dir: PathBuf,
    pub socket: PathBuf,
    pub resync: Duration,
}

/// Starts policy: the socket now (ADD waits on it; a socket that cannot
/// be made is an error at start), the loop beside the agent's.
pub fn start<S: RecordStore + 'static>(store: Arc<S>, opts: Options) -> Result<()> {
    let (asks, inbox) = mpsc::channel(64);
    socket::serve(&opts.socket, asks)?;
    let (records_tx, records_rx) = mpsc::channel(1);
    tokio::spawn(watch(store, records_tx));
    let enforcer = Enforcer::new(opts.node, &opts.run_dir, opts.telemetry);
    tokio::spawn(enforcer.run(records_rx, inbox, opts.resync));
    Ok(())
}

/// Follows the store's records, sending each new set; an outage is
/// retried with backoff and logged once.
async fn watch<S: RecordStore>(store: Arc<S>, out: mpsc::Sender<podnet_store::records::Records>) {
    let mut since = podnet_store::Revision::NONE;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut failures = Repeated::default();
    loop {
        match store.watch_records(&since, WATCH_TIMEOUT).await {
            Ok(records) => {
                backoff::log("policy records", failures.succeeded());
                backoff.succeeded();
                if records.revision != since {
                    since = records.revision.clone();
                    if out.send(records).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                backoff::log("policy records", failures.failed(e.kind(), e.to_string()));
                tokio::time::sleep(backoff.failed(fastrand::f64())).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn br_netfilter_off_is_named_with_what_to_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net/bridge")).unwrap();
        let err = check_prerequisites(dir.path()).unwrap_err().to_string();
        assert!(err.contains("modprobe br_netfilter"), "{err}");
        assert!(
            err.contains("net.bridge.bridge-nf-call-iptables=1"),
            "{err}"
        );
        std::fs::write(dir.path().join(BRIDGE_SWITCHES[0]), "1\n").unwrap();
        std::fs::write(dir.path().join(BRIDGE_SWITCHES[1]), "0\n").unwrap();
        let err = check_prerequisites(dir.path()).unwrap_err().to_string();
        assert!(!err.contains("iptables=1"), "{err}");
        assert!(
            err.contains("net.bridge.bridge-nf-call-ip6tables=1"),
            "{err}"
        );
        std::fs::write(dir.path().join(BRIDGE_SWITCHES[1]), "1\n").unwrap();
        check_prerequisites(dir.path()).unwrap();
    }
}
