//! `podnetctl node remove`: a node released from the cluster through its
//! store.

use anyhow::{Result, bail};
use podnet_store::{Store, StoreOptions};

/// Gives a node's subnets back. Every other agent then removes its routes,
/// FDB and neighbour entries on its next watch.
pub fn remove(store: &str, opts: &StoreOptions, name: &str) -> Result<()> {
    if store == "kube" {
        bail!(
            "with --store kube a node leaves when its Node object is deleted \
             (kubectl delete node {name}): podnet holds no lease to give back"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async { podnet_store::open(store, opts).await?.release(name).await })?;
    Ok(())
}
