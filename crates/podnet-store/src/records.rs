//! Policy's records (namespaces, pods, NetworkPolicies) in the store,
//! beside the leases, for clusters without Kubernetes: keys and values as
//! [`podnet_core::policy::source`] defines them, kept as given.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use podnet_core::policy::source::Kind;

use crate::{Result, Revision, StoreError};

/// Every record at one revision, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    pub revision: Revision,
    pub items: BTreeMap<String, Vec<u8>>,
}

pub trait RecordStore: Send + Sync {
    /// Writes `value` under `key`, replacing what was there.
    fn put_record(&self, key: &str, value: &[u8]) -> impl Future<Output = Result<()>> + Send;

    /// Deletes `key`; whether it was there.
    fn delete_record(&self, key: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Every record now.
    fn records(&self) -> impl Future<Output = Result<Records>> + Send;

    /// Every record as soon as anything changed after `since`, or when
    /// `timeout` passes; at once for [`Revision::NONE`].
    fn watch_records(
        &self,
        since: &Revision,
        timeout: Duration,
    ) -> impl Future<Output = Result<Records>> + Send;
}

/// `key`, if it names a record.
pub fn checked(key: &str) -> Result<(Kind, String, String)> {
    Kind::parse(key).ok_or_else(|| {
        StoreError::Invalid(format!(
            "\"{key}\" is no record's key (namespaces/NS, pods/NS/NAME, policies/NS/NAME)"
        ))
    })
}

/// The contract every backend keeps, seen by two clients of one store.
#[cfg(any(test, feature = "conformance"))]
#[allow(clippy::unwrap_used)]
pub async fn conformance<S: RecordStore>(a: &S, b: &S) {
    let empty = a.records().await.unwrap();
    assert!(empty.items.is_empty());
    a.put_record("pods/x/a", b"{\"n\":1}").await.unwrap();
    a.put_record("namespaces/x", b"{}").await.unwrap();
    let seen = b
        .watch_records(&empty.revision, Duration::from_secs(5))
        .await
        .unwrap();
    assert_ne!(seen.revision, empty.revision);
    assert_eq!(seen.items["pods/x/a"], b"{\"n\":1}");
    assert_eq!(seen.items.len(), 2);
    // A replaced value is a change; a watch with no change waits it out.
    a.put_record("pods/x/a", b"{\"n\":2}").await.unwrap();
    let changed = b
        .watch_records(&seen.revision, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(changed.items["pods/x/a"], b"{\"n\":2}");
    let quiet = b
        .watch_records(&changed.revision, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(quiet.items, changed.items);
    assert!(b.delete_record("pods/x/a").await.unwrap());
    assert!(!b.delete_record("pods/x/a").await.unwrap());
    let after = a.records().await.unwrap();
    assert_eq!(after.items.keys().collect::<Vec<_>>(), ["namespaces/x"]);
    for bad in ["pods/x", "leases/node1", "pods/x/../../etc"] {
        assert!(
            matches!(a.put_record(bad, b"{}").await, Err(StoreError::Invalid(_))),
            "{bad}"
        );
    }
}

/// Keeps each NetworkPolicy of `text` (YAML or JSON, one or many
/// documents) under its key, after checking them all; the keys written.
pub async fn apply_policies<S: RecordStore>(store: &S, text: &str) -> Result<Vec<String>> {
    let docs = podnet_core::policy::NetworkPolicy::documents(text)
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    let mut keys = Vec::with_capacity(docs.len());
    for (policy, doc) in docs {
        let key = Kind::Policy.key(&policy.namespace, &policy.name);
        checked(&key)?;
        let value = serde_json::to_vec(&doc).map_err(|e| StoreError::Invalid(e.to_string()))?;
        store.put_record(&key, &value).await?;
        keys.push(key);
    }
    Ok(keys)
}

/// Which policies `delete_policies` takes.
#[derive(Debug, Clone)]
pub enum Doomed {
    /// Those a file names.
    File(String),
    /// `NS/NAME`.
    One(String),
    All,
}

/// Deletes policies; the keys deleted.
pub async fn delete_policies<S: RecordStore>(store: &S, doomed: &Doomed) -> Result<Vec<String>> {
    let keys: Vec<String> = match doomed {
        Doomed::File(text) => podnet_core::policy::NetworkPolicy::parse_all(text)
            .map_err(|e| StoreError::Invalid(e.to_string()))?
            .iter()
            .map(|p| Kind::Policy.key(&p.namespace, &p.name))
            .collect(),
        Doomed::One(id) => {
            let (ns, name) = id.split_once('/').ok_or_else(|| {
                StoreError::Invalid(format!("\"{id}\": name a policy as NAMESPACE/NAME"))
            })?;
            vec![Kind::Policy.key(ns, name)]
        }
        Doomed::All => store
            .records()
            .await?
            .items
            .into_keys()
            .filter(|k| matches!(Kind::parse(k), Some((Kind::Policy, ..))))
            .collect(),
    };
    let mut deleted = Vec::new();
    for key in keys {
        checked(&key)?;
        if store.delete_record(&key).await? {
            deleted.push(key);
        }
    }
    Ok(deleted)
}
