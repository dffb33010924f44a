//! One agent on the Kubernetes API store with 5000 Nodes that look like a
//! real cluster's (50 images each, the usual conditions, addresses): it
//! converges to all of them, and its peak RSS stays under 64 MiB because
//! it keeps only the fields it needs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ContainerImage, Node, NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo,
};
use podnet_kube_emu::Emulator;
use podnet_testkit::TestNetns;
use serde_json::json;

const NODES: usize = 5000;
const CAP: Duration = Duration::from_secs(300);

fn peer_ip(i: usize) -> String {
    format!("172.16.{}.{}", i / 250, i % 250 + 1)
}

/// Node `i` as a kubelet of a busy cluster reports it, with podnet's
/// annotations as its agent wrote them.
fn realistic(i: usize) -> Node {
    let name = format!("sim{i}");
    let mut node = podnet_kube_emu::node(&name, &[&format!("10.{}.{}.0/24", i / 256, i % 256)]);
    node.metadata.annotations = Some(BTreeMap::from([
        ("podnet.io/backend-type".into(), "host-gw".into()),
        ("podnet.io/backend-data".into(), "null".into()),
        ("podnet.io/public-ip".into(), peer_ip(i)),
        ("node.alpha.kubernetes.io/ttl".into(), "0".into()),
        (
            "volumes.kubernetes.io/controller-managed-attach-detach".into(),
            "true".into(),
        ),
    ]));
    node.metadata.labels = Some(BTreeMap::from([
        ("kubernetes.io/hostname".into(), name.clone()),
        ("kubernetes.io/os".into(), "linux".into()),
        (
            "node.kubernetes.io/instance-type".into(),
            "m5.2xlarge".into(),
        ),
        (
            "topology.kubernetes.io/zone".into(),
            format!("zone-{}", i % 3),
        ),
    ]));
    let condition = |t: &str, status: &str, reason: &str| NodeCondition {
        type_: t.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(format!("kubelet reports {t} {status}")),
        ..Default::default()
    };
    node.status = Some(NodeStatus {
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: peer_ip(i),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name.clone(),
            },
        ]),
        conditions: Some(vec![
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID"),
            condition("Ready", "True", "KubeletReady"),
        ]),
        images: Some(
            (0..50)
                .map(|k| ContainerImage {
                    names: Some(vec![
                        format!(
                            "registry.example.com/team{k}/service{k}@sha256:{:064x}",
                            i * 50 + k
                        ),
                        format!("registry.example.com/team{k}/service{k}:v1.{k}.{i}"),
                    ]),
                    size_bytes: Some(120_000_000 + k as i64),
                })
                .collect(),
        ),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            container_runtime_version: "containerd://1.7.20".into(),
            kernel_version: "6.1.0-25-amd64".into(),
            kubelet_version: "v1.33.1".into(),
            operating_system: "linux".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            machine_id: format!("{i:032x}"),
            system_uuid: format!("{i:032x}"),
            boot_id: format!("{i:032x}"),
            ..Default::default()
        }),
        ..Default::default()
    });
    node
}

fn our_routes(ns: &TestNetns) -> usize {
    let out = ns.exec_ok(&["ip", "route", "show", "proto", "112"]);
    out.lines().count()
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn privileged_one_agent_converges_on_5000_realistic_nodes() {
    let ns = TestNetns::new("pnkscale");
    ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
    // The peers' addresses are on-link through a veth pair in the node.
    ns.exec_ok(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "up0",
    ]);
    ns.exec_ok(&["ip", "addr", "add", "172.16.255.254/16", "dev", "eth0"]);
    for l in ["eth0", "up0"] {
        ns.exec_ok(&["ip", "link", "set", l, "up"]);
    }
    let work = tempfile::tempdir().unwrap();
    let podnetd = Path::new(env!("CARGO_BIN_EXE_podnetctl")).with_file_name("podnetd");
    let conf = work.path().join("net-conf.json");
    std::fs::write(
        &conf,
        json!({"Network": "10.0.0.0/8", "Backend": {"Type": "host-gw"}}).to_string(),
    )
    .unwrap();

    let dir = work.path().to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ns_path = ns.path();
    let server = std::thread::spawn(move || {
        podnet_testkit::in_netns(&ns_path, || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), &dir)
                        .await
                        .unwrap();
                    let t = Instant::now();
                    for i in 0..NODES {
                        emu.shared.change(|w| w.create(realistic(i))).unwrap();
                    }
                    emu.shared
                        .change(|w| w.create(podnet_kube_emu::node("bench", &["10.255.255.0/24"])))
                        .unwrap();
                    eprintln!("{NODES} realistic Nodes created in {:?}", t.elapsed());
                    tx.send(emu.kubeconfig("podnet")).unwrap();
                    let _ = stop_rx.await;
                })
        })
    });
    let kubeconfig = rx.recv().unwrap();
    let spawned = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(&podnetd)
        .args([
            "--node-name",
            "bench",
            "--public-ip",
            "172.16.255.254",
            "--store",
            "kube",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--net-conf")
        .arg(&conf)
        .arg("--run-dir")
        .arg(work.path().join("run"))
        .arg("--ipam-dir")
        .arg(work.path().join("ipam"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.path().join("podnetd.log")).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let outcome = (|| {
        while our_routes(&ns) < NODES {
            if spawned.elapsed() > CAP {
                return Err(
                    std::fs::read_to_string(work.path().join("podnetd.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok((spawned.elapsed(), peak_rss_kib(pid)))
    })();
    let _ = child.kill();
    let _ = child.wait();
    let _ = stop_tx.send(());
    let _ = server.join();
    let (took, rss) = outcome.unwrap_or_else(|log| panic!("no convergence; podnetd's log:\n{log}"));
    eprintln!(
        "podnetd on {NODES} Nodes: all routes after {took:?}, peak RSS {:.1} MiB",
        rss as f64 / 1024.0
    );
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB");
}
