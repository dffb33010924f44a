//! `podnetctl node`: operations on a cluster's nodes through its store.

use anyhow::Result;

/// Gives a node's subnets back. Every other agent then removes its routes,
/// FDB and neighbour entries on its next watch.
pub fn remove(store: &str, name: &str) -> Result<()> {
    podnet_store::open(store)?.release(name)?;
    Ok(())
}
