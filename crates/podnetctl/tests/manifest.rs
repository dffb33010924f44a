//! deploy/podnet.yaml, read as the API server would: every object into
//! its `k8s-openapi` type, checked against deploy/rbac.yaml, the paths the
//! binaries use by default, and this crate's version.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use podnet_core::cluster::netconf::ClusterConf;
use podnet_core::cni::config::DEFAULT_DATA_DIR;
use podnet_core::cni::conflist::{CONFLIST_NAME, check_conflist};
use podnet_core::subnet_file::DEFAULT_SUBNET_FILE;
use serde::Deserialize;
use serde_json::Value;

const MANIFEST: &str = include_str!("../../../deploy/podnet.yaml");
const RBAC: &str = include_str!("../../../deploy/rbac.yaml");
const WIREGUARD_GO: &str = include_str!("../../../deploy/wireguard-go.yaml");

/// Each document, by kind.
fn objects(yaml: &str) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v = Value::deserialize(doc).unwrap();
        let kind = v["kind"]
            .as_str()
            .expect("every object has a kind")
            .to_owned();
        out.entry(kind).or_default().push(v);
    }
    out
}

fn one<T: serde::de::DeserializeOwned>(all: &BTreeMap<String, Vec<Value>>, kind: &str) -> T {
    let list = &all[kind];
    assert_eq!(list.len(), 1, "one {kind}");
    serde_json::from_value(list[0].clone()).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

/// The host path of the volume that `c` mounts at a prefix of `path`.
fn host_path_of(spec: &PodSpec, c: &Container, path: &str) -> String {
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| path.starts_with(&m.mount_path))
        .max_by_key(|m| m.mount_path.len())
        .unwrap_or_else(|| panic!("{}: nothing mounted at {path}", c.name));
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap();
    let host = &volume.host_path.as_ref().expect("a host path").path;
    format!("{host}{}", &path[mount.mount_path.len()..])
}

/// `--flag=value` in a container's command.
fn flag<'a>(c: &'a Container, name: &str) -> &'a str {
    c.command
        .iter()
        .flatten()
        .find_map(|a| a.strip_prefix(&format!("--{name}=")))
        .unwrap_or_else(|| panic!("{}: no --{name}", c.name))
}

#[test]
fn every_object_is_a_valid_kubernetes_object() {
    let all = objects(MANIFEST);
    let kinds: Vec<&String> = all.keys().collect();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "DaemonSet",
            "Namespace",
            "ServiceAccount"
        ]
    );
    let ns: Namespace = one(&all, "Namespace");
    let sa: ServiceAccount = one(&all, "ServiceAccount");
    assert_eq!(sa.metadata.namespace, ns.metadata.name);
}

#[test]
fn the_rbac_is_deploy_rbac_yaml() {
    let all = objects(MANIFEST);
    let rbac = objects(RBAC);
    let role: ClusterRole = one(&all, "ClusterRole");
    assert_eq!(role, one::<ClusterRole>(&rbac, "ClusterRole"));
    let binding: ClusterRoleBinding = one(&all, "ClusterRoleBinding");
    assert_eq!(
        binding,
        one::<ClusterRoleBinding>(&rbac, "ClusterRoleBinding")
    );
    let sa: ServiceAccount = one(&all, "ServiceAccount");
    let subject = &binding.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (Some(&subject.name), subject.namespace.as_ref()),
        (sa.metadata.name.as_ref(), sa.metadata.namespace.as_ref())
    );
    let ds: DaemonSet = one(&all, "DaemonSet");
    let spec = ds.spec.unwrap().template.spec.unwrap();
    assert_eq!(spec.service_account_name, sa.metadata.name);
}

#[test]
fn the_config_parses_and_points_where_the_binaries_look() {
    let all = objects(MANIFEST);
    let cm: ConfigMap = one(&all, "ConfigMap");
    let data = cm.data.unwrap();
    ClusterConf::parse(&data["net-conf.json"]).unwrap();
    let conflist = &data[CONFLIST_NAME];
    check_conflist(conflist.as_bytes()).unwrap();
    let v: Value = serde_json::from_str(conflist).unwrap();
    assert_eq!(
        v["cniVersion"], "1.0.0",
        "containerd 1.6 speaks CNI up to 1.0.0"
    );
    assert_eq!(v["plugins"][0]["subnetFile"], DEFAULT_SUBNET_FILE);
    assert_eq!(v["plugins"][0]["ipam"]["dataDir"], DEFAULT_DATA_DIR);
    assert_eq!(
        v["plugins"][0]["policy"], true,
        "each ADD hands its pod to podnetd"
    );
    assert!(
        v["plugins"][0].get("policySocket").is_none(),
        "the default: /run/podnet"
    );
}

#[test]
fn the_daemonset_runs_everywhere_with_the_fewest_privileges_and_the_right_mounts() {
    let all = objects(MANIFEST);
    let ds: DaemonSet = one(&all, "DaemonSet");
    let ds_spec = ds.spec.unwrap();
    assert_eq!(
        ds_spec.update_strategy.unwrap().type_.as_deref(),
        Some("RollingUpdate")
    );
    let spec = ds_spec.template.spec.unwrap();
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(
        spec.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    let tolerations = spec.tolerations.clone().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none())
    );

    assert_eq!(
        spec.node_selector.clone().unwrap_or_default(),
        [("kubernetes.io/os".to_owned(), "linux".to_owned())].into(),
    );
    // Every image by the fully qualified name the build prints.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/build-image.sh");
    let out = std::process::Command::new("bash")
        .args([script, "--name"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let built = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(
        built,
        format!("localhost/podnet:{}", env!("CARGO_PKG_VERSION"))
    );
    let init = &spec.init_containers.as_ref().unwrap()[0];
    let agent = &spec.containers[0];
    for c in [init, agent] {
        assert_eq!(c.image.as_deref(), Some(built.as_str()), "{}", c.name);
    }
    // The init container puts the plugin where kubelet's runtime looks.
    let cmd = init.command.clone().unwrap();
    assert_eq!(&cmd[..3], ["/podnet", "install-cni", "--plugin-only"]);
    let bin = &cmd[cmd.iter().position(|a| a == "--bin-dir").unwrap() + 1];
    assert_eq!(host_path_of(&spec, init, bin), "/opt/cni/bin");

    // podnetd's paths land on the host's production paths.
    assert_eq!(flag(agent, "store"), "kube");
    let run = host_path_of(&spec, agent, flag(agent, "run-dir"));
    assert_eq!(format!("{run}/subnet.json"), DEFAULT_SUBNET_FILE);
    assert_eq!(
        host_path_of(&spec, agent, flag(agent, "ipam-dir")),
        DEFAULT_DATA_DIR
    );
    assert_eq!(
        host_path_of(&spec, agent, flag(agent, "cni-conf-dir")),
        "/etc/cni/net.d"
    );
    assert_eq!(
        host_path_of(&spec, agent, flag(agent, "state-dir")),
        "/var/lib/podnet/state"
    );
    let conflist = flag(agent, "cni-conflist");
    assert!(conflist.ends_with(CONFLIST_NAME));
    // NetworkPolicy on; its socket in the run dir the plugin reads on the
    // host (the conflist's default, /run/podnet/policy.sock).
    let command = agent.command.clone().unwrap_or_default();
    assert!(command.iter().any(|a| a == "--policy"), "{command:?}");
    assert_eq!(
        host_path_of(&spec, agent, flag(agent, "run-dir")),
        "/run/podnet"
    );
    let env = agent.env.clone().unwrap();
    // podnetd never starts a wireguard-go that would die with it.
    let go = env
        .iter()
        .find(|e| e.name == "PODNET_WIREGUARD_GO")
        .unwrap();
    assert_eq!(go.value.as_deref(), Some("off"));
    let node_name = env.iter().find(|e| e.name == "NODE_NAME").unwrap();
    let field = node_name
        .value_from
        .as_ref()
        .unwrap()
        .field_ref
        .as_ref()
        .unwrap();
    assert_eq!(field.field_path, "spec.nodeName");

    let sc = agent.security_context.as_ref().unwrap();
    assert_eq!(sc.privileged, Some(false));
    let caps = sc.capabilities.as_ref().unwrap().add.clone().unwrap();
    assert_eq!(caps, ["NET_ADMIN", "NET_RAW"]);
    assert!(agent.resources.as_ref().unwrap().requests.is_some());
    for (probe, path) in [
        (&agent.liveness_probe, "/healthz"),
        (&agent.readiness_probe, "/readyz"),
    ] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(get.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            format!("{}:{}", "127.0.0.1", int(&get.port)),
            flag(agent, "health-addr")
        );
    }
}

fn int(p: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString) -> String {
    match p {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => i.to_string(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
    }
}

#[test]
fn the_wireguard_go_patch_runs_the_images_wireguard_go_beside_podnetd() {
    let patch: Value = serde_yaml::from_str(WIREGUARD_GO).unwrap();
    let ds: DaemonSet = one(&objects(MANIFEST), "DaemonSet");
    let image = ds.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    let spec = &patch["spec"]["template"]["spec"];
    let container = |name: &str| {
        spec["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no container {name}"))
            .clone()
    };
    let (podnetd, go): (Container, Container) = (
        serde_json::from_value(container("podnetd")).unwrap(),
        serde_json::from_value(container("wireguard-go")).unwrap(),
    );
    assert_eq!(go.image, image);
    let command = go.command.clone().unwrap();
    assert_eq!(command[0], "/usr/bin/wireguard-go");
    assert_eq!(
        command.last().map(String::as_str),
        Some(podnet_core::cluster::backend::wireguard::DEVICES[0])
    );
    assert_eq!(go.security_context.as_ref().unwrap().privileged, Some(true));
    // Both share the socket directory, which wireguard-go has built in.
    for c in [&podnetd, &go] {
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "wireguard");
        assert_eq!(
            mount.map(|m| m.mount_path.as_str()),
            Some("/var/run/wireguard"),
            "{}",
            c.name
        );
    }
    assert_eq!(spec["volumes"][0]["name"], "wireguard");
    assert!(spec["volumes"][0]["emptyDir"].is_object());
}
