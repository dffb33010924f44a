//! `podnetctl uninstall`: the cluster's half of taking podnet off, podnet's
//! marks on every Node (its annotations, the NetworkUnavailable condition
//! it set) removed. Each node's half is `podnet uninstall-cni` there.

use std::path::Path;

use anyhow::Result;
use podnet_store::kube::KubeStore;

pub fn run(kubeconfig: Option<&Path>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = KubeStore::connect(kubeconfig).await?;
        let names = store.node_names().await?;
        let mut cleaned = 0;
        for name in &names {
            if store.forget_node(name).await? {
                println!("{name}: podnet's annotations and condition removed");
                cleaned += 1;
            }
        }
        println!("{cleaned} of {} Nodes had podnet's marks", names.len());
        Ok(())
    })
}
