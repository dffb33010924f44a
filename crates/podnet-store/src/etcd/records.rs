//! Policy's records in etcd: each under `<prefix>/policy/<key>`, watched
//! as the leases are.

use std::time::Duration;

use etcd_client::GetOptions;

use super::EtcdStore;
use crate::records::{RecordStore, Records, checked};
use crate::{Result, Revision};

impl EtcdStore {
    fn records_prefix(&self) -> String {
        format!("{}/policy/", self.prefix)
    }

    fn record_key(&self, key: &str) -> Result<String> {
        checked(key)?;
        Ok(format!("{}{key}", self.records_prefix()))
    }
}

impl RecordStore for EtcdStore {
    async fn put_record(&self, key: &str, value: &[u8]) -> Result<()> {
        let key = self.record_key(key)?;
        self.call(|mut c| {
            let (key, value) = (key.clone(), value.to_vec());
            async move { c.put(key, value, None).await }
        })
        .await
        .map(drop)
    }

    async fn delete_record(&self, key: &str) -> Result<bool> {
        let key = self.record_key(key)?;
        let resp = self
            .call(|mut c| {
                let key = key.clone();
                async move { c.delete(key, None).await }
            })
            .await?;
        Ok(resp.deleted() > 0)
    }

    async fn records(&self) -> Result<Records> {
        let prefix = self.records_prefix();
        let resp = self
            .call(|mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        Ok(Records {
            revision: Revision::new(resp.header().map_or(0, |h| h.revision()).to_string()),
            items: resp
                .kvs()
                .iter()
                .map(|kv| {
                    let key = String::from_utf8_lossy(kv.key());
                    let key = key.strip_prefix(&prefix).unwrap_or(&key).to_owned();
                    (key, kv.value().to_vec())
                })
                .collect(),
        })
    }

    async fn watch_records(&self, since: &Revision, timeout: Duration) -> Result<Records> {
        if let Ok(since) = since.as_str().parse::<i64>() {
            self.changed_after(self.records_prefix(), since, timeout)
                .await?;
        }
        RecordStore::records(self).await
    }
}
