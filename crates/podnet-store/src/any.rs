//! One type for whichever store a `--store` spec names.

use std::time::Duration;

use podnet_core::cluster::lease::{Lease, LeaseAttrs};
use podnet_core::cluster::netconf::ClusterConf;

use crate::records::{RecordStore, Records};
use crate::{Result, Revision, Snapshot, Store, StoreError, etcd, file, kube};

/// Every backend, so that callers hold one type without boxing futures.
pub enum AnyStore {
    File(file::FileStore),
    /// Boxed: the client is large, and a store is made once.
    Etcd(Box<etcd::EtcdStore>),
    Kube(Box<kube::KubeStore>),
}

/// Runs `$call` on whichever backend `$store` is.
macro_rules! on_backend {
    ($store:expr, $s:ident => $call:expr) => {
        match $store {
            AnyStore::File($s) => $call,
            AnyStore::Etcd($s) => $call,
            AnyStore::Kube($s) => $call,
        }
    };
}

impl Store for AnyStore {
    async fn net_conf(&self, proposed: Option<&str>) -> Result<String> {
        on_backend!(self, s => s.net_conf(proposed).await)
    }

    async fn acquire(
        &self,
        node: &str,
        attrs: &LeaseAttrs,
        conf: &ClusterConf,
        ttl: Duration,
    ) -> Result<Lease> {
        on_backend!(self, s => s.acquire(node, attrs, conf, ttl).await)
    }

    async fn renew(&self, node: &str, attrs: &LeaseAttrs, ttl: Duration) -> Result<Lease> {
        on_backend!(self, s => s.renew(node, attrs, ttl).await)
    }

    async fn release(&self, node: &str) -> Result<()> {
        on_backend!(self, s => s.release(node).await)
    }

    async fn list(&self) -> Result<Snapshot> {
        on_backend!(self, s => s.list().await)
    }

    async fn watch(&self, since: &Revision, timeout: Duration) -> Result<Snapshot> {
        on_backend!(self, s => s.watch(since, timeout).await)
    }

    async fn network_up(&self, node: &str) -> Result<()> {
        on_backend!(self, s => s.network_up(node).await)
    }
}

/// What a `--store` spec does not say.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    pub etcd: etcd::EtcdOptions,
    /// `--store kube`: a kubeconfig, else the in-cluster service account.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// `--store kube`: how long a quiet Node watch is trusted (`None`:
    /// [`kube::DEFAULT_SILENCE`]).
    pub kube_silence: Option<std::time::Duration>,
}

/// Opens a store from a `--store` spec: `file:/var/lib/podnet/store`, or
/// `etcd:http://10.0.0.1:2379,http://10.0.0.2:2379` (every member), or
/// `kube` (the Kubernetes API).
pub async fn open(spec: &str, opts: &StoreOptions) -> Result<AnyStore> {
    match spec.split_once(':') {
        Some(("file", dir)) if !dir.is_empty() => Ok(AnyStore::File(file::FileStore::open(dir)?)),
        Some(("etcd", endpoints)) => {
            let endpoints: Vec<String> = endpoints
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect();
            let store = etcd::EtcdStore::connect(&endpoints, &opts.etcd).await?;
            Ok(AnyStore::Etcd(Box::new(store)))
        }
        None if spec == "kube" => {
            let store = kube::KubeStore::connect(opts.kubeconfig.as_deref())
                .await?
                .with_watch_silence(opts.kube_silence.unwrap_or(kube::DEFAULT_SILENCE));
            Ok(AnyStore::Kube(Box::new(store)))
        }
        _ => Err(StoreError::Invalid(format!(
            "--store \"{spec}\" is not supported; use file:DIR, etcd:URL[,URL...] or kube"
        ))),
    }
}

impl RecordStore for AnyStore {
    async fn put_record(&self, key: &str, value: &[u8]) -> Result<()> {
        match self {
            AnyStore::File(s) => s.put_record(key, value).await,
            AnyStore::Etcd(s) => s.put_record(key, value).await,
            AnyStore::Kube(s) => s.put_record(key, value).await,
        }
    }

    async fn delete_record(&self, key: &str) -> Result<bool> {
        match self {
            AnyStore::File(s) => s.delete_record(key).await,
            AnyStore::Etcd(s) => s.delete_record(key).await,
            AnyStore::Kube(s) => s.delete_record(key).await,
        }
    }

    async fn records(&self) -> Result<Records> {
        match self {
            AnyStore::File(s) => s.records().await,
            AnyStore::Etcd(s) => s.records().await,
            AnyStore::Kube(s) => s.records().await,
        }
    }

    async fn watch_records(&self, since: &Revision, timeout: Duration) -> Result<Records> {
        match self {
            AnyStore::File(s) => s.watch_records(since, timeout).await,
            AnyStore::Etcd(s) => s.watch_records(since, timeout).await,
            AnyStore::Kube(s) => s.watch_records(since, timeout).await,
        }
    }
}
