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
