//! Crash injection at every real step of ADD and DEL, then what the
//! runtime does next (a DEL, a retried ADD, a GC), and storms of
//! concurrent ADD, DEL and GC. After each: no address held twice, none
//! held without its attachment, no orphaned host veth, and an IPAM state
//! that parses. Needs the plugin built with feature `failpoints`
//! (`./test.sh` builds it so).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::{Node, PLUGIN, TestNetns, first_ip};
use podnet_core::names::host_veth_name;
use serde_json::{Value, json};

const ADD_POINTS: [&str; 5] = [
    "add-after-ipam-write",
    "add-after-veth",
    "add-after-node-batch",
    "add-after-pod-batch",
    "add-after-settle",
];

/// Whether the plugin under test was built with failpoints: a call armed
/// with a point it reaches must die of SIGKILL.
fn require_failpoints(node: &Node, conf: &Value) {
    let pod = TestNetns::new("pntest-pod");
    let status = armed(node, "ADD", "probe", &pod, conf, "add-after-veth").status;
    assert_eq!(
        status.signal(),
        Some(9),
        "{PLUGIN} has no failpoints: build it with --features podnet-cni/failpoints (./test.sh does)"
    );
    node.del("probe", &pod.path(), conf).expect_ok();
}

/// Runs `command` with `point` armed.
fn armed(
    node: &Node,
    command: &str,
    cid: &str,
    pod: &TestNetns,
    conf: &Value,
    point: &str,
) -> std::process::Output {
    let path = pod.path();
    let mut vars = Node::vars(command, cid, &path, "eth0").to_vec();
    vars.push(("PODNET_FAILPOINT", point));
    node.spawn(&vars, conf.to_string().as_bytes())
        .wait_with_output()
        .unwrap()
}

/// Runs `command` armed with `point`; it must die there.
fn crash(node: &Node, command: &str, cid: &str, pod: &TestNetns, conf: &Value, point: &str) {
    let out = armed(node, command, cid, pod, conf, point);
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{command} did not die at {point}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn gc(node: &Node, conf: &Value, alive: &[&str]) {
    let mut gc = conf.clone();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = alive
        .iter()
        .map(|c| json!({ "containerID": c, "ifname": "eth0" }))
        .collect();
    let vars = [("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")];
    node.invoke(&vars, gc.to_string().as_bytes()).expect_ok();
}

/// The node holds exactly the attachments in `alive`: one address each,
/// no other, a host veth each and no other, and a state that parses.
fn assert_exactly(node: &Node, alive: &[&str], what: &str) {
    let path = node.data.path().join("testnet/state.json");
    let raw = std::fs::read_to_string(&path).unwrap_or_else(|_| "{\"allocations\":{}}".into());
    let state: Value = serde_json::from_str(&raw)
        .unwrap_or_else(|e| panic!("{what}: the IPAM state does not parse ({e}): {raw}"));
    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    for a in state["allocations"].as_object().unwrap().values() {
        *owners
            .entry(a["containerId"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let want: BTreeMap<String, usize> = alive.iter().map(|c| (c.to_string(), 1)).collect();
    assert_eq!(owners, want, "{what}: addresses held");
    let veths: BTreeSet<String> = node.pod_veths().into_iter().collect();
    let want: BTreeSet<String> = alive.iter().map(|c| host_veth_name(c, "eth0")).collect();
    assert_eq!(veths, want, "{what}: host veths");
}

#[test]
fn privileged_killed_at_every_step_then_del_retry_or_gc() {
    let node = Node::new();
    let conf = node.conf("10.244.50.0/24");
    require_failpoints(&node, &conf);
    // A pod that lives through it all, untouched.
    let bystander = TestNetns::new("pntest-pod");
    let kept = first_ip(&node.add("bystander", &bystander, &conf).expect_ok().json());
    let mut scenarios = 0;
    for point in ADD_POINTS {
        for next in ["DEL", "retried ADD", "GC"] {
            let pod = TestNetns::new("pntest-pod");
            let cid = format!("{point}-{}", next.replace(' ', "-"));
            crash(&node, "ADD", &cid, &pod, &conf, point);
            match next {
                "DEL" => {
                    node.del(&cid, &pod.path(), &conf).expect_ok();
                }
                "retried ADD" => {
                    let ip = first_ip(&node.add(&cid, &pod, &conf).expect_ok().json());
                    assert_ne!(
                        ip, kept,
                        "{point}: the bystander's address handed out again"
                    );
                    assert_exactly(&node, &["bystander", &cid], &format!("{point}, retried"));
                    assert!(
                        pod.ping(&kept),
                        "{point}: the retried pod cannot reach the bystander"
                    );
                    node.del(&cid, &pod.path(), &conf).expect_ok();
                }
                _ => gc(&node, &conf, &["bystander"]),
            }
            assert_exactly(&node, &["bystander"], &format!("{point}, then {next}"));
            assert!(
                pod.links().iter().all(|l| l != "eth0"),
                "{point}: eth0 left in the pod"
            );
            scenarios += 1;
        }
    }
    // Killed halfway through DEL: the runtime calls DEL again, or GC.
    for next in ["DEL", "GC"] {
        let pod = TestNetns::new("pntest-pod");
        let cid = format!("del-halfway-{next}");
        node.add(&cid, &pod, &conf).expect_ok();
        crash(&node, "DEL", &cid, &pod, &conf, "del-halfway");
        if next == "DEL" {
            node.del(&cid, &pod.path(), &conf).expect_ok();
        } else {
            gc(&node, &conf, &["bystander"]);
        }
        assert_exactly(&node, &["bystander"], &format!("del-halfway, then {next}"));
        scenarios += 1;
    }
    assert!(
        bystander.ping("10.244.50.1"),
        "the bystander lost its gateway"
    );
    eprintln!("{scenarios} crash scenarios at 6 failpoints: nothing leaked or held twice");
}

#[test]
fn privileged_storm_of_64_concurrent_adds_then_dels_five_rounds() {
    let node = Node::new();
    let conf = node.conf("10.244.51.0/24");
    let stdin = conf.to_string();
    let pods: Vec<TestNetns> = (0..64).map(|_| TestNetns::new("pntest-pod")).collect();
    let paths: Vec<String> = pods.iter().map(TestNetns::path).collect();
    for round in 0..5 {
        let started = Instant::now();
        let cids: Vec<String> = (0..64).map(|i| format!("storm-{round}-{i}")).collect();
        let run_all = |command: &str| -> Vec<common::Outcome> {
            let children: Vec<_> = (0..64)
                .map(|i| {
                    node.spawn(
                        &Node::vars(command, &cids[i], &paths[i], "eth0"),
                        stdin.as_bytes(),
                    )
                })
                .collect();
            children
                .into_iter()
                .map(|c| {
                    let out = c.wait_with_output().unwrap();
                    common::Outcome {
                        ok: out.status.success(),
                        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                    }
                })
                .collect()
        };
        let adds = run_all("ADD");
        let errors: Vec<_> = adds.iter().filter(|o| !o.ok).map(|o| &o.stdout).collect();
        assert!(errors.is_empty(), "round {round}: ADD errors: {errors:?}");
        let ips: BTreeSet<String> = adds.iter().map(|o| first_ip(&o.json())).collect();
        assert_eq!(ips.len(), 64, "round {round}: an address handed out twice");
        let alive: Vec<&str> = cids.iter().map(String::as_str).collect();
        assert_exactly(&node, &alive, &format!("round {round} after ADD"));
        let dels = run_all("DEL");
        assert!(dels.iter().all(|o| o.ok), "round {round}: DEL errors");
        assert_exactly(&node, &[], &format!("round {round} after DEL"));
        eprintln!(
            "round {round}: 64 ADDs and 64 DELs in {:?}",
            started.elapsed()
        );
    }
}

/// A small deterministic generator (splitmix64): the storm is a function
/// of its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Five storms from fresh seeds, or the one `PODNET_STORM_SEED` names.
#[test]
fn privileged_mixed_storms_from_printed_seeds() {
    let seeds: Vec<u64> = match std::env::var("PODNET_STORM_SEED") {
        Ok(s) => vec![s.parse().expect("PODNET_STORM_SEED is a number")],
        Err(_) => {
            let mut rng = Rng(std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64);
            (0..5).map(|_| rng.next()).collect()
        }
    };
    for seed in seeds {
        storm(seed);
    }
}

/// ADD, DEL and GC on 24 sandboxes, 300 steps at random instants; the
/// sequence is a function of `seed`.
fn storm(seed: u64) {
    eprintln!("storm seed {seed} (PODNET_STORM_SEED={seed} repeats it)");
    let mut rng = Rng(seed);
    let node = Node::new();
    let conf = node.conf("10.244.52.0/24");
    let stdin = conf.to_string();
    const SLOTS: usize = 24;
    const STEPS: usize = 300;
    let pods: Vec<TestNetns> = (0..SLOTS).map(|_| TestNetns::new("pntest-pod")).collect();
    // Each slot is one sandbox: the runtime never runs two commands on
    // it at once, but runs different sandboxes concurrently, and GC
    // beside the sandboxes it lists (a new sandbox waits for GC: CRI-O
    // takes its plugin lock for GC, so a GC never misses an ADD in flight).
    let mut busy: Vec<Option<std::process::Child>> = (0..SLOTS).map(|_| None).collect();
    let mut attached = vec![false; SLOTS];
    let mut gc_running: Option<std::process::Child> = None;
    let mut gc_lists = vec![false; SLOTS];
    let mut errors = Vec::new();
    let cid = |i: usize| format!("mixed-{i}");
    let wait = |child: std::process::Child, what: String, errors: &mut Vec<String>| {
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            errors.push(format!("{what}: {}", String::from_utf8_lossy(&out.stdout)));
        }
    };
    let (mut adds, mut dels, mut gcs) = (0, 0, 0);
    for step in 0..STEPS {
        let slot = rng.below(SLOTS as u64) as usize;
        if let Some(child) = busy[slot].take() {
            wait(child, format!("step {step} slot {slot}"), &mut errors);
        }
        match rng.below(10) {
            0 => {
                if let Some(child) = gc_running.take() {
                    wait(child, "GC".into(), &mut errors);
                }
                // The runtime lists every sandbox it knows, in flight too.
                gc_lists.clone_from(&attached);
                let known: Vec<Value> = (0..SLOTS)
                    .filter(|&i| attached[i])
                    .map(|i| json!({ "containerID": cid(i), "ifname": "eth0" }))
                    .collect();
                let mut gc = conf.clone();
                gc["cniVersion"] = json!("1.1.0");
                gc["cni.dev/valid-attachments"] = Value::Array(known);
                let vars = [("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")];
                gc_running = Some(node.spawn(&vars, gc.to_string().as_bytes()));
                gcs += 1;
            }
            1..=5 if !attached[slot] => {
                if !gc_lists[slot]
                    && let Some(child) = gc_running.take()
                {
                    wait(child, "GC".into(), &mut errors);
                }
                let (id, path) = (cid(slot), pods[slot].path());
                let vars = Node::vars("ADD", &id, &path, "eth0");
                busy[slot] = Some(node.spawn(&vars, stdin.as_bytes()));
                attached[slot] = true;
                adds += 1;
            }
            _ => {
                let (id, path) = (cid(slot), pods[slot].path());
                let vars = Node::vars("DEL", &id, &path, "eth0");
                busy[slot] = Some(node.spawn(&vars, stdin.as_bytes()));
                attached[slot] = false;
                dels += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
    }
    for (slot, child) in busy.iter_mut().enumerate() {
        if let Some(child) = child.take() {
            wait(child, format!("final slot {slot}"), &mut errors);
        }
    }
    if let Some(child) = gc_running.take() {
        wait(child, "GC".into(), &mut errors);
    }
    assert!(errors.is_empty(), "seed {seed}: {errors:?}");
    let alive: Vec<String> = (0..SLOTS).filter(|&i| attached[i]).map(cid).collect();
    let alive: Vec<&str> = alive.iter().map(String::as_str).collect();
    assert_exactly(&node, &alive, &format!("seed {seed}"));
    for (i, pod) in pods.iter().enumerate() {
        node.del(&cid(i), &pod.path(), &conf).expect_ok();
    }
    gc(&node, &conf, &[]);
    assert_exactly(&node, &[], &format!("seed {seed}, all deleted"));
    eprintln!("seed {seed}: {adds} ADDs, {dels} DELs, {gcs} GCs, no error, no leak");
}
