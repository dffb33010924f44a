//! The lab's Kubernetes API: the emulated API server (`podnet-kube-emu`;
//! no real kube-apiserver can be installed on these machines) in a
//! namespace of its own on the flat underlay, 192.168.1.240:6443. The lab
//! registers each node's Node object with its `spec.podCIDRs`, as kubelet
//! and the controller manager would; the agents act as podnet's service
//! account, held to deploy/rbac.yaml.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Node, NodeSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use podnet_linux::netns::NamedNetns;

use crate::plumbing::{plug, sibling, step};
use crate::record::{KubeApi, Lab};
use crate::topology::Attachment;

const ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 240);
const READY_CAP: Duration = Duration::from_secs(30);

fn dir(lab: &Lab) -> PathBuf {
    lab.dir.join("kube")
}

pub fn start(lab: &mut Lab) -> Result<()> {
    step(&format!("Kubernetes API (emulated) {ADDR}:6443"));
    let dir = dir(lab);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let ns = NamedNetns::create(&format!("{}-api", lab.id))?.keep();
    lab.kube = Some(KubeApi {
        ns: ns.clone(),
        pid: 0,
    });
    lab.save()?;
    let attach = Attachment {
        addr: IpAddr::V4(ADDR),
        prefix: 24,
        gateway: None,
        router: None,
    };
    plug(lab, &ns, "api", &[attach])?;
    let log = std::fs::File::create(dir.join("api.log"))?;
    let child = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(sibling("podnet-kube-emu")?)
        .arg("--listen")
        .arg(format!("{ADDR}:6443"))
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("start podnet-kube-emu")?;
    let pid = child.id() as i32;
    if let Some(k) = lab.kube.as_mut() {
        k.pid = pid;
    }
    lab.save()?;
    let started = Instant::now();
    while !dir.join("ready").exists() {
        if started.elapsed() > READY_CAP {
            bail!(
                "the API server never came up: see {}",
                dir.join("api.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("ok (pid {pid}, {:?})", started.elapsed());
    Ok(())
}

/// Runs `op` as the lab's admin, from the external host's namespace.
fn admin<T, F>(lab: &Lab, op: impl FnOnce(Api<Node>) -> F + Send) -> Result<T>
where
    T: Send,
    F: Future<Output = kube::Result<T>>,
{
    let path = lab.kubeconfig("admin");
    lab.on_underlay(|| async move {
        let file = kube::config::Kubeconfig::read_from(&path)?;
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await?;
        let client = kube::Client::try_from(config)?;
        Ok(op(Api::all(client)).await?)
    })
}

/// Registers node `name` with `pod_cidrs`, as kubelet and the controller
/// manager would.
pub fn register(lab: &Lab, name: &str, pod_cidrs: Vec<String>) -> Result<()> {
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: pod_cidrs.first().cloned(),
            pod_cidrs: Some(pod_cidrs),
            ..Default::default()
        }),
        ..Default::default()
    };
    admin(lab, |api| async move {
        api.create(&PostParams::default(), &node).await.map(drop)
    })
}

/// Deletes node `name`'s Node object: how a node leaves in this mode.
pub fn deregister(lab: &Lab, name: &str) -> Result<()> {
    admin(lab, |api| async move {
        api.delete(name, &DeleteParams::default()).await.map(drop)
    })
}
