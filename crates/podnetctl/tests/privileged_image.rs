//! podnet's image, built with podman offline (FROM scratch), runs a lab
//! node's agent with exactly the manifest's capabilities and mounts, and
//! that node passes `lab check` with the others.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::TestLab;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container};
use podnet_testkit::podman::Podman;
use serde::Deserialize;
use serde_json::Value;

const MANIFEST: &str = include_str!("../../../deploy/podnet.yaml");

fn manifest<T: serde::de::DeserializeOwned>(kind: &str) -> T {
    serde_yaml::Deserializer::from_str(MANIFEST)
        .map(|doc| Value::deserialize(doc).unwrap())
        .find(|v| v["kind"] == kind)
        .map(|v| serde_json::from_value(v).unwrap())
        .unwrap()
}

#[test]
fn privileged_the_image_runs_the_agent_with_the_manifests_privileges() {
    let ctx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/podnet-image");
    assert!(
        ctx.join("Containerfile").exists(),
        "no image context in {}: run scripts/image-context.sh (test.sh does)",
        ctx.display()
    );
    let lab = TestLab::up_with(2, 1, &["--store", "kube"]);
    lab.check_until_ok("the lab before");
    let r = lab.record();
    let node = &r["nodes"][1];
    let (name, ns) = (node["name"].as_str().unwrap(), node["ns"].as_str().unwrap());
    let netns = format!("/var/run/netns/{ns}");
    let node_dir = lab.path().join(name);
    let tmp = tempfile::tempdir().unwrap();
    let podman = Podman::new(tmp.path(), &netns, "");
    let ds: DaemonSet = manifest("DaemonSet");
    let pod = ds.spec.unwrap().template.spec.unwrap();
    let c: &Container = &pod.containers[0];
    // Built under the manifest's name (build-image.sh's, as the manifest
    // test checks).
    let image = c.image.clone().unwrap();
    let started = Instant::now();
    podman.ok(&[
        "build",
        "--quiet",
        "--network",
        "none",
        "-t",
        &image,
        ctx.to_str().unwrap(),
    ]);
    eprintln!("image built offline in {:?}", started.elapsed());
    // The wireguard backend's own container (deploy/wireguard-go.yaml)
    // runs the image's wireguard-go.
    let version = podman.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/usr/bin/wireguard-go",
        &image,
        "--version",
    ]);
    assert!(version.contains("wireguard-go v"), "{version}");
    // Loaded into containerd as an operator would, it has the name the
    // manifest asks for: kubelet finds it without a pull.
    let archive = tmp.path().join("podnet.tar");
    podman.ok(&["save", "-o", archive.to_str().unwrap(), &image]);
    let ctrd_ns = podnet_testkit::TestNetns::new("pntest-imgctrd");
    let containerd = podnet_testkit::containerd::Containerd::start(&ctrd_ns.path());
    let names = containerd.import_image(&archive);
    assert!(names.contains(&image), "{image} not among {names:?}");
    drop(containerd);

    // What the DaemonSet gives podnetd: the ConfigMap at /etc/podnet, the
    // host paths, the capabilities, NODE_NAME.
    let cm: ConfigMap = manifest("ConfigMap");
    let config = tmp.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    for (file, text) in cm.data.unwrap() {
        std::fs::write(config.join(file), text).unwrap();
    }
    // The lab's own net-conf (its cluster CIDR), in the ConfigMap's place.
    std::fs::copy(
        lab.path().join("net-conf.json"),
        config.join("net-conf.json"),
    )
    .unwrap();
    let cni_conf = tmp.path().join("net.d");
    std::fs::create_dir_all(&cni_conf).unwrap();
    let host_dir = |host: &str| -> PathBuf {
        match host {
            "/run/podnet" => node_dir.join("run"),
            "/var/lib/podnet/ipam" => node_dir.join("ipam"),
            "/var/lib/podnet/state" => node_dir.join("state"),
            "/etc/cni/net.d" => cni_conf.clone(),
            other => panic!("the manifest mounts {other}: map it here"),
        }
    };
    let mut run: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), "podnetd".into()];
    run.extend([
        "--network".into(),
        "host".into(),
        "--cap-drop".into(),
        "all".into(),
    ]);
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.privileged, Some(false));
    for cap in sc.capabilities.as_ref().unwrap().add.iter().flatten() {
        run.extend(["--cap-add".into(), cap.clone()]);
    }
    run.extend(["-e".into(), format!("NODE_NAME={name}")]);
    for m in c.volume_mounts.iter().flatten() {
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .unwrap();
        let source = match &volume.host_path {
            Some(h) => host_dir(&h.path),
            None => config.clone(), // the ConfigMap
        };
        // The manifest's host paths are DirectoryOrCreate.
        std::fs::create_dir_all(&source).unwrap();
        let ro = if m.read_only == Some(true) { ":ro" } else { "" };
        run.extend([
            "-v".into(),
            format!("{}:{}{ro}", source.display(), m.mount_path),
        ]);
    }
    // The lab's API server and its service account, in place of the
    // in-cluster one; the node's underlay address.
    let kube = lab.path().join("kube");
    run.extend([
        "-v".into(),
        format!("{0}:{0}:ro", kube.display()),
        image.clone(),
    ]);
    run.extend(c.command.iter().flatten().skip(1).cloned());
    run.push(format!(
        "--kubeconfig={}",
        kube.join("podnet.kubeconfig").display()
    ));
    run.push(format!(
        "--public-ip={}",
        node["addrs"][0].as_str().unwrap()
    ));

    let (ok, text) = lab.ctl(&["agent", name, "stop"]);
    assert!(ok, "{text}");
    let args: Vec<&str> = run.iter().map(String::as_str).collect();
    podman.ok(&args);

    // Ready means the lease, the subnet file and every peer's routes, and
    // the egress table written with the image's nft.
    let started = Instant::now();
    while podnet_testkit::http_get(&netns, 9411, "/readyz").map(|(code, _)| code) != Some(200) {
        let logs = podman.ok(&["logs", "podnetd"]);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never ready:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("the image's agent ready after {:?}", started.elapsed());
    let pid = podman.ok(&["inspect", "--format", "{{.State.Pid}}", "podnetd"]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    assert_eq!(cap_eff, "0000000000003000", "only NET_ADMIN and NET_RAW");
    assert!(
        cni_conf
            .join(podnet_core::cni::conflist::CONFLIST_NAME)
            .exists(),
        "the conflist was installed"
    );
    let (_, page) = podnet_testkit::http_get(&netns, 9412, "/metrics").unwrap();
    assert!(page.contains("podnet_peers 1"), "{page}");

    // A node that joins after is reached, and reaches the image's node.
    let (ok, text) = lab.ctl(&["add-node"]);
    assert!(ok, "{text}");
    lab.check_until_ok("with one node's agent running from the image");

    // The uninstall's last step, as the README gives it: the DaemonSet
    // gone, podnetd --cleanup from the image (its entrypoint), with the
    // node's network, the agent's capabilities and its run dir.
    podman.ok(&["stop", "podnetd"]);
    let run_dir = format!("{}:/run/podnet", node_dir.join("run").display());
    podman.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "--cap-drop",
        "all",
        "--cap-add",
        "NET_ADMIN",
        "--cap-add",
        "NET_RAW",
        "-v",
        &run_dir,
        &image,
        "--cleanup",
    ]);
    let sh = |script: &str| common::sh(ns, script);
    assert_eq!(sh("ip route show proto 112"), "", "its routes");
    assert_eq!(
        sh("nft list table inet podnet 2>/dev/null"),
        "",
        "its table"
    );
    assert!(
        !node_dir.join("run/subnet.json").exists(),
        "its subnet file"
    );
}
