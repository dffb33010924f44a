//! A kubelet-like CRI client: the calls kubelet makes for a pod sandbox,
//! with the metadata, labels and cgroup parent kubelet sends, over the
//! runtime's unix socket. Synchronous, for tests.

use std::collections::HashMap;
use std::path::PathBuf;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    LinuxPodSandboxConfig, PodSandboxConfig, PodSandboxMetadata, PodSandboxStatusRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StopPodSandboxRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

use super::Containerd;

pub struct Cri {
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
    cgroup_root: String,
    logs: PathBuf,
}

/// What the runtime reports of a sandbox.
#[derive(Debug)]
pub struct Sandbox {
    /// Its addresses, primary first.
    pub ips: Vec<String>,
    /// The network namespace the runtime made for it.
    pub netns: Option<String>,
}

impl Cri {
    pub(super) fn connect(c: &Containerd) -> Cri {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let socket = c.socket();
        let channel = rt
            .block_on(
                Endpoint::from_static("http://[::]:50051").connect_with_connector(
                    tower::service_fn(move |_: Uri| {
                        let socket = socket.clone();
                        async move {
                            let stream = tokio::net::UnixStream::connect(socket).await?;
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                        }
                    }),
                ),
            )
            .unwrap();
        Cri {
            rt,
            client: RuntimeServiceClient::new(channel),
            cgroup_root: c.cgroup_root.clone(),
            logs: c.dir.join("pods"),
        }
    }

    /// RunPodSandbox for pod `name` in namespace `default`, as kubelet
    /// asks for it.
    pub fn run_pod(&mut self, name: &str) -> Result<String, tonic::Status> {
        let uid = pod_uid(name);
        let labels = HashMap::from([
            ("io.kubernetes.pod.name".to_owned(), name.to_owned()),
            (
                "io.kubernetes.pod.namespace".to_owned(),
                "default".to_owned(),
            ),
            ("io.kubernetes.pod.uid".to_owned(), uid.clone()),
        ]);
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.to_owned(),
                uid: uid.clone(),
                namespace: "default".to_owned(),
                attempt: 0,
            }),
            hostname: name.to_owned(),
            log_directory: self
                .logs
                .join(format!("default_{name}_{uid}"))
                .display()
                .to_string(),
            labels,
            annotations: HashMap::from([(
                "kubernetes.io/config.source".to_owned(),
                "api".to_owned(),
            )]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/{}/pod{uid}", self.cgroup_root),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let resp = self.rt.block_on(self.client.run_pod_sandbox(req))?;
        Ok(resp.into_inner().pod_sandbox_id)
    }

    pub fn stop(&mut self, id: &str) -> Result<(), tonic::Status> {
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.rt
            .block_on(self.client.stop_pod_sandbox(req))
            .map(drop)
    }

    pub fn remove(&mut self, id: &str) -> Result<(), tonic::Status> {
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.rt
            .block_on(self.client.remove_pod_sandbox(req))
            .map(drop)
    }

    /// PodSandboxStatus, verbose: its addresses and its netns path.
    pub fn sandbox(&mut self, id: &str) -> Result<Sandbox, tonic::Status> {
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: true,
        };
        let resp = self
            .rt
            .block_on(self.client.pod_sandbox_status(req))?
            .into_inner();
        let network = resp.status.and_then(|s| s.network);
        let ips = network
            .map(|n| {
                std::iter::once(n.ip)
                    .chain(n.additional_ips.into_iter().map(|p| p.ip))
                    .filter(|ip| !ip.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let info: serde_json::Value = resp
            .info
            .get("info")
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or_default();
        let netns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["type"] == "network")
            .and_then(|n| n["path"].as_str())
            .map(str::to_owned);
        Ok(Sandbox { ips, netns })
    }
}

/// A pod UID, unique per pod name and test process.
fn pod_uid(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{}-{name}", std::process::id()));
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}
