//! The etcd flags of the binaries (podnetd, `podnetctl node`), behind
//! feature `cli`: the store itself knows no command line.

use std::path::PathBuf;

use super::{EtcdOptions, TlsFiles, layout};

/// The etcd flags, shared by podnetd and `podnetctl node`.
#[derive(Debug, Clone, clap::Args)]
pub struct EtcdFlags {
    /// The etcd store's key prefix (flannel's is /coreos.com/network).
    #[arg(long, global = true, default_value = layout::DEFAULT_PREFIX)]
    pub etcd_prefix: String,
    /// The CA that signed the etcd members' certificates (PEM).
    #[arg(long, global = true)]
    pub etcd_cafile: Option<PathBuf>,
    /// This client's certificate for etcd (PEM), with --etcd-keyfile.
    #[arg(long, global = true)]
    pub etcd_certfile: Option<PathBuf>,
    /// This client's key for etcd (PEM).
    #[arg(long, global = true)]
    pub etcd_keyfile: Option<PathBuf>,
}

impl EtcdFlags {
    pub fn options(&self) -> EtcdOptions {
        EtcdOptions {
            prefix: self.etcd_prefix.clone(),
            tls: TlsFiles {
                ca: self.etcd_cafile.clone(),
                cert: self.etcd_certfile.clone(),
                key: self.etcd_keyfile.clone(),
            },
        }
    }
}
