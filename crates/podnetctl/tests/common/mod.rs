//! A lab in a temp dir for tests, brought down even when a test fails.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const CTL: &str = env!("CARGO_BIN_EXE_podnetctl");
const CAP: Duration = Duration::from_secs(30);

pub struct TestLab {
    dir: tempfile::TempDir,
}

impl TestLab {
    pub fn up(nodes: usize, pods: usize) -> TestLab {
        TestLab::up_with(nodes, pods, &[])
    }

    /// A lab directory with nothing in it yet.
    pub fn empty() -> TestLab {
        podnet_testkit::require_root();
        TestLab {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `lab up` with extra flags (`--backend vxlan`, `--routed`, ...).
    pub fn up_with(nodes: usize, pods: usize, extra: &[&str]) -> TestLab {
        let lab = TestLab::empty();
        let (n, p) = (nodes.to_string(), pods.to_string());
        let mut args = vec!["up", "--nodes", &n, "--pods-per-node", &p];
        args.extend_from_slice(extra);
        let (ok, text) = lab.ctl(&args);
        assert!(ok, "lab up failed:\n{text}");
        lab
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("lab")
    }

    /// Runs `podnetctl lab <args> --dir <ours>`: (success, stdout+stderr).
    pub fn ctl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(CTL)
            .arg("lab")
            .args(args)
            .arg("--dir")
            .arg(self.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    pub fn json(&self, args: &[&str]) -> (bool, Value) {
        let mut with = args.to_vec();
        with.push("--json");
        let (ok, text) = self.ctl(&with);
        let start = text
            .find('{')
            .unwrap_or_else(|| panic!("no JSON in {text}"));
        let end = text.rfind('}').unwrap();
        (ok, serde_json::from_str(&text[start..=end]).unwrap())
    }

    /// The lab's own record (namespaces, addresses).
    pub fn record(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.path().join("lab.json")).unwrap())
            .unwrap()
    }

    /// Polls `lab check` until it passes or the cap is hit.
    pub fn check_until_ok(&self, what: &str) -> Value {
        let started = Instant::now();
        loop {
            let (ok, report) = self.json(&["check"]);
            if ok {
                eprintln!("{what}: all probes ok after {:?}", started.elapsed());
                return report;
            }
            assert!(
                started.elapsed() < CAP,
                "{what}: still failing after {CAP:?}: {report:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if Path::new(&self.path()).join("lab.json").exists() {
            let _ = self.ctl(&["down"]);
        }
    }
}

pub fn cells<'a>(report: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    report["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(move |c| c["kind"] == kind)
}

/// Starts `count` pings at 50 ms from namespace `ns` to `to`.
pub fn start_ping(ns: &str, to: &str, count: usize) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-i", "0.05", "-W", "1"])
        .args(["-c", &count.to_string(), to])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a ping and returns its "N packets transmitted, ..." line.
pub fn ping_summary(ping: Child) -> String {
    let out = ping.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_default()
        .to_owned()
}

/// How many lines of a lab node's agent log mention `needle`.
pub fn log_lines(lab: &TestLab, node: &str, needle: &str) -> usize {
    std::fs::read_to_string(lab.path().join(node).join("podnetd.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Runs a shell script inside `ns`; its trimmed stdout.
pub fn sh(ns: &str, script: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Sends `sig` (`-STOP`, `-CONT`, `-KILL`) to each of `pids`.
pub fn signal(pids: &[i64], sig: &str) {
    for pid in pids {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    }
}

/// Lets stopped processes run again even if the test fails midway, so
/// that the lab can be taken down.
pub struct Thaw(pub Vec<i64>);

impl Drop for Thaw {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
    }
}

/// Polls `ok` until it holds (at most 30 s); prints and returns how long
/// that took.
pub fn wait_for(what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < CAP, "{what}: not after {CAP:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = started.elapsed();
    eprintln!("{what}: after {took:?}");
    took
}

/// The namespace of the `i`th node (or other `kind` of the record).
pub fn ns_of(lab: &TestLab, kind: &str, i: usize) -> String {
    lab.record()[kind][i]["ns"].as_str().unwrap().to_owned()
}

/// The plugin's ADD of pod `cid` (its namespace at `pod_path`) on lab node
/// `node` (namespace `node_ns`), configured as the lab's own pods are.
/// Returns whether it succeeded, and its stdout as JSON.
pub fn add_pod(
    lab: &TestLab,
    node: &str,
    node_ns: &str,
    cid: &str,
    pod_path: &str,
) -> (bool, Value) {
    use std::io::Write;
    let dir = lab.path().join(node);
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "podnet", "type": "podnet",
        "subnetFile": dir.join("run/subnet.json"),
        "ipam": { "dataDir": dir.join("ipam") },
    });
    let plugin = Path::new(CTL).with_file_name("podnet");
    let mut child = Command::new("ip")
        .args(["netns", "exec", node_ns])
        .arg(plugin)
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", pod_path)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let result = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), result)
}
