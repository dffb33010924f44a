//! Policy's records from the Kubernetes API: Namespaces, Pods and
//! NetworkPolicies, each listed (page by page) and then followed by a
//! long watch, as the Node list is: resumed from the last resourceVersion
//! seen (bookmarks included), opened again when silent too long or closed
//! by the server, listed again on 410. Only the fields policy reads are
//! kept (`slim`), as records in `podnet_core::policy::source`'s form, so
//! that a file or etcd store and the API give podnetd the same input.
//!
//! Writing records (the lab, as the cluster's admin) turns them into the
//! objects: a Namespace's labels, a Pod's node, labels, named ports and
//! (through `pods/status`) addresses, a NetworkPolicy as written.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use podnet_core::policy::source::{Kind, NamespaceRecord, PodRecord};
use serde_json::json;

use super::slim_policy::{self, SlimNamespace, SlimPod, SlimPolicy};
use super::{KubeStore, OPEN_CAP, PAGE, WATCH_SECS, call, is_gone, unavailable};
use crate::records::{RecordStore, Records, checked};
use crate::{Result, Revision, StoreError};

/// One event of the three watches, or the end of one (the server closed
/// it: all are opened again).
enum Event {
    Namespace(kube::Result<WatchEvent<SlimNamespace>>),
    Pod(kube::Result<WatchEvent<SlimPod>>),
    Policy(kube::Result<WatchEvent<SlimPolicy>>),
    Ended,
}

type Events = std::pin::Pin<Box<dyn Stream<Item = Event> + Send>>;

/// The records as of the three lists and every event since.
#[derive(Default)]
pub struct Cache {
    /// Changes taken in, behind a nonce of this cache: the revision.
    nonce: u64,
    generation: u64,
    items: BTreeMap<String, Vec<u8>>,
    /// Where each watch resumes: namespaces, pods, policies.
    resume: [String; 3],
    events: Option<Events>,
    heard: Option<tokio::time::Instant>,
}

impl Cache {
    fn revision(&self) -> Revision {
        Revision::new(format!("{:x}-{}", self.nonce, self.generation))
    }

    fn records(&self) -> Records {
        Records {
            revision: self.revision(),
            items: self.items.clone(),
        }
    }

    /// Takes in one object's record (or its removal); whether it changed.
    fn apply(&mut self, record: Option<(String, Vec<u8>)>, key: Option<String>) -> bool {
        let changed = match (record, key) {
            (Some((key, value)), _) => self.items.insert(key, value.clone()) != Some(value),
            (None, Some(key)) => self.items.remove(&key).is_some(),
            (None, None) => false,
        };
        if changed {
            self.generation += 1;
        }
        changed
    }
}

/// Every object of `api`, page by page, and the list's resourceVersion.
async fn list_all<T>(api: &Api<T>, what: &str) -> Result<(Vec<T>, String)>
where
    T: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = call(what, api.list(&params)).await?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(next) => params = params.continue_token(&next),
            None => return Ok((out, page.metadata.resource_version.unwrap_or_default())),
        }
    }
}

impl KubeStore {
    fn namespaces(&self) -> Api<SlimNamespace> {
        Api::all(self.client.clone())
    }

    fn pods(&self) -> Api<SlimPod> {
        Api::all(self.client.clone())
    }

    fn policies(&self) -> Api<SlimPolicy> {
        Api::all(self.client.clone())
    }

    async fn relist_records(&self) -> Result<Cache> {
        let mut cache = Cache {
            nonce: fastrand::u64(..),
            ..Cache::default()
        };
        let (namespaces, rv) = list_all(&self.namespaces(), "a Namespace list").await?;
        cache.resume[0] = rv;
        for n in &namespaces {
            cache.apply(slim_policy::namespace_record(n), None);
        }
        let (pods, rv) = list_all(&self.pods(), "a Pod list").await?;
        cache.resume[1] = rv;
        for p in &pods {
            cache.apply(slim_policy::pod_record(p), None);
        }
        let (policies, rv) = list_all(&self.policies(), "a NetworkPolicy list").await?;
        cache.resume[2] = rv;
        for p in &policies {
            cache.apply(slim_policy::policy_record(p), None);
        }
        Ok(cache)
    }

    /// The three watches, from where each was, merged.
    async fn open_watches(&self, resume: [String; 3]) -> kube::Result<Events> {
        let params = WatchParams::default().timeout(WATCH_SECS);
        let ended = || stream::once(async { Event::Ended });
        let namespaces = self
            .namespaces()
            .watch(&params, &resume[0])
            .await?
            .map(Event::Namespace)
            .chain(ended());
        let pods = self
            .pods()
            .watch(&params, &resume[1])
            .await?
            .map(Event::Pod)
            .chain(ended());
        let policies = self
            .policies()
            .watch(&params, &resume[2])
            .await?
            .map(Event::Policy)
            .chain(ended());
        Ok(stream::select_all([namespaces.boxed(), pods.boxed(), policies.boxed()]).boxed())
    }
}

/// What one watch event does to the cache.
struct Taken {
    /// The record it sets, by key.
    set: Option<(String, Vec<u8>)>,
    /// The key it removes.
    removed: Option<String>,
    /// The resourceVersion it brings (bookmarks too).
    rv: Option<String>,
}

fn take<T: kube::Resource<DynamicType = ()>>(
    e: kube::Result<WatchEvent<T>>,
    record: impl Fn(&T) -> Option<(String, Vec<u8>)>,
) -> kube::Result<Taken> {
    let rv = |o: &T| o.meta().resource_version.clone();
    match e? {
        WatchEvent::Added(o) | WatchEvent::Modified(o) => {
            // A record that no longer parses (a pod gone terminal) is a
            // removal.
            let set = record(&o);
            let removed = set.is_none().then(|| slim_policy::key_of(&o)).flatten();
            Ok(Taken {
                set,
                removed,
                rv: rv(&o),
            })
        }
        WatchEvent::Deleted(o) => Ok(Taken {
            set: None,
            removed: slim_policy::key_of(&o),
            rv: rv(&o),
        }),
        WatchEvent::Bookmark(b) => Ok(Taken {
            set: None,
            removed: None,
            rv: Some(b.metadata.resource_version),
        }),
        WatchEvent::Error(s) => Err(kube::Error::Api(s)),
    }
}

impl RecordStore for KubeStore {
    async fn records(&self) -> Result<Records> {
        let cache = self.relist_records().await?;
        let records = cache.records();
        *self.records.lock().await = Some(cache);
        Ok(records)
    }

    /// As the Node watch: one long watch per resource kept across calls;
    /// returns at the first change of a record, or after `timeout`.
    async fn watch_records(&self, since: &Revision, timeout: Duration) -> Result<Records> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut guard = self.records.lock().await;
        if guard.as_ref().is_none_or(|c| c.revision() != *since) {
            let fresh = self.relist_records().await?;
            let records = fresh.records();
            *guard = Some(fresh);
            return Ok(records);
        }
        let Some(cache) = guard.as_mut() else {
            return Err(StoreError::Unavailable("no records listed".into()));
        };
        loop {
            if cache.events.is_none() {
                let opened = tokio::time::timeout_at(
                    deadline.max(tokio::time::Instant::now() + OPEN_CAP),
                    self.open_watches(cache.resume.clone()),
                )
                .await;
                match opened {
                    Err(_) => {
                        return Err(StoreError::Unavailable(format!(
                            "Kubernetes API: a watch got no answer within {OPEN_CAP:?}"
                        )));
                    }
                    Ok(Err(e)) if is_gone(&e) => {
                        *cache = self.relist_records().await?;
                        return Ok(cache.records());
                    }
                    Ok(Err(e)) => return Err(unavailable(e)),
                    Ok(Ok(events)) => {
                        cache.heard = Some(tokio::time::Instant::now());
                        cache.events = Some(events);
                    }
                }
            }
            let Some(events) = cache.events.as_mut() else {
                continue;
            };
            let silent_at = cache.heard.unwrap_or_else(tokio::time::Instant::now) + self.silence;
            let event = match tokio::time::timeout_at(deadline.min(silent_at), events.next()).await
            {
                Err(_) if tokio::time::Instant::now() >= silent_at => {
                    cache.events = None;
                    continue;
                }
                Err(_) => return Ok(cache.records()),
                Ok(None | Some(Event::Ended)) => {
                    cache.events = None;
                    continue;
                }
                Ok(Some(event)) => event,
            };
            cache.heard = Some(tokio::time::Instant::now());
            let (slot, taken) = match event {
                Event::Namespace(e) => (0, take(e, slim_policy::namespace_record)),
                Event::Pod(e) => (1, take(e, slim_policy::pod_record)),
                Event::Policy(e) => (2, take(e, slim_policy::policy_record)),
                Event::Ended => continue,
            };
            match taken {
                Ok(Taken { set, removed, rv }) => {
                    if let Some(rv) = rv {
                        cache.resume[slot] = rv;
                    }
                    if cache.apply(set, removed) {
                        return Ok(cache.records());
                    }
                }
                Err(e) => {
                    cache.events = None;
                    if is_gone(&e) {
                        *cache = self.relist_records().await?;
                        return Ok(cache.records());
                    }
                    return Err(unavailable(e));
                }
            }
        }
    }

    /// The record as its object: created, or replaced where it exists.
    async fn put_record(&self, key: &str, value: &[u8]) -> Result<()> {
        let (kind, ns, name) = checked(key)?;
        let bad = |e: serde_json::Error| StoreError::Invalid(format!("{key}: {e}"));
        let post = PostParams::default();
        match kind {
            Kind::Namespace => {
                let r: NamespaceRecord = serde_json::from_slice(value).map_err(bad)?;
                let api: Api<Namespace> = Api::all(self.client.clone());
                let object = slim_policy::namespace_object(&r);
                upsert(&api, &name, object, &post).await
            }
            Kind::Pod => {
                let r: PodRecord = serde_json::from_slice(value).map_err(bad)?;
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
                upsert(&api, &name, slim_policy::pod_object(&r), &post).await?;
                let status = json!({"status": slim_policy::pod_status(&r)});
                let patch = Patch::Merge(&status);
                call(
                    "a Pod status patch",
                    api.patch_status(&name, &PatchParams::default(), &patch),
                )
                .await
                .map(drop)
            }
            Kind::Policy => {
                let mut doc: serde_json::Value = serde_json::from_slice(value).map_err(bad)?;
                doc["apiVersion"] = "networking.k8s.io/v1".into();
                doc["kind"] = "NetworkPolicy".into();
                let object: NetworkPolicy = serde_json::from_value(doc).map_err(bad)?;
                let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), &ns);
                upsert(&api, &name, object, &post).await
            }
        }
    }

    async fn delete_record(&self, key: &str) -> Result<bool> {
        let (kind, ns, name) = checked(key)?;
        let params = DeleteParams::default();
        let deleted = match kind {
            Kind::Namespace => {
                let api: Api<Namespace> = Api::all(self.client.clone());
                api.delete(&name, &params).await.map(drop)
            }
            Kind::Pod => {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
                api.delete(&name, &params).await.map(drop)
            }
            Kind::Policy => {
                let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), &ns);
                api.delete(&name, &params).await.map(drop)
            }
        };
        match deleted {
            Ok(()) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// Creates `object`, or replaces the one named `name` (at its current
/// resourceVersion, so a concurrent write is a conflict, not lost).
async fn upsert<T>(api: &Api<T>, name: &str, mut object: T, post: &PostParams) -> Result<()>
where
    T: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(post, &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let current = call("a get", api.get(name)).await?;
            object.meta_mut().resource_version = current.meta().resource_version.clone();
            call("a replace", api.replace(name, post, &object))
                .await
                .map(drop)
        }
        Err(e) => Err(unavailable(e)),
    }
}
