//! `podnetctl policy apply|delete`: NetworkPolicies kept in a file or
//! etcd store, where every node's podnetd watches them. On Kubernetes
//! they are the API's objects, and kubectl applies them.

use anyhow::{Context, Result, bail};
use podnet_store::StoreOptions;
use podnet_store::records;

use crate::PolicyCmd;

pub fn run(store: &str, opts: &StoreOptions, what: PolicyCmd) -> Result<()> {
    if store == "kube" {
        bail!("with --store kube NetworkPolicies are the API's objects: use kubectl");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = podnet_store::open(store, opts).await?;
        match what {
            PolicyCmd::Apply { file } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("read {}", file.display()))?;
                for key in records::apply_policies(&store, &text).await? {
                    println!("{key} applied");
                }
            }
            PolicyCmd::Delete { file, id, all } => {
                let doomed = PolicyCmd::doomed(file, id, all)?;
                let deleted = records::delete_policies(&store, &doomed).await?;
                for key in &deleted {
                    println!("{key} deleted");
                }
                if deleted.is_empty() {
                    println!("nothing to delete");
                }
            }
        }
        Ok(())
    })
}
