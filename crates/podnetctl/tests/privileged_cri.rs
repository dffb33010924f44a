//! kubelet's path: a real containerd (Debian's 1.6), started by the test in
//! a lab node's namespace, asked over CRI for pod sandboxes as kubelet asks,
//! calling podnet through go-cni and libcni. podnet and its conflist are
//! put in place by `podnet install-cni`, as the DaemonSet does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestLab;
use podnet_testkit::containerd::{Containerd, Cri};
use serde_json::{Value, json};

const CTL: &str = env!("CARGO_BIN_EXE_podnetctl");
const CAP: Duration = Duration::from_secs(30);

/// A lab node with a containerd of its own, podnet installed into it.
struct CriNode {
    ctrd: Containerd,
    ns: String,
    dir: PathBuf,
}

impl CriNode {
    fn new(lab: &TestLab, i: usize) -> CriNode {
        let node = &lab.record()["nodes"][i];
        let (name, ns) = (node["name"].as_str().unwrap(), node["ns"].as_str().unwrap());
        let dir = lab.path().join(name);
        let ctrd = Containerd::start(&format!("/var/run/netns/{ns}"));
        // containerd 1.6 takes one bin dir: podnet, and the loopback it
        // sets up in every sandbox itself.
        std::os::unix::fs::symlink("/usr/lib/cni/loopback", ctrd.cni_bin().join("loopback"))
            .unwrap();
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": "podnet",
            "plugins": [{
                "type": "podnet",
                "subnetFile": dir.join("run/subnet.json"),
                "logFile": dir.join("podnet.log"),
                "ipam": { "dataDir": dir.join("ipam") },
            }],
        });
        let src = ctrd.dir.join("podnet.conflist");
        std::fs::write(&src, conflist.to_string()).unwrap();
        let plugin = Path::new(CTL).with_file_name("podnet");
        let out = Command::new(plugin)
            .arg("install-cni")
            .arg("--bin-dir")
            .arg(ctrd.cni_bin())
            .arg("--conf-dir")
            .arg(ctrd.cni_conf())
            .arg("--conflist")
            .arg(&src)
            .arg("--subnet-file")
            .arg(dir.join("run/subnet.json"))
            .output()
            .unwrap();
        assert!(out.status.success(), "install-cni: {out:?}");
        CriNode {
            ctrd,
            ns: ns.to_owned(),
            dir,
        }
    }

    fn subnet(&self) -> ipnet::IpNet {
        let file: Value =
            serde_json::from_slice(&std::fs::read(self.dir.join("run/subnet.json")).unwrap())
                .unwrap();
        file["nodeSubnets"][0]["subnet"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Addresses podnet's IPAM holds on this node.
    fn allocated(&self) -> BTreeSet<String> {
        let raw = std::fs::read(self.dir.join("ipam/podnet/state.json")).unwrap_or_default();
        let state: Value = serde_json::from_slice(&raw).unwrap_or_default();
        state["allocations"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// podnet's host veths in the node (`pn` + 12 hex digits).
    fn host_veths(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-n", &self.ns, "-o", "link", "show", "type", "veth"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1)?.split('@').next())
            .filter(|n| n.starts_with("pn") && n.len() == 14)
            .map(str::to_owned)
            .collect()
    }
}

/// Runs a pod and returns its id, its first address and its netns path.
fn run(cri: &mut Cri, name: &str) -> (String, String, String) {
    let started = Instant::now();
    let id = cri
        .run_pod(name)
        .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}"));
    eprintln!("RunPodSandbox {name}: {:?}", started.elapsed());
    let sandbox = cri.sandbox(&id).unwrap();
    let ip = sandbox
        .ips
        .first()
        .cloned()
        .expect("the sandbox has an address");
    (id, ip, sandbox.netns.expect("the sandbox has a netns"))
}

fn stop_and_remove(cri: &mut Cri, id: &str) {
    cri.stop(id).unwrap();
    cri.remove(id).unwrap();
}

/// What the pod at `from` is seen as by a server in the pod at `to`.
fn seen_by(from: &str, to_netns: &str, to_ip: &str) -> String {
    let server = podnet_testkit::serve_peer_addr(to_netns, &format!("{to_ip}:0"));
    podnet_testkit::seen_as(from, &server.to_string()).unwrap()
}

#[test]
fn privileged_cri_sandboxes_get_podnet_addresses_and_leave_nothing() {
    let lab = TestLab::up(1, 0);
    let node = CriNode::new(&lab, 0);
    let mut cri = node.ctrd.cri();
    let (a, a_ip, a_ns) = run(&mut cri, "a");
    let (b, b_ip, b_ns) = run(&mut cri, "b");
    let subnet = node.subnet();
    for ip in [&a_ip, &b_ip] {
        assert!(
            subnet.contains(&ip.parse::<std::net::IpAddr>().unwrap()),
            "{ip} is not from the node's subnet {subnet}"
        );
    }
    assert_ne!(a_ip, b_ip);
    assert_eq!(
        node.allocated(),
        BTreeSet::from([a_ip.clone(), b_ip.clone()])
    );
    assert_eq!(node.host_veths().len(), 2);
    assert!(podnet_testkit::ping(&a_ns, &b_ip), "a cannot reach b");
    assert_eq!(seen_by(&a_ns, &b_ns, &b_ip), a_ip, "b sees a through NAT");
    assert_eq!(seen_by(&b_ns, &a_ns, &a_ip), b_ip, "a sees b through NAT");

    stop_and_remove(&mut cri, &a);
    stop_and_remove(&mut cri, &b);
    assert_eq!(node.allocated(), BTreeSet::new(), "addresses still held");
    assert_eq!(node.host_veths(), Vec::<String>::new(), "veths left behind");
}

#[test]
fn privileged_cri_sandbox_outlives_a_sigkilled_containerd() {
    let lab = TestLab::up(1, 0);
    let mut node = CriNode::new(&lab, 0);
    let (id, ip, _) = run(&mut node.ctrd.cri(), "c");
    node.ctrd.kill();
    node.ctrd.restart();
    let mut cri = node.ctrd.cri();
    let after = cri.sandbox(&id).unwrap();
    assert_eq!(after.ips.first(), Some(&ip), "the sandbox lost its address");
    assert!(
        podnet_testkit::ping(&format!("/var/run/netns/{}", node.ns), &ip),
        "the node cannot reach the pod after the restart"
    );
    stop_and_remove(&mut cri, &id);
    assert_eq!(node.allocated(), BTreeSet::new(), "addresses still held");
    assert_eq!(node.host_veths(), Vec::<String>::new(), "veths left behind");
    let started = Instant::now();
    while !node.ctrd.shims().is_empty() {
        assert!(started.elapsed() < CAP, "a shim outlived its sandbox");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn privileged_cri_pods_on_two_nodes_reach_each_other() {
    let lab = TestLab::up(2, 0);
    let nodes = [CriNode::new(&lab, 0), CriNode::new(&lab, 1)];
    let mut cris: Vec<Cri> = nodes.iter().map(|n| n.ctrd.cri()).collect();
    let (a, a_ip, a_ns) = run(&mut cris[0], "x");
    let (b, b_ip, b_ns) = run(&mut cris[1], "y");
    assert!(
        nodes[1]
            .subnet()
            .contains(&b_ip.parse::<std::net::IpAddr>().unwrap())
    );
    assert!(podnet_testkit::ping(&a_ns, &b_ip), "x cannot reach y");
    assert_eq!(seen_by(&a_ns, &b_ns, &b_ip), a_ip, "y sees x through NAT");
    assert_eq!(seen_by(&b_ns, &a_ns, &a_ip), b_ip, "x sees y through NAT");
    stop_and_remove(&mut cris[0], &a);
    stop_and_remove(&mut cris[1], &b);
}

/// containerd 1.6 never sends CNI GC: a sandbox whose containerd state is
/// wiped never gets its DEL. The agent reclaims its address once its veth
/// has been gone for the grace period, and never while it is there.
#[test]
fn privileged_cri_a_lost_del_is_reclaimed_by_the_agent() {
    let lab = TestLab::up_with(1, 0, &["--ipam-reclaim-after", "2"]);
    let mut node = CriNode::new(&lab, 0);
    let (_, ip, _) = run(&mut node.ctrd.cri(), "w");
    // Past the grace, the pod still has its veth: it keeps its address.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(node.allocated(), BTreeSet::from([ip.clone()]));
    node.ctrd.wipe();
    let wiped = Instant::now();
    while !node.host_veths().is_empty() {
        assert!(wiped.elapsed() < CAP, "the pod's veth outlived its netns");
        std::thread::sleep(Duration::from_millis(100));
    }
    while !node.allocated().is_empty() {
        assert!(
            wiped.elapsed() < CAP,
            "{ip} was never reclaimed:\n{}",
            std::fs::read_to_string(node.dir.join("podnetd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("reclaimed {:?} after the wipe", wiped.elapsed());
    assert_eq!(common::log_lines(&lab, "node1", "released"), 1);
}

/// Uninstalling as the README says: `uninstall-cni` first swaps in the
/// uninstalling conflist, so a new sandbox is refused (ADD: try again
/// later) while a running pod's StopPodSandbox still tears it down, and it
/// never sticks; with the last pod gone, the conflist and the plugin go.
#[test]
fn privileged_cri_uninstall_strands_no_pod() {
    let lab = TestLab::up(1, 0);
    let node = CriNode::new(&lab, 0);
    let mut cri = node.ctrd.cri();
    let (a, _, _) = run(&mut cri, "a");
    let plugin = Path::new(CTL).with_file_name("podnet");
    let uninstall = || {
        let out = Command::new("ip")
            .args(["netns", "exec", &node.ns])
            .arg(&plugin)
            .arg("uninstall-cni")
            .arg("--bin-dir")
            .arg(node.ctrd.cni_bin())
            .arg("--conf-dir")
            .arg(node.ctrd.cni_conf())
            .output()
            .unwrap();
        assert!(out.status.success(), "uninstall-cni: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(uninstall().contains("podnet pods remain"));
    // containerd reloads the conflist on its own: poll until a new
    // sandbox is refused.
    let started = Instant::now();
    let refused = loop {
        match cri.run_pod("b") {
            Err(e) => break e.message().to_owned(),
            Ok(id) => stop_and_remove(&mut cri, &id),
        }
        assert!(started.elapsed() < CAP, "new pods still attached");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(refused.contains("being uninstalled"), "{refused}");
    stop_and_remove(&mut cri, &a);
    assert_eq!(node.allocated(), BTreeSet::new(), "addresses still held");
    assert_eq!(node.host_veths(), Vec::<String>::new(), "veths left behind");
    uninstall();
    assert!(!node.ctrd.cni_bin().join("podnet").exists());
    assert!(
        std::fs::read_dir(node.ctrd.cni_conf())
            .unwrap()
            .next()
            .is_none(),
        "the conflist is gone"
    );
}
