//! The lab on the Kubernetes API store, against the emulated API server
//! (no real kube-apiserver can be installed here): the same matrix as on
//! the other stores, nodes joining and leaving, annotations removed by
//! hand, the NetworkUnavailable condition, and the API server frozen for
//! 30 s under a ping.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{TestLab, Thaw, signal};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};

/// Runs `op` as the lab's admin from the external host's namespace.
fn admin<T: Send>(lab: &TestLab, op: impl AsyncFnOnce(Api<Node>) -> T + Send) -> T {
    let ext = lab.record()["external_ns"].as_str().unwrap().to_owned();
    let path = lab.path().join("kube/admin.kubeconfig");
    podnet_testkit::in_netns(&format!("/var/run/netns/{ext}"), || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let file = kube::config::Kubeconfig::read_from(&path).unwrap();
                let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
                    .await
                    .unwrap();
                op(Api::all(kube::Client::try_from(config).unwrap())).await
            })
    })
}

fn annotation(lab: &TestLab, node: &str, key: &str) -> Option<String> {
    let node = node.to_owned();
    admin(lab, async move |api| api.get(&node).await.unwrap())
        .metadata
        .annotations
        .and_then(|a| a.get(key).cloned())
}

#[test]
fn privileged_kube_lab_passes_and_nodes_join_and_leave() {
    let lab = TestLab::up_with(2, 1, &["--store", "kube"]);
    lab.check_until_ok("host-gw lab on the Kubernetes API");

    // Each agent reported its network up once its routes were in place.
    let node1 = admin(&lab, async |api| api.get("node1").await.unwrap());
    let conditions = node1.status.unwrap().conditions.unwrap();
    let up = conditions
        .iter()
        .find(|c| c.type_ == "NetworkUnavailable")
        .expect("the NetworkUnavailable condition");
    assert_eq!(up.status, "False");
    assert_eq!(up.reason.as_deref(), Some("PodnetIsUp"));

    let (ok, text) = lab.ctl(&["add-node"]);
    assert!(ok, "{text}");
    lab.check_until_ok("a node joined");
    let (ok, text) = lab.ctl(&["remove-node", "node1"]);
    assert!(ok, "{text}");
    lab.check_until_ok("a node's Node object was deleted");

    // Annotations removed by hand come back.
    let wipe = serde_json::json!({"metadata": {"annotations": {"podnet.io/backend-type": null}}});
    admin(&lab, async move |api| {
        api.patch_status("node2", &PatchParams::default(), &Patch::Merge(&wipe))
            .await
            .unwrap();
    });
    let started = Instant::now();
    while annotation(&lab, "node2", "podnet.io/backend-type").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never restored"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("annotation restored after {:?}", started.elapsed());
    lab.check_until_ok("after the annotations came back");
}

#[test]
fn privileged_kube_api_down_for_30s_loses_no_packet() {
    let lab = TestLab::up_with(2, 1, &["--store", "kube"]);
    lab.check_until_ok("host-gw lab on the Kubernetes API");
    let r = lab.record();
    let api_pid = r["kube"]["pid"].as_i64().unwrap();
    let ns = r["pods"][0]["ns"].as_str().unwrap().to_owned();
    let to = r["pods"][1]["ips"][0].as_str().unwrap().to_owned();

    let ping = common::start_ping(&ns, &to, 720);
    std::thread::sleep(Duration::from_secs(2));
    let _thaw = Thaw(vec![api_pid]);
    signal(&[api_pid], "-STOP");
    std::thread::sleep(Duration::from_secs(30));
    signal(&[api_pid], "-CONT");
    let summary = common::ping_summary(ping);
    eprintln!("30 s with the API server frozen: {summary}");
    assert!(
        summary.starts_with("720 packets transmitted, 720 received"),
        "{summary}"
    );
    for node in ["node1", "node2"] {
        assert_eq!(
            common::log_lines(&lab, node, "route removed"),
            0,
            "{node} dropped a route"
        );
        let down = common::log_lines(&lab, node, "store unavailable");
        eprintln!("{node}: {down} lines on the outage");
        assert!(
            (1..=2).contains(&down),
            "{node}: {down} lines on the outage"
        );
    }
    let (ok, text) = lab.ctl(&["add-node"]);
    assert!(ok, "add-node after the outage:\n{text}");
    lab.check_until_ok("a node joined after the outage");
}

/// podnetd as the DaemonSet runs it: the in-cluster config (the API
/// server from KUBERNETES_SERVICE_HOST and _PORT, the service account's
/// token, CA and namespace at their fixed path, here on a tmpfs in a mount
/// namespace of its own), and no --public-ip: its address found from the
/// default route.
#[test]
fn privileged_the_in_cluster_config_and_a_detected_public_ip() {
    let lab = TestLab::up_with(2, 1, &["--store", "kube"]);
    lab.check_until_ok("the lab before");
    let r = lab.record();
    let node = &r["nodes"][1];
    let (name, ns) = (node["name"].as_str().unwrap(), node["ns"].as_str().unwrap());
    let addr = node["addrs"][0].as_str().unwrap();
    let pid = node["pid"].as_i64().unwrap();
    // The lab's own command line, less the kubeconfig and the address.
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    let mut args: Vec<&str> = cmdline.split('\0').filter(|a| !a.is_empty()).collect();
    for flag in ["--kubeconfig", "--public-ip"] {
        let at = args.iter().position(|a| *a == flag).unwrap();
        args.drain(at..at + 2);
    }
    let kubeconfig = std::fs::read_to_string(lab.path().join("kube/podnet.kubeconfig")).unwrap();
    let field = |key: &str| {
        kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (server, ca, token) = (
        field("server:"),
        field("certificate-authority:"),
        field("token:"),
    );
    let (host, port) = server
        .trim_start_matches("https://")
        .rsplit_once(':')
        .unwrap();
    let (ok, text) = lab.ctl(&["agent", name, "stop"]);
    assert!(ok, "{text}");

    let sa = "/run/secrets/kubernetes.io/serviceaccount";
    let script = format!(
        "mount -t tmpfs tmpfs /run && mkdir -p {sa} && cp {ca} {sa}/ca.crt && \
         printf %s {token} > {sa}/token && printf podnet-system > {sa}/namespace && \
         exec \"$@\""
    );
    let log = lab.path().join(name).join("podnetd-incluster.log");
    let mut child = std::process::Command::new("ip")
        .args([
            "netns", "exec", ns, "unshare", "--mount", "sh", "-c", &script, "sh",
        ])
        .args(&args)
        .env("KUBERNETES_SERVICE_HOST", host)
        .env("KUBERNETES_SERVICE_PORT", port)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    struct Stop<'a>(&'a mut std::process::Child);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .arg(self.0.id().to_string())
                .status();
            let _ = self.0.wait();
        }
    }
    let _stop = Stop(&mut child);
    let netns = format!("/var/run/netns/{ns}");
    let started = Instant::now();
    while podnet_testkit::http_get(&netns, 9411, "/readyz").map(|(code, _)| code) != Some(200) {
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never ready:\n{logged}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(&format!("lease acquired node={name} ip={addr} ")),
        "{logged}"
    );
    lab.check_until_ok("with the in-cluster agent");
}

/// The cluster's half of an uninstall: with the agents gone, `podnetctl
/// uninstall` takes podnet's annotations and its NetworkUnavailable
/// condition off every Node, and leaves another's condition alone.
#[test]
fn privileged_uninstall_takes_podnets_marks_off_every_node() {
    let lab = TestLab::up_with(2, 0, &["--store", "kube"]);
    lab.check_until_ok("the lab before");
    let mut other = podnet_kube_emu::node("other", &["10.244.9.0/24"]);
    other.status = Some(
        serde_json::from_value(serde_json::json!({"conditions": [{
        "type": "NetworkUnavailable", "status": "True", "reason": "NoRouteCreated"}]}))
        .unwrap(),
    );
    admin(&lab, async move |api| {
        api.create(&Default::default(), &other).await.unwrap();
    });
    for node in ["node1", "node2"] {
        let (ok, text) = lab.ctl(&["agent", node, "stop"]);
        assert!(ok, "{text}");
    }
    let ext = lab.record()["external_ns"].as_str().unwrap().to_owned();
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ext,
            env!("CARGO_BIN_EXE_podnetctl"),
            "uninstall",
            "--kubeconfig",
        ])
        .arg(lab.path().join("kube/admin.kubeconfig"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("2 of 3 Nodes had podnet's marks"), "{text}");
    let nodes = admin(&lab, async |api| {
        api.list(&Default::default()).await.unwrap().items
    });
    for node in nodes {
        let name = node.metadata.name.clone().unwrap();
        let annotations = node.metadata.annotations.unwrap_or_default();
        assert!(
            !annotations.keys().any(|k| k.starts_with("podnet.io/")),
            "{name}: {annotations:?}"
        );
        let conditions = node.status.and_then(|s| s.conditions).unwrap_or_default();
        let unavailable: Vec<_> = conditions
            .iter()
            .filter(|c| c.type_ == "NetworkUnavailable")
            .collect();
        match name.as_str() {
            "other" => assert_eq!(unavailable[0].reason.as_deref(), Some("NoRouteCreated")),
            _ => assert!(unavailable.is_empty(), "{name}: {unavailable:?}"),
        }
    }
}
