//! An emulated Kubernetes API server, for tests only: no kube-apiserver
//! can be installed on the machines podnet is built on. It serves Nodes
//! (get, list, watch with bookmarks, create, update, merge and strategic
//! merge patches of the node and of `nodes/status`, delete) over HTTPS
//! with a CA it makes, with resourceVersion semantics, 410 both ways, 409
//! on a stale update, and 403 for whatever `deploy/rbac.yaml` does not
//! grant podnet's service account. Objects are `k8s-openapi` types.
//! Beside them, for NetworkPolicy, Namespaces, Pods (and `pods/status`)
//! and NetworkPolicies, kept as JSON on the same revision (`objects`).

// A handler's error is the HTTP response itself, made once per request:
// boxing it would buy nothing.
#![allow(clippy::result_large_err)]

pub mod objects;
pub mod patch;
pub mod rbac;
pub mod serve;
pub mod world;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use rbac::{Role, User};
pub use serve::Shared;
pub use world::World;

/// A Node named `name` with `pod_cidrs`, as kubelet registers it and the
/// controller manager assigns it.
pub fn node(name: &str, pod_cidrs: &[&str]) -> k8s_openapi::api::core::v1::Node {
    use k8s_openapi::api::core::v1::{Node, NodeSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: pod_cidrs.first().map(|c| c.to_string()),
            pod_cidrs: (!pod_cidrs.is_empty())
                .then(|| pod_cidrs.iter().map(|c| c.to_string()).collect()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The role the emulator enforces: the one podnet ships.
pub const RBAC_YAML: &str = include_str!("../../../deploy/rbac.yaml");
pub const ADMIN_TOKEN: &str = "podnet-emu-admin";
pub const PODNET_TOKEN: &str = "podnet-emu-serviceaccount";

pub struct Emulator {
    pub shared: Arc<Shared>,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Emulator {
    /// Serves on `listen` (port 0: any) from the current tokio runtime,
    /// with a CA, a certificate and kubeconfigs made in `dir`.
    pub async fn start(listen: SocketAddr, dir: &Path) -> Result<Emulator> {
        Emulator::start_with_role(listen, dir, RBAC_YAML).await
    }

    /// The same, holding podnet's service account to another role (a test
    /// of what a missing permission looks like).
    pub async fn start_with_role(
        listen: SocketAddr,
        dir: &Path,
        rbac_yaml: &str,
    ) -> Result<Emulator> {
        let role = Role::parse(rbac_yaml).map_err(anyhow::Error::msg)?;
        let tokens = HashMap::from([
            (ADMIN_TOKEN.to_owned(), User::Admin),
            (PODNET_TOKEN.to_owned(), User::Podnet),
        ]);
        let shared = Shared::new(role, tokens);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let certs = podnet_testkit::etcd::Certs::make_for(dir, &format!("IP:{}", addr.ip()));
        let chain =
            CertificateDer::pem_file_iter(&certs.server_cert)?.collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(&certs.server_key)?;
        let tls = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        let emu = Emulator {
            shared: shared.clone(),
            addr,
            dir: dir.to_owned(),
        };
        for (user, token) in [("admin", ADMIN_TOKEN), ("podnet", PODNET_TOKEN)] {
            std::fs::write(emu.kubeconfig(user), emu.kubeconfig_yaml(user, token))?;
        }
        // The rest of a cluster writes too (pods, events, leases): the one
        // resourceVersion moves between Node writes, as a real one does.
        let others = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
            loop {
                tick.tick().await;
                others.other_write();
            }
        });
        tokio::spawn(serve::serve_tls(
            listener,
            Arc::new(tls),
            serve::router(shared),
        ));
        Ok(emu)
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The kubeconfig of `admin` or `podnet` (its service account).
    pub fn kubeconfig(&self, user: &str) -> PathBuf {
        self.dir.join(format!("{user}.kubeconfig"))
    }

    fn kubeconfig_yaml(&self, user: &str, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emu\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: emu\n  context:\n    cluster: emu\n    user: {user}\ncurrent-context: emu\n",
            self.url(),
            self.ca().display()
        )
    }
}
