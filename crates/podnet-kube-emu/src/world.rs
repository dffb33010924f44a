//! The emulated API server's state: Nodes as `k8s-openapi` objects, one
//! resourceVersion counter, and the event history watches replay from.
//! Pure: every request is a method here that returns an object or the
//! `Status` the real server would answer.

use std::collections::{BTreeMap, VecDeque};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status, StatusDetails};
use serde_json::Value;

use crate::patch;

/// Events kept for watches; older ones are compacted away (410 Gone).
const HISTORY: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub node: Node,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Strategic,
}

#[derive(Debug, Default)]
pub struct World {
    rv: u64,
    nodes: BTreeMap<String, Node>,
    history: VecDeque<Event>,
    /// Events at or below this revision are gone.
    compacted: u64,
}

/// An object, or the `Status` the real server answers instead (boxed:
/// it is large, and only the error path carries it).
pub type Answer<T> = Result<T, Box<Status>>;

pub fn status(code: u16, reason: &str, message: String, name: Option<&str>) -> Box<Status> {
    Box::new(Status {
        code: Some(i32::from(code)),
        reason: Some(reason.to_owned()),
        message: Some(message),
        status: Some("Failure".into()),
        details: name.map(|n| StatusDetails {
            name: Some(n.to_owned()),
            kind: Some("nodes".into()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn not_found(name: &str) -> Box<Status> {
    status(
        404,
        "NotFound",
        format!("nodes \"{name}\" not found"),
        Some(name),
    )
}

fn expired(rv: u64, oldest: u64) -> Box<Status> {
    status(
        410,
        "Expired",
        format!("too old resource version: {rv} ({oldest})"),
        None,
    )
}

impl World {
    pub fn revision(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, name: &str) -> Answer<Node> {
        self.nodes.get(name).cloned().ok_or_else(|| not_found(name))
    }

    /// Nodes sorted by name, `limit` at a time after `after`, and the name
    /// to continue from. A list at a revision that was compacted is 410,
    /// as for a real server's exact or continued list.
    pub fn list(
        &self,
        at: Option<u64>,
        after: Option<&str>,
        limit: usize,
    ) -> Answer<(Vec<Node>, ListMeta)> {
        if let Some(rv) = at.filter(|rv| *rv != 0 && *rv < self.compacted) {
            return Err(expired(rv, self.compacted));
        }
        let items: Vec<Node> = self
            .nodes
            .iter()
            .filter(|(n, _)| after.is_none_or(|a| n.as_str() > a))
            .take(if limit == 0 { usize::MAX } else { limit })
            .map(|(_, node)| node.clone())
            .collect();
        let last = items.last().and_then(|n| n.metadata.name.clone());
        let more = last.as_ref().is_some_and(|l| {
            self.nodes
                .range::<String, _>((
                    std::ops::Bound::Excluded(l.clone()),
                    std::ops::Bound::Unbounded,
                ))
                .next()
                .is_some()
        });
        let meta = ListMeta {
            resource_version: Some(self.rv.to_string()),
            continue_: if limit > 0 && more { last } else { None },
            ..Default::default()
        };
        Ok((items, meta))
    }

    /// Events after `rv`, or 410 if some of them were compacted away.
    pub fn events_since(&self, rv: u64) -> Answer<Vec<Event>> {
        if rv < self.compacted {
            return Err(expired(rv, self.compacted));
        }
        Ok(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    pub fn create(&mut self, mut node: Node) -> Answer<Event> {
        let name = node.metadata.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(status(
                422,
                "Invalid",
                "metadata.name is required".into(),
                None,
            ));
        }
        if self.nodes.contains_key(&name) {
            return Err(status(
                409,
                "AlreadyExists",
                format!("nodes \"{name}\" already exists"),
                Some(&name),
            ));
        }
        node.metadata.uid = Some(format!("uid-{name}-{}", self.rv + 1));
        Ok(self.commit(name, node, EventType::Added))
    }

    /// A full update: 409 unless it names the current resourceVersion.
    pub fn update(&mut self, name: &str, node: Node) -> Answer<Event> {
        let current = self.get(name)?;
        if node.metadata.resource_version != current.metadata.resource_version {
            return Err(conflict(name));
        }
        Ok(self.commit(name.to_owned(), node, EventType::Modified))
    }

    /// A patch of the node, or of its status subresource (`status`): the
    /// status subresource changes metadata and status, never spec, and the
    /// main resource never status.
    pub fn patch(
        &mut self,
        name: &str,
        kind: PatchKind,
        body: &Value,
        status: bool,
    ) -> Answer<Event> {
        let current = self.get(name)?;
        let mut value = serde_json::to_value(&current).map_err(internal)?;
        // A patch that names a resourceVersion is an optimistic update.
        let named = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        if named.is_some_and(|rv| Some(rv) != current.metadata.resource_version.as_deref()) {
            return Err(conflict(name));
        }
        match kind {
            PatchKind::Merge => patch::merge(&mut value, body),
            PatchKind::Strategic => patch::strategic(&mut value, body),
        }
        let mut node: Node =
            serde_json::from_value(value).map_err(|e| status_invalid(name, &e.to_string()))?;
        if status {
            node.spec = current.spec.clone();
        } else {
            node.status = current.status.clone();
        }
        node.metadata.name = current.metadata.name.clone();
        node.metadata.uid = current.metadata.uid.clone();
        if node == current {
            return Ok(Event {
                rv: self.rv,
                kind: EventType::Modified,
                node,
            });
        }
        Ok(self.commit(name.to_owned(), node, EventType::Modified))
    }

    pub fn delete(&mut self, name: &str) -> Answer<Event> {
        let node = self.nodes.remove(name).ok_or_else(|| not_found(name))?;
        self.rv += 1;
        let mut node = node;
        node.metadata.resource_version = Some(self.rv.to_string());
        Ok(self.record(EventType::Deleted, node))
    }

    /// Forgets every event so far: watches and lists from before now get
    /// 410, as after an etcd compaction.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    fn commit(&mut self, name: String, mut node: Node, kind: EventType) -> Event {
        self.rv += 1;
        node.metadata.resource_version = Some(self.rv.to_string());
        self.nodes.insert(name, node.clone());
        self.record(kind, node)
    }

    fn record(&mut self, kind: EventType, node: Node) -> Event {
        let event = Event {
            rv: self.rv,
            kind,
            node,
        };
        self.history.push_back(event.clone());
        while self.history.len() > HISTORY {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        event
    }
}

fn internal(e: serde_json::Error) -> Box<Status> {
    status(500, "InternalError", e.to_string(), None)
}

fn status_invalid(name: &str, why: &str) -> Box<Status> {
    status(
        422,
        "Invalid",
        format!("nodes \"{name}\" is invalid: {why}"),
        Some(name),
    )
}

fn conflict(name: &str) -> Box<Status> {
    status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on nodes \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again"
        ),
        Some(name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn world_with(names: &[&str]) -> World {
        let mut w = World::default();
        for n in names {
            w.create(crate::node(n, &["10.244.1.0/24"])).unwrap();
        }
        w
    }

    #[test]
    fn a_stale_update_is_409_and_a_current_one_lands() {
        let mut w = world_with(&["n1"]);
        let old = w.get("n1").unwrap();
        let mut newer = old.clone();
        newer.metadata.labels = Some([("a".to_owned(), "1".to_owned())].into());
        w.update("n1", newer).unwrap();
        let stale = w.update("n1", old).unwrap_err();
        assert_eq!(
            (stale.code, stale.reason.as_deref()),
            (Some(409), Some("Conflict"))
        );
        let stale_patch = json!({"metadata": {"resourceVersion": "1", "annotations": {"x": "y"}}});
        let e = w
            .patch("n1", PatchKind::Merge, &stale_patch, true)
            .unwrap_err();
        assert_eq!(e.code, Some(409));
    }

    #[test]
    fn the_status_subresource_never_changes_spec_and_the_node_never_status() {
        let mut w = world_with(&["n1"]);
        let p = json!({"spec": {"podCIDRs": ["10.9.9.0/24"]}, "status": {"phase": "Running"},
            "metadata": {"annotations": {"podnet.io/public-ip": "192.168.1.2"}}});
        let e = w.patch("n1", PatchKind::Merge, &p, true).unwrap();
        let spec = e.node.spec.unwrap();
        assert_eq!(spec.pod_cidrs.unwrap(), ["10.244.1.0/24"]);
        assert_eq!(e.node.status.unwrap().phase.as_deref(), Some("Running"));
        assert!(
            e.node
                .metadata
                .annotations
                .unwrap()
                .contains_key("podnet.io/public-ip")
        );
        let e = w
            .patch(
                "n1",
                PatchKind::Merge,
                &json!({"status": {"phase": "Pending"}}),
                false,
            )
            .unwrap();
        assert_eq!(e.node.status.unwrap().phase.as_deref(), Some("Running"));
    }

    #[test]
    fn compacted_revisions_are_410_for_lists_and_watches() {
        let mut w = world_with(&["n1", "n2"]);
        let rv = w.revision();
        assert_eq!(w.events_since(0).unwrap().len(), 2);
        w.delete("n1").unwrap();
        w.compact();
        assert_eq!(w.events_since(rv).unwrap_err().code, Some(410));
        assert_eq!(w.list(Some(rv), None, 0).unwrap_err().code, Some(410));
        assert_eq!(w.list(None, None, 0).unwrap().0.len(), 1);
        assert!(w.events_since(w.revision()).unwrap().is_empty());
    }

    #[test]
    fn lists_page_by_name() {
        let w = world_with(&["a", "b", "c"]);
        let (page, meta) = w.list(None, None, 2).unwrap();
        assert_eq!(page.len(), 2);
        let next = meta.continue_.unwrap();
        let (rest, meta) = w.list(None, Some(&next), 2).unwrap();
        assert_eq!(rest[0].metadata.name.as_deref(), Some("c"));
        assert!(meta.continue_.is_none());
    }
}
