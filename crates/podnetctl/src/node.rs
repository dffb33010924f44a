//! `podnetctl node`: operations on a cluster's nodes through its store.

use anyhow::Result;
use podnet_store::{Store, StoreOptions};

/// Gives a node's subnets back. Every other agent then removes its routes,
/// FDB and neighbour entries on its next watch.
pub fn remove(store: &str, opts: &StoreOptions, name: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async { podnet_store::open(store, opts).await?.release(name).await })?;
    Ok(())
}
