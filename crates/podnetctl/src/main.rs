//! `podnetctl`: the operator's CLI. Its own commands are `node remove`
//! (`release.rs`), `policy` (`policy.rs`) and `uninstall`; the lab and the benchmarks are `podnet-lab`'s.

mod policy;
mod release;
mod uninstall;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use podnet_lab::policy as lab_policy;
use podnet_lab::{bench, check, status, topology, up};
use podnet_store::StoreOptions;
use podnet_store::etcd::flags::EtcdFlags;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "podnetctl", version, about = "Operate and measure podnet")]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand)]
enum Top {
    /// A cluster's nodes, through its store.
    Node {
        /// The cluster store, as podnetd's --store (`kube`: refused, a node
        /// leaves when its Node object is deleted).
        #[arg(long, global = true, default_value = "file:/var/lib/podnet/store")]
        store: String,
        #[command(flatten)]
        etcd: EtcdFlags,
        #[command(subcommand)]
        what: NodeCmd,
    },
    /// A multi-node cluster of network namespaces on this machine.
    Lab {
        /// Where the lab keeps its state (store, run dirs, names, PIDs).
        #[arg(long, global = true, default_value = podnet_lab::DEFAULT_DIR)]
        dir: PathBuf,
        #[command(subcommand)]
        what: Lab,
    },
    /// The cluster's half of an uninstall: podnet's annotations and its
    /// NetworkUnavailable condition removed from every Node (each node's
    /// half is `podnet uninstall-cni`, run there).
    Uninstall {
        /// A kubeconfig; else the in-cluster service account.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// NetworkPolicies kept in a file or etcd store (on Kubernetes, use
    /// kubectl: they are the API's objects).
    Policy {
        /// The cluster store, as podnetd's --store.
        #[arg(long, global = true, default_value = "file:/var/lib/podnet/store")]
        store: String,
        #[command(flatten)]
        etcd: EtcdFlags,
        #[command(subcommand)]
        what: PolicyCmd,
    },
    /// Benchmarks. They print medians and ratios; they never fail on numbers.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Keep each NetworkPolicy of a YAML or JSON file (one or many
    /// documents) in the store.
    Apply {
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// Delete the policies a file names, one NAMESPACE/NAME, or all.
    Delete {
        #[arg(short = 'f', long = "filename", conflicts_with_all = ["id", "all"])]
        file: Option<PathBuf>,
        #[arg(conflicts_with = "all")]
        id: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

impl PolicyCmd {
    /// What a delete takes.
    fn doomed(
        file: Option<PathBuf>,
        id: Option<String>,
        all: bool,
    ) -> anyhow::Result<podnet_store::records::Doomed> {
        use podnet_store::records::Doomed;
        match (file, id, all) {
            (Some(f), _, _) => {
                Ok(Doomed::File(std::fs::read_to_string(&f).map_err(|e| {
                    anyhow::anyhow!("read {}: {e}", f.display())
                })?))
            }
            (None, Some(id), _) => Ok(Doomed::One(id)),
            (None, None, true) => Ok(Doomed::All),
            (None, None, false) => anyhow::bail!("name what to delete: -f FILE, NS/NAME or --all"),
        }
    }
}

#[derive(Subcommand)]
enum LabelCmd {
    Pod {
        /// NAMESPACE/NAME
        id: String,
        #[arg(required = true)]
        changes: Vec<String>,
    },
    Namespace {
        name: String,
        #[arg(required = true)]
        changes: Vec<String>,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Remove a node from the cluster: release its lease, so every other
    /// node drops its routes.
    Remove { name: String },
}

#[derive(Subcommand)]
enum Lab {
    /// Build the lab: underlay, nodes with podnetd, pods attached by podnet.
    Up {
        #[arg(long, default_value_t = 2)]
        nodes: usize,
        #[arg(long, default_value_t = 1)]
        pods_per_node: usize,
        #[arg(long, default_value = "host-gw")]
        backend: String,
        /// vxlan: peers on the same L2 segment get direct routes.
        #[arg(long)]
        direct_routing: bool,
        /// Put every node in its own L3 segment behind a router.
        #[arg(long)]
        routed: bool,
        /// Give nodes and pods IPv6 addresses too.
        #[arg(long)]
        dual_stack: bool,
        /// Lease TTL in seconds (net-conf `LeaseTTL`).
        #[arg(long)]
        lease_ttl: Option<u64>,
        /// The agents' store: `file` (a shared directory) or `etcd` (a
        /// 3-member cluster on the underlay; flat underlay only).
        /// (or `kube`: the Kubernetes API, emulated, with each node's
        /// Node object and podCIDRs registered by the lab; flat only)
        #[arg(long, default_value = "file", value_parser = ["file", "etcd", "kube"])]
        store: String,
        /// The agents' `--ipam-reclaim-after` (seconds): how long an
        /// address stays without its pod's veth before it is reclaimed.
        #[arg(long)]
        ipam_reclaim_after: Option<u64>,
        /// Enforce NetworkPolicy (`podnetd --policy`, the conflist's
        /// `"policy": true`); the lab writes its pods' records.
        #[arg(long)]
        policy: bool,
        /// Upstream's e2e model, with policy: namespaces x, y, z with pods
        /// a, b, c each (spread over the nodes, serving TCP and UDP on 80
        /// and 81), instead of --pods-per-node's pods.
        #[arg(long)]
        policy_model: bool,
    },
    /// NetworkPolicies in the lab's store; waits until every node has
    /// them in place.
    Policy {
        #[command(subcommand)]
        what: PolicyCmd,
    },
    /// Change a pod's or a namespace's labels (`key=value` sets, `key-`
    /// removes); waits until every node has the change in place.
    Label {
        #[command(subcommand)]
        what: LabelCmd,
    },
    /// The policy model's servers, run in a pod by `lab up --policy-model`.
    #[command(hide = true)]
    ServePod,
    /// Stop, start or restart one node's podnetd.
    Agent {
        node: String,
        action: up::AgentAction,
        /// Stop with SIGKILL instead of SIGTERM.
        #[arg(long)]
        kill: bool,
    },
    /// Probe every pod/node/external pair; nonzero exit on any failure.
    Check {
        #[arg(long)]
        json: bool,
        /// Instead: probe every ordered pair of the policy model's pods on
        /// 80 and 81, TCP and UDP, beside the expected matrix from the
        /// model of the store's policies; nonzero exit on any difference.
        #[arg(long)]
        policy: bool,
        /// `--policy`: only this protocol (with --port).
        #[arg(long, requires = "port", value_parser = ["TCP", "UDP"])]
        protocol: Option<String>,
        /// `--policy`: only this port (with --protocol).
        #[arg(long, requires = "protocol")]
        port: Option<u16>,
    },
    /// Nodes, leases, backend, MTU and routes.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Add one node (with the lab's pods per node) to a running lab.
    AddNode,
    /// Add one pod to a node (with policy, its record first, as a pod
    /// object exists before its sandbox).
    AddPod {
        node: String,
        /// NAMESPACE/NAME
        id: String,
        /// A label, `key=value` (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Remove a node: stop its agent, release its lease, delete it.
    RemoveNode { name: String },
    /// Remove everything the lab made.
    Down,
}

/// A setting to run on, off, or both ways in one run.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Switch {
    On,
    Off,
    Both,
}

#[derive(Subcommand)]
enum Bench {
    /// Pod-to-pod throughput and latency against hand-made paths of the
    /// same shape, and a raw veth pair.
    Datapath {
        /// Pairs per path (podnet, podnet without anti-spoofing and
        /// hand-made, in rotating order). Many short pairs
        /// beat a few long ones on a noisy machine: each pair's ratio
        /// compares two runs made seconds apart.
        #[arg(long, default_value_t = 30)]
        pairs: usize,
        /// Seconds per iperf3 and per sockperf run.
        #[arg(long, default_value_t = 1)]
        seconds: u64,
        /// The CPU both ends of each measurement are pinned to (default:
        /// the last one podnetctl may use).
        #[arg(long)]
        cpu: Option<usize>,
        /// Run the lab's agents with `--masquerade false`: podnet's
        /// datapath without the egress table.
        #[arg(long)]
        no_masquerade: bool,
        /// A short run for CI: 1 pair of 1 s runs.
        #[arg(long)]
        quick: bool,
        /// `wireguard`: podnet's wireguard backend against a hand-made
        /// wireguard-go tunnel, beside vxlan, with the CPU time per GB and
        /// one core's ChaCha20-Poly1305 speed (default: host-gw and vxlan).
        #[arg(long)]
        backend: Option<String>,
    },
    /// NetworkPolicy at scale on one node: a synthetic cluster compiled
    /// for the node and written as its table, then one label change.
    Policy {
        #[arg(long, default_value_t = 10_000)]
        pods: usize,
        /// Of them, on the node measured (kubelet's default maximum).
        #[arg(long, default_value_t = 110)]
        on_node: usize,
        #[arg(long, default_value_t = 100)]
        namespaces: usize,
        #[arg(long, default_value_t = 1000)]
        policies: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// The lab for the time from a change to enforcement (0: no lab
        /// phases).
        #[arg(long, default_value_t = 10)]
        lab_nodes: usize,
        /// That lab's store: a 3-member etcd, or the emulated Kubernetes
        /// API, instead of the file store.
        #[arg(long, default_value = "file", value_parser = ["file", "etcd", "kube"])]
        store: String,
        /// Datapath: pairs per state (no policy, --policies that select
        /// neither pod, one allowing), and seconds per run.
        #[arg(long, default_value_t = 10)]
        pairs: usize,
        #[arg(long, default_value_t = 1)]
        seconds: u64,
        /// A short run for CI: a tenth of the cluster, 1 round, a 3-node
        /// lab, 1 datapath pair.
        #[arg(long)]
        quick: bool,
    },
    /// Join convergence on a lab, and one agent fed thousands of peers.
    ControlPlane {
        /// Lab size for the join convergence rounds.
        #[arg(long, default_value_t = 10)]
        nodes: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Simulated peer leases for the scale test.
        #[arg(long, default_value_t = 5000)]
        peers: usize,
        /// A short run for CI: 3 nodes, 1 round, 500 peers (kube: 10 s
        /// phases).
        #[arg(long)]
        quick: bool,
        /// `etcd`: also lease every simulated node through a real etcd and
        /// converge one agent on it, beside the file store's figures.
        /// `kube`: one agent on an emulated API server with `--peers`
        /// realistic Nodes, idle and under kubelets' status updates
        /// (50/s): its CPU, reconciles, API requests and RSS.
        #[arg(long, default_value = "file", value_parser = ["file", "etcd", "kube"])]
        store: String,
        /// `--store kube`: seconds per phase (idle, then updates).
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// ADD/DEL latency and concurrent throughput of the podnet plugin
    /// against the reference bridge + host-local plugins, measured in one
    /// run in throwaway namespaces.
    Cni {
        /// Sequential ADD+DEL cycles per plugin.
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        /// Pods attached at once in the concurrent phase.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Concurrent rounds per plugin (the median is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// A short run for CI: 20 iterations, 1 round, a fill of 20.
        #[arg(long)]
        quick: bool,
        /// podnet's antiSpoofing: `on`, `off`, or `both` (two subjects in
        /// one run).
        #[arg(long, value_enum, default_value_t = Switch::Both)]
        anti_spoofing: Switch,
        /// Pods on one node for the check that ADD stays flat as a node
        /// fills (110: kubelet's default maximum; 0 skips it).
        #[arg(long, default_value_t = 110)]
        fill: usize,
        /// The podnet plugin binary (default: next to podnetctl).
        #[arg(long)]
        plugin: Option<PathBuf>,
        /// Where the reference plugins live.
        #[arg(long, default_value = "/usr/lib/cni")]
        reference_dir: PathBuf,
        /// Skip ADD with NetworkPolicy on against off (a 1-node lab).
        #[arg(long)]
        no_policy: bool,
    },
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Top::Lab { dir, what } => match what {
            Lab::Up {
                nodes,
                pods_per_node,
                backend,
                direct_routing,
                routed,
                dual_stack,
                lease_ttl,
                store,
                ipam_reclaim_after,
                policy,
                policy_model,
            } => up::up(up::UpOptions {
                dir,
                lease_ttl,
                nodes,
                pods_per_node,
                backend,
                direct_routing,
                shape: topology::Shape { routed, dual_stack },
                masquerade: true,
                etcd: store == "etcd",
                kube: store == "kube",
                ipam_reclaim_after,
                policy,
                policy_model,
            }),
            Lab::Check {
                json,
                policy: true,
                protocol,
                port,
            } => {
                let only = protocol.zip(port).map(|(p, port)| {
                    let p = match p.as_str() {
                        "UDP" => lab_policy::Protocol::UDP,
                        _ => lab_policy::Protocol::TCP,
                    };
                    (p, port)
                });
                lab_policy::check(&dir, json, only)
            }
            Lab::Check { json, .. } => check::run(&dir, json),
            Lab::Policy {
                what: PolicyCmd::Apply { file },
            } => lab_policy::apply(&dir, &file),
            Lab::Policy {
                what: PolicyCmd::Delete { file, id, all },
            } => PolicyCmd::doomed(file, id, all).and_then(|d| lab_policy::delete(&dir, d)),
            Lab::Label {
                what: LabelCmd::Pod { id, changes },
            } => lab_policy::label(&dir, lab_policy::Kind::Pod, &id, &changes),
            Lab::Label {
                what: LabelCmd::Namespace { name, changes },
            } => lab_policy::label(&dir, lab_policy::Kind::Namespace, &name, &changes),
            Lab::ServePod => lab_policy::serve_pod(),
            Lab::Status { json } => status::status(&dir, json),
            Lab::AddNode => up::add_node(&dir),
            Lab::AddPod { node, id, labels } => up::add_pod(&dir, &node, &id, &labels),
            Lab::RemoveNode { name } => up::remove_node(&dir, &name),
            Lab::Agent { node, action, kill } => up::agent(&dir, &node, action, kill),
            Lab::Down => up::down(&dir),
        },
        Top::Uninstall { kubeconfig } => uninstall::run(kubeconfig.as_deref()),
        Top::Policy { store, etcd, what } => {
            let opts = StoreOptions {
                etcd: etcd.options(),
                ..StoreOptions::default()
            };
            policy::run(&store, &opts, what)
        }
        Top::Node {
            store,
            etcd,
            what: NodeCmd::Remove { name },
        } => {
            let opts = StoreOptions {
                etcd: etcd.options(),
                ..StoreOptions::default()
            };
            release::remove(&store, &opts, &name)
        }
        Top::Bench { what } => match what {
            Bench::Cni {
                iterations,
                concurrency,
                rounds,
                quick,
                plugin,
                reference_dir,
                anti_spoofing,
                fill,
                no_policy,
            } => bench::cni::run(bench::cni::Options {
                iterations: if quick {
                    iterations.min(20)
                } else {
                    iterations
                },
                concurrency,
                rounds: if quick { 1 } else { rounds.max(1) },
                plugin,
                reference_dir,
                anti_spoofing: match anti_spoofing {
                    Switch::On => vec![true],
                    Switch::Off => vec![false],
                    Switch::Both => vec![true, false],
                },
                fill: if quick { fill.min(20) } else { fill },
                policy: !no_policy,
            }),
            Bench::Policy {
                pods,
                on_node,
                namespaces,
                policies,
                rounds,
                lab_nodes,
                store,
                pairs,
                seconds,
                quick,
            } => bench::policy::run(match quick {
                true => bench::policy::Options {
                    pods: pods / 10,
                    on_node,
                    namespaces: namespaces / 10,
                    policies: policies / 10,
                    rounds: 1,
                    lab_nodes: lab_nodes.min(3),
                    store,
                    pairs: 1,
                    seconds: 1,
                },
                false => bench::policy::Options {
                    pods,
                    on_node,
                    namespaces,
                    policies,
                    rounds,
                    lab_nodes,
                    store,
                    pairs,
                    seconds,
                },
            }),
            Bench::ControlPlane {
                nodes,
                rounds,
                peers,
                quick,
                store,
                seconds,
            } => bench::control_plane::run(match quick {
                true => bench::control_plane::Options {
                    nodes: 3,
                    rounds: 1,
                    peers: 500,
                    etcd: store == "etcd",
                    kube: (store == "kube").then_some(Duration::from_secs(10)),
                },
                false => bench::control_plane::Options {
                    nodes,
                    rounds,
                    peers,
                    etcd: store == "etcd",
                    kube: (store == "kube").then_some(Duration::from_secs(seconds)),
                },
            }),
            Bench::Datapath {
                pairs,
                seconds,
                cpu,
                no_masquerade,
                quick,
                backend,
            } => bench::datapath::run(match quick {
                true => bench::datapath::Options {
                    pairs: 1,
                    seconds: 1,
                    cpu,
                    masquerade: !no_masquerade,
                    backend,
                },
                false => bench::datapath::Options {
                    pairs,
                    seconds,
                    cpu,
                    masquerade: !no_masquerade,
                    backend,
                },
            }),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podnetctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
