//! The emulated API server's state: Nodes as `k8s-openapi` objects, one
//! resourceVersion counter, and the event history watches replay from.
//! Pure: every request is a method here that returns an object or the
//! `Status` the real server would answer.

use std::collections::{BTreeMap, VecDeque};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status, StatusDetails};
use serde_json::Value;

use crate::objects::{ObjEvent, Objects};
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
    /// The cluster's one resourceVersion: it moves on every write, to a
    /// Node or not (see [`World::other_write`]), as etcd's revision does.
    rv: u64,
    nodes: BTreeMap<String, Node>,
    history: VecDeque<Event>,
    /// Beside each event of `history`: the node as it was before it, so
    /// that the state at an older revision can be served (an exact list,
    /// a continued one).
    before: VecDeque<Option<Node>>,
    /// Events at or below this revision are gone.
    compacted: u64,
    /// Namespaces, Pods and NetworkPolicies, on the same revision.
    pub objects: Objects,
}

/// How a list reads the state (`resourceVersionMatch`, or what the
/// server infers from `resourceVersion` and `limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListAt {
    /// No resourceVersion: the latest.
    Latest,
    /// At least this recent: the latest will do.
    NotOlderThan(u64),
    /// Exactly this revision: 410 once it is compacted.
    Exact(u64),
}

impl ListAt {
    /// The semantics upstream gives a list's parameters: `resourceVersion`
    /// unset is the latest; "0" is any; a value with `limit` is exact,
    /// without it not-older-than; an explicit `resourceVersionMatch`
    /// decides.
    pub fn of(rv: Option<&str>, matching: Option<&str>, limit: usize) -> Result<ListAt, String> {
        let Some(rv) = rv.filter(|v| !v.is_empty()) else {
            return match matching {
                Some(_) => Err(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
                ),
                None => Ok(ListAt::Latest),
            };
        };
        let at: u64 = rv
            .parse()
            .map_err(|_| format!("invalid resource version {rv:?}"))?;
        match (matching, at, limit) {
            (Some("Exact"), 0, _) => {
                Err("resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"".into())
            }
            (Some("Exact"), _, _) => Ok(ListAt::Exact(at)),
            (Some("NotOlderThan"), _, _) | (None, 0, _) | (None, _, 0) => {
                Ok(ListAt::NotOlderThan(at))
            }
            (None, _, _) => Ok(ListAt::Exact(at)),
            (Some(other), _, _) => Err(format!("unsupported resourceVersionMatch {other:?}")),
        }
    }
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

    /// Nodes sorted by name, `limit` at a time, read at `at`; a continue
    /// token (`<revision>/<last name>`) goes on from the same snapshot,
    /// or is 410 once that revision is compacted, as upstream.
    pub fn list(
        &self,
        at: ListAt,
        continued: Option<&str>,
        limit: usize,
    ) -> Answer<(Vec<Node>, ListMeta)> {
        let (rv, after) = match continued {
            Some(token) => {
                let (rv, after) = token
                    .split_once('/')
                    .and_then(|(rv, after)| Some((rv.parse::<u64>().ok()?, after)))
                    .ok_or_else(|| {
                        status(400, "BadRequest", "invalid continue token".into(), None)
                    })?;
                if rv < self.compacted {
                    return Err(status(
                        410,
                        "Expired",
                        "The provided continue parameter is too old to display a consistent \
                         list result. You can start a new list without the continue parameter."
                            .into(),
                        None,
                    ));
                }
                (rv, Some(after))
            }
            None => match at {
                ListAt::Latest => (self.rv, None),
                ListAt::NotOlderThan(rv) if rv > self.rv => {
                    return Err(status(
                        504,
                        "Timeout",
                        format!("Too large resource version: {rv}, current: {}", self.rv),
                        None,
                    ));
                }
                ListAt::NotOlderThan(_) => (self.rv, None),
                ListAt::Exact(rv) => (rv, None),
            },
        };
        let snapshot = self.state_at(rv)?;
        let items: Vec<Node> = snapshot
            .iter()
            .filter(|(n, _)| after.is_none_or(|a| n.as_str() > a))
            .take(if limit == 0 { usize::MAX } else { limit })
            .map(|(_, node)| node.clone())
            .collect();
        let last = items.last().and_then(|n| n.metadata.name.clone());
        let more = last.as_ref().is_some_and(|l| {
            snapshot
                .range::<String, _>((
                    std::ops::Bound::Excluded(l.clone()),
                    std::ops::Bound::Unbounded,
                ))
                .next()
                .is_some()
        });
        let meta = ListMeta {
            resource_version: Some(rv.to_string()),
            continue_: match (limit > 0 && more, last) {
                (true, Some(last)) => Some(format!("{rv}/{last}")),
                _ => None,
            },
            ..Default::default()
        };
        Ok((items, meta))
    }

    /// The Nodes as they were at revision `rv`: the current ones with
    /// every later event undone; 410 if some of those were compacted.
    fn state_at(&self, rv: u64) -> Answer<std::borrow::Cow<'_, BTreeMap<String, Node>>> {
        if rv >= self.rv {
            return Ok(std::borrow::Cow::Borrowed(&self.nodes));
        }
        if rv < self.compacted {
            return Err(status(
                410,
                "Expired",
                format!(
                    "The resourceVersion for the provided list is too old: {rv} ({})",
                    self.compacted
                ),
                None,
            ));
        }
        let mut nodes = self.nodes.clone();
        for (event, before) in self.history.iter().zip(&self.before).rev() {
            if event.rv <= rv {
                break;
            }
            let name = event.node.metadata.name.clone().unwrap_or_default();
            match before {
                Some(node) => nodes.insert(name, node.clone()),
                None => nodes.remove(&name),
            };
        }
        Ok(std::borrow::Cow::Owned(nodes))
    }

    /// A write to something other than a Node (a pod, an event, a lease):
    /// the revision moves, and Node lists and bookmarks show it.
    pub fn other_write(&mut self) {
        self.rv += 1;
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
        validate(&name, &node, None)?;
        node.metadata.uid = Some(format!("uid-{name}-{}", self.rv + 1));
        Ok(self.commit(name, node, EventType::Added))
    }

    /// A full update: 409 unless it names the current resourceVersion.
    pub fn update(&mut self, name: &str, node: Node) -> Answer<Event> {
        let current = self.get(name)?;
        if node.metadata.resource_version != current.metadata.resource_version {
            return Err(conflict(name));
        }
        validate(name, &node, Some(&current))?;
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
        validate(name, &node, Some(&current))?;
        Ok(self.commit(name.to_owned(), node, EventType::Modified))
    }

    pub fn delete(&mut self, name: &str) -> Answer<Event> {
        let before = self.nodes.remove(name).ok_or_else(|| not_found(name))?;
        self.rv += 1;
        let mut node = before.clone();
        node.metadata.resource_version = Some(self.rv.to_string());
        Ok(self.record(EventType::Deleted, node, Some(before)))
    }

    /// Forgets every event so far: watches and lists from before now get
    /// 410, as after an etcd compaction.
    pub fn compact(&mut self) {
        self.history.clear();
        self.before.clear();
        self.compacted = self.rv;
        self.objects.compact(self.rv);
    }

    /// A write of an object other than a Node, at the next revision; the
    /// revision moves only if `f` wrote (an unchanging patch does not).
    pub fn write_object(
        &mut self,
        f: impl FnOnce(&mut Objects, u64) -> Answer<ObjEvent>,
    ) -> Answer<ObjEvent> {
        let next = self.rv + 1;
        let event = f(&mut self.objects, next)?;
        if event.rv == next {
            self.rv = next;
        }
        Ok(event)
    }

    fn commit(&mut self, name: String, mut node: Node, kind: EventType) -> Event {
        self.rv += 1;
        node.metadata.resource_version = Some(self.rv.to_string());
        let before = self.nodes.insert(name, node.clone());
        self.record(kind, node, before)
    }

    fn record(&mut self, kind: EventType, node: Node, before: Option<Node>) -> Event {
        let event = Event {
            rv: self.rv,
            kind,
            node,
        };
        self.history.push_back(event.clone());
        self.before.push_back(before);
        while self.history.len() > HISTORY {
            self.before.pop_front();
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
        format!("Node \"{name}\" is invalid: {why}"),
        Some(name),
    )
}

/// The most all of an object's annotations may hold, keys and values.
const ANNOTATIONS_MAX: usize = 256 * 1024;

/// What a real API server checks of the fields a Node's writers touch:
/// annotation keys and their total size, podCIDRs (valid, and set only
/// once), no duplicate address. (It checks nothing of a Node's
/// conditions: anyone who may update a Node's status may write them.)
fn validate(name: &str, node: &Node, old: Option<&Node>) -> Answer<()> {
    let invalid = |why: String| Err(status_invalid(name, &why));
    let annotations = node.metadata.annotations.iter().flatten();
    for key in annotations.clone().map(|(k, _)| k) {
        if let Err(why) = qualified_name(key) {
            return invalid(format!(
                "metadata.annotations: Invalid value: {key:?}: {why}"
            ));
        }
    }
    let size: usize = annotations.map(|(k, v)| k.len() + v.len()).sum();
    if size > ANNOTATIONS_MAX {
        return invalid(format!(
            "metadata.annotations: Too long: must have at most {ANNOTATIONS_MAX} bytes"
        ));
    }
    let cidrs = |n: &Node| {
        n.spec
            .as_ref()
            .and_then(|s| s.pod_cidrs.clone())
            .unwrap_or_default()
    };
    for cidr in cidrs(node) {
        if cidr.parse::<ipnet::IpNet>().is_err() {
            return invalid(format!(
                "spec.podCIDRs: Invalid value: {cidr:?}: must be a valid CIDR"
            ));
        }
    }
    if let Some(old) = old
        && !cidrs(old).is_empty()
        && cidrs(old) != cidrs(node)
    {
        return invalid("spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid".into());
    }
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.clone())
        .unwrap_or_default();
    for (i, a) in addresses.iter().enumerate() {
        if addresses[..i].contains(a) {
            return invalid(format!("status.addresses[{i}]: Duplicate value"));
        }
    }
    Ok(())
}

/// A qualified name: an optional DNS-subdomain prefix and `/`, then a
/// name of 1 to 63 characters, alphanumeric at both ends, `-`, `_` or
/// `.` between.
fn qualified_name(key: &str) -> Result<(), &'static str> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if prefix.is_empty() || prefix.len() > 253 || !prefix.split('.').all(label_ok) {
            return Err("prefix part must be a lowercase RFC 1123 subdomain");
        }
    }
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 63 {
        return Err("name part must be no more than 63 characters, and not empty");
    }
    if !edge(name.chars().next())
        || !edge(name.chars().next_back())
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
        );
    }
    Ok(())
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
        assert_eq!(
            w.list(ListAt::Exact(rv), None, 0).unwrap_err().code,
            Some(410)
        );
        assert_eq!(
            w.list(ListAt::NotOlderThan(rv), None, 0).unwrap().0.len(),
            1
        );
        assert_eq!(w.list(ListAt::Latest, None, 0).unwrap().0.len(), 1);
        assert!(w.events_since(w.revision()).unwrap().is_empty());
    }

    #[test]
    fn lists_page_by_name() {
        let w = world_with(&["a", "b", "c"]);
        let (page, meta) = w.list(ListAt::Latest, None, 2).unwrap();
        assert_eq!(page.len(), 2);
        let next = meta.continue_.unwrap();
        let (rest, meta) = w.list(ListAt::Latest, Some(&next), 2).unwrap();
        assert_eq!(rest[0].metadata.name.as_deref(), Some("c"));
        assert!(meta.continue_.is_none());
    }

    #[test]
    fn list_semantics_follow_resource_version_limit_and_match() {
        let of = |rv, m, limit| ListAt::of(rv, m, limit);
        assert_eq!(of(None, None, 0), Ok(ListAt::Latest));
        assert_eq!(of(Some("0"), None, 500), Ok(ListAt::NotOlderThan(0)));
        assert_eq!(of(Some("7"), None, 0), Ok(ListAt::NotOlderThan(7)));
        assert_eq!(of(Some("7"), None, 500), Ok(ListAt::Exact(7)));
        assert_eq!(
            of(Some("7"), Some("NotOlderThan"), 500),
            Ok(ListAt::NotOlderThan(7))
        );
        assert_eq!(of(Some("7"), Some("Exact"), 0), Ok(ListAt::Exact(7)));
        assert!(of(None, Some("Exact"), 0).is_err());
        assert!(of(Some("0"), Some("Exact"), 0).is_err());
    }

    #[test]
    fn an_exact_list_and_its_pages_are_one_snapshot() {
        let mut w = world_with(&["a", "b", "c"]);
        let at = w.revision();
        let (first, meta) = w.list(ListAt::Latest, None, 2).unwrap();
        assert_eq!(first.len(), 2);
        // Writes meanwhile, to Nodes and to other things.
        w.delete("c").unwrap();
        w.create(crate::node("d", &["10.244.4.0/24"])).unwrap();
        w.patch(
            "a",
            PatchKind::Merge,
            &json!({"metadata": {"labels": {"x": "y"}}}),
            false,
        )
        .unwrap();
        w.other_write();
        let (rest, _) = w
            .list(ListAt::Latest, meta.continue_.as_deref(), 2)
            .unwrap();
        let names: Vec<_> = rest
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        assert_eq!(names, ["c"], "the snapshot of the first page");
        let (exact, meta) = w.list(ListAt::Exact(at), None, 10).unwrap();
        assert_eq!(meta.resource_version, Some(at.to_string()));
        assert_eq!(exact.len(), 3);
        assert!(exact[0].metadata.labels.is_none(), "a as it was");
        let (now, _) = w.list(ListAt::NotOlderThan(at), None, 0).unwrap();
        let names: Vec<_> = now.iter().filter_map(|n| n.metadata.name.clone()).collect();
        assert_eq!(names, ["a", "b", "d"]);
        assert_eq!(
            w.list(ListAt::NotOlderThan(w.revision() + 5), None, 0)
                .unwrap_err()
                .code,
            Some(504)
        );
        w.compact();
        assert_eq!(
            w.list(ListAt::Exact(at), None, 10).unwrap_err().code,
            Some(410)
        );
        let expired = w.list(ListAt::Latest, meta.continue_.as_deref().or(Some("3/a")), 2);
        assert_eq!(expired.unwrap_err().code, Some(410));
    }

    #[test]
    fn what_a_real_server_validates_is_refused() {
        let mut w = world_with(&["n1"]);
        let patch = |w: &mut World, body: serde_json::Value| {
            w.patch("n1", PatchKind::Merge, &body, true).map(drop)
        };
        let bad_key = patch(
            &mut w,
            json!({"metadata": {"annotations": {"bad^key": "x"}}}),
        );
        let e = bad_key.unwrap_err();
        assert_eq!(e.code, Some(422));
        assert!(
            e.message
                .unwrap()
                .starts_with("Node \"n1\" is invalid: metadata.annotations")
        );
        let big = "x".repeat(ANNOTATIONS_MAX);
        let e = patch(
            &mut w,
            json!({"metadata": {"annotations": {"podnet.io/big": big}}}),
        )
        .unwrap_err();
        assert!(
            e.message
                .unwrap()
                .contains("Too long: must have at most 262144 bytes")
        );
        patch(
            &mut w,
            json!({"metadata": {"annotations": {"podnet.io/backend-data": "{}"}}}),
        )
        .unwrap();
        let moved = w.patch(
            "n1",
            PatchKind::Merge,
            &json!({"spec": {"podCIDRs": ["10.9.0.0/24"]}}),
            false,
        );
        assert_eq!(moved.unwrap_err().code, Some(422), "podCIDRs are set once");
        let twice = json!({"status": {"addresses": [
            {"type": "InternalIP", "address": "10.0.0.1"}, {"type": "InternalIP", "address": "10.0.0.1"}]}});
        assert_eq!(patch(&mut w, twice).unwrap_err().code, Some(422));
        // Conditions are not validated upstream.
        patch(
            &mut w,
            json!({"status": {"conditions": [{"type": "", "status": "Maybe"}]}}),
        )
        .unwrap();
        for good in [
            "a",
            "podnet.io/backend-type",
            "node.alpha.kubernetes.io/ttl",
            "A_b.c-1",
        ] {
            assert_eq!(qualified_name(good), Ok(()), "{good}");
        }
        for bad in ["", "-a", "a/", "/a", "Upper.io/a", &"a".repeat(64)] {
            assert!(qualified_name(bad).is_err(), "{bad}");
        }
    }
}
