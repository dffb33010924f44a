//! A throwaway node for plugin tests: a node namespace, an IPAM data dir,
//! and a way to run the real `podnet` binary inside the node with a real
//! environment and stdin.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Child, Stdio};

pub use podnet_testkit::TestNetns;
use serde_json::{Value, json};

pub const PLUGIN: &str = env!("CARGO_BIN_EXE_podnet");

pub struct Node {
    pub ns: TestNetns,
    pub data: tempfile::TempDir,
}

/// What one invocation printed.
#[derive(Debug)]
pub struct Outcome {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// The error code; panics if the call succeeded.
    pub fn code(&self) -> u64 {
        assert!(!self.ok, "expected a failure, got {}", self.stdout);
        self.json()["code"].as_u64().unwrap()
    }

    pub fn expect_ok(self) -> Self {
        assert!(self.ok, "plugin failed: {} {}", self.stdout, self.stderr);
        self
    }
}

impl Node {
    pub fn new() -> Self {
        Node {
            ns: TestNetns::new("pntest-node"),
            data: tempfile::tempdir().unwrap(),
        }
    }

    /// A minimal single-stack config whose state lives in this test's dir.
    pub fn conf(&self, subnet: &str) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "testnet",
            "type": "podnet",
            "ipam": { "subnet": subnet, "dataDir": self.data.path() },
            // Never read the machine's real subnet file.
            "subnetFile": self.data.path().join("no-subnet.json"),
        })
    }

    /// Starts the plugin inside the node with `vars` on top of a clean env
    /// and `stdin` already written.
    pub fn spawn(&self, vars: &[(&str, &str)], stdin: &[u8]) -> Child {
        self.spawn_plugin(PLUGIN, vars, stdin)
    }

    /// Like [`Node::spawn`], for any plugin binary.
    pub fn spawn_plugin(&self, program: &str, vars: &[(&str, &str)], stdin: &[u8]) -> Child {
        let mut cmd = self.ns.command(program);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        // A plugin may answer before reading all of stdin; ignore EPIPE.
        let _ = child.stdin.take().unwrap().write_all(stdin);
        child
    }

    /// Runs the plugin inside the node and collects what it printed.
    pub fn invoke(&self, vars: &[(&str, &str)], stdin: &[u8]) -> Outcome {
        self.invoke_plugin(PLUGIN, vars, stdin)
    }

    pub fn invoke_plugin(&self, program: &str, vars: &[(&str, &str)], stdin: &[u8]) -> Outcome {
        let out = self
            .spawn_plugin(program, vars, stdin)
            .wait_with_output()
            .unwrap();
        Outcome {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The standard environment of one call.
    pub fn vars<'a>(
        command: &'a str,
        cid: &'a str,
        netns: &'a str,
        ifname: &'a str,
    ) -> [(&'a str, &'a str); 6] {
        [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", ifname),
            ("CNI_PATH", "/usr/lib/cni"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
            ),
        ]
    }

    pub fn run(
        &self,
        command: &str,
        cid: &str,
        netns: &str,
        ifname: &str,
        conf: &Value,
    ) -> Outcome {
        self.invoke(
            &Self::vars(command, cid, netns, ifname),
            conf.to_string().as_bytes(),
        )
    }

    pub fn add(&self, cid: &str, pod: &TestNetns, conf: &Value) -> Outcome {
        self.run("ADD", cid, &pod.path(), "eth0", conf)
    }

    pub fn del(&self, cid: &str, netns: &str, conf: &Value) -> Outcome {
        self.run("DEL", cid, netns, "eth0", conf)
    }

    pub fn check(&self, cid: &str, pod: &TestNetns, conf: &Value, prev: &Value) -> Outcome {
        let mut conf = conf.clone();
        conf["prevResult"] = prev.clone();
        self.run("CHECK", cid, &pod.path(), "eth0", &conf)
    }

    /// The host-side veths of pods (podnet's `pn` prefix).
    pub fn pod_veths(&self) -> Vec<String> {
        self.ns
            .links()
            .into_iter()
            .filter(|l| l.starts_with("pn"))
            .collect()
    }

    /// Addresses currently allocated in network `testnet`.
    pub fn allocated(&self) -> Vec<String> {
        let path = self.data.path().join("testnet/state.json");
        let Ok(raw) = std::fs::read_to_string(path) else {
            return Vec::new();
        };
        let state: Value = serde_json::from_str(&raw).unwrap();
        state["allocations"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }
}

/// The address (without prefix) of the first IP in a result.
pub fn first_ip(result: &Value) -> String {
    let addr = result["ips"][0]["address"].as_str().unwrap();
    addr.split('/').next().unwrap().to_owned()
}

/// Runs a shell snippet inside a namespace and returns its stdout.
pub fn sh(ns: &TestNetns, script: &str) -> String {
    let out = ns.command("sh").args(["-c", script]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// CNI_PATH for chains: podnet's own directory first, then the reference
/// plugins.
pub fn cni_path() -> String {
    let dir = std::path::Path::new(PLUGIN).parent().unwrap();
    format!("{}:/usr/lib/cni", dir.display())
}

impl Node {
    /// Runs a conflist the way a runtime does: ADD and CHECK in order, DEL
    /// in reverse; `name` and `cniVersion` from the list; `prevResult`
    /// threaded through ADD, and the final result given to CHECK and DEL;
    /// `runtimeConfig` passed to plugins that declare the capability.
    pub fn chain(
        &self,
        command: &str,
        cid: &str,
        pod: &TestNetns,
        list: &Value,
        runtime: &Value,
        prev: Option<&Value>,
    ) -> Result<Option<Value>, String> {
        let mut plugins: Vec<Value> = list["plugins"].as_array().unwrap().clone();
        if command == "DEL" {
            plugins.reverse();
        }
        let path = cni_path();
        let netns = pod.path();
        let vars = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", path.as_str()),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
            ),
        ];
        let mut result = prev.cloned();
        for mut plugin in plugins {
            plugin["name"] = list["name"].clone();
            plugin["cniVersion"] = list["cniVersion"].clone();
            if let Some(caps) = plugin
                .get("capabilities")
                .and_then(Value::as_object)
                .cloned()
            {
                let mut rc = serde_json::Map::new();
                for (cap, on) in caps {
                    if on == json!(true) && !runtime[&cap].is_null() {
                        rc.insert(cap.clone(), runtime[&cap].clone());
                    }
                }
                plugin["runtimeConfig"] = Value::Object(rc);
            }
            if let Some(prev) = &result {
                plugin["prevResult"] = prev.clone();
            }
            let kind = plugin["type"].as_str().unwrap().to_owned();
            let program = if kind == "podnet" {
                PLUGIN.to_owned()
            } else {
                format!("/usr/lib/cni/{kind}")
            };
            let out = self.invoke_plugin(&program, &vars, plugin.to_string().as_bytes());
            if !out.ok {
                return Err(format!("{kind} {command}: {} {}", out.stdout, out.stderr));
            }
            if command == "ADD" {
                result = Some(out.json());
            }
        }
        Ok(if command == "ADD" { result } else { None })
    }
}

/// An "outside world" namespace wired to `host` by a veth: the host is
/// 192.0.2.1 and the outside host 192.0.2.2, with no route back to any pod
/// subnet, so replies reach a pod only through NAT or a DNAT'd hostPort.
pub fn outside(host: &TestNetns) -> TestNetns {
    let ext = TestNetns::new("pntest-ext");
    host.exec_ok(&[
        "ip",
        "link",
        "add",
        "ext0",
        "type",
        "veth",
        "peer",
        "name",
        "ext1",
        "netns",
        ext.name(),
    ]);
    host.exec_ok(&["ip", "addr", "add", "192.0.2.1/24", "dev", "ext0"]);
    host.exec_ok(&["ip", "link", "set", "ext0", "up"]);
    ext.exec_ok(&["ip", "addr", "add", "192.0.2.2/24", "dev", "ext1"]);
    ext.exec_ok(&["ip", "link", "set", "ext1", "up"]);
    ext
}
