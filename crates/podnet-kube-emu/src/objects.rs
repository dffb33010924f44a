//! The objects NetworkPolicy reads (Namespaces, Pods, NetworkPolicies),
//! kept as JSON beside the Nodes, on the world's one resourceVersion: an
//! object's write moves the revision Node lists and bookmarks show, as
//! etcd's does. Lists read the latest state (the only read podnet's
//! client asks for); watches replay the history, 410 once compacted.
//! As the real server: a namespaced object needs its namespace (404), a
//! namespace gets the `kubernetes.io/metadata.name` label, a stale
//! update is 409, and the status subresource never changes spec (nor
//! the main resource status).

use std::collections::{BTreeMap, VecDeque};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status};
use serde_json::Value;

use crate::patch;
use crate::world::{Answer, EventType, PatchKind, status};

/// Events kept for watches, as the Nodes' history keeps.
const HISTORY: usize = 10_000;

/// One resource the emulator serves as JSON.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    /// The plural, as in URLs and RBAC rules.
    pub resource: &'static str,
    /// The API group (`""`: core).
    pub group: &'static str,
    pub api_version: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a status subresource.
    pub status: bool,
}

pub const NAMESPACES: Kind = Kind {
    resource: "namespaces",
    group: "",
    api_version: "v1",
    kind: "Namespace",
    namespaced: false,
    status: false,
};
pub const PODS: Kind = Kind {
    resource: "pods",
    group: "",
    api_version: "v1",
    kind: "Pod",
    namespaced: true,
    status: true,
};
pub const NETWORK_POLICIES: Kind = Kind {
    resource: "networkpolicies",
    group: "networking.k8s.io",
    api_version: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    namespaced: true,
    status: false,
};

#[derive(Debug, Clone)]
pub struct ObjEvent {
    pub rv: u64,
    pub kind: EventType,
    pub resource: &'static str,
    pub object: Value,
}

#[derive(Debug, Default)]
pub struct Objects {
    /// By (resource, namespace, name); a cluster object's namespace is "".
    items: BTreeMap<(&'static str, String, String), Value>,
    history: VecDeque<ObjEvent>,
    compacted: u64,
}

fn namespace_of(v: &Value) -> Option<&str> {
    v.pointer("/metadata/namespace").and_then(Value::as_str)
}

fn not_found(kind: &Kind, name: &str) -> Box<Status> {
    status(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", kind.resource),
        Some(name),
    )
}

/// A DNS-1123 subdomain (a name), or a label (a namespace's name).
fn valid_name(name: &str, label: bool) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !p.starts_with('-')
            && !p.ends_with('-')
    };
    match label {
        true => part(name),
        false => name.len() <= 253 && name.split('.').all(part),
    }
}

impl Objects {
    /// The objects of `kind` (in `namespace`, if given), by namespace and
    /// name, at revision `rv` (the latest).
    pub fn list(&self, kind: &Kind, namespace: Option<&str>, rv: u64) -> (Vec<Value>, ListMeta) {
        let items = self
            .items
            .iter()
            .filter(|((r, ns, _), _)| *r == kind.resource && namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v.clone())
            .collect();
        let meta = ListMeta {
            resource_version: Some(rv.to_string()),
            ..Default::default()
        };
        (items, meta)
    }

    pub fn get(&self, kind: &Kind, namespace: &str, name: &str) -> Answer<Value> {
        self.items
            .get(&(kind.resource, namespace.to_owned(), name.to_owned()))
            .cloned()
            .ok_or_else(|| not_found(kind, name))
    }

    /// Events of `resource` (in `namespace`, if given) after `rv`, or 410
    /// if some were compacted away.
    pub fn events_since(
        &self,
        resource: &str,
        namespace: Option<&str>,
        rv: u64,
    ) -> Answer<Vec<ObjEvent>> {
        if rv < self.compacted {
            return Err(status(
                410,
                "Expired",
                format!("too old resource version: {rv} ({})", self.compacted),
                None,
            ));
        }
        Ok(self
            .history
            .iter()
            .filter(|e| {
                e.rv > rv
                    && e.resource == resource
                    && namespace.is_none_or(|n| namespace_of(&e.object) == Some(n))
            })
            .cloned()
            .collect())
    }

    /// Checks a new object of `kind` in `namespace` (the URL's) and fills
    /// what the server fills; its name.
    fn admit(&self, kind: &Kind, namespace: &str, v: &mut Value) -> Answer<String> {
        let name = v
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !valid_name(&name, !kind.namespaced) {
            return Err(status(
                422,
                "Invalid",
                format!(
                    "{} \"{name}\" is invalid: metadata.name: Invalid value: a lowercase RFC 1123 name is required",
                    kind.kind
                ),
                Some(&name),
            ));
        }
        if kind.namespaced {
            if namespace_of(v).is_some_and(|n| n != namespace) {
                return Err(status(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                    None,
                ));
            }
            if !self
                .items
                .contains_key(&(NAMESPACES.resource, String::new(), namespace.to_owned()))
            {
                return Err(status(
                    404,
                    "NotFound",
                    format!("namespaces \"{namespace}\" not found"),
                    Some(namespace),
                ));
            }
            v["metadata"]["namespace"] = namespace.into();
        } else if kind == &NAMESPACES {
            v["metadata"]["labels"]["kubernetes.io/metadata.name"] = name.clone().into();
        }
        v["kind"] = kind.kind.into();
        v["apiVersion"] = kind.api_version.into();
        Ok(name)
    }

    pub fn create(
        &mut self,
        rv: u64,
        kind: &'static Kind,
        namespace: &str,
        mut v: Value,
    ) -> Answer<ObjEvent> {
        let name = self.admit(kind, namespace, &mut v)?;
        let key = (kind.resource, namespace.to_owned(), name.clone());
        if self.items.contains_key(&key) {
            return Err(status(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", kind.resource),
                Some(&name),
            ));
        }
        v["metadata"]["uid"] = format!("uid-{}-{name}-{rv}", kind.resource).into();
        Ok(self.commit(rv, kind, key, v, EventType::Added))
    }

    /// A full update (PUT): 409 if it names another resourceVersion.
    pub fn replace(
        &mut self,
        rv: u64,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
        mut v: Value,
    ) -> Answer<ObjEvent> {
        let current = self.get(kind, namespace, name)?;
        check_version(kind, name, &current, &v)?;
        if self.admit(kind, namespace, &mut v)? != name {
            return Err(status(
                400,
                "BadRequest",
                "the name of the object does not match the name on the URL".into(),
                None,
            ));
        }
        v["metadata"]["uid"] = current["metadata"]["uid"].clone();
        if kind.status {
            v["status"] = current["status"].clone();
        }
        let key = (kind.resource, namespace.to_owned(), name.to_owned());
        Ok(self.commit(rv, kind, key, v, EventType::Modified))
    }

    /// A patch of the object, or of its status subresource.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rv: u64,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
        how: PatchKind,
        body: &Value,
        status_sub: bool,
    ) -> Answer<ObjEvent> {
        let current = self.get(kind, namespace, name)?;
        check_version(kind, name, &current, body)?;
        let mut v = current.clone();
        match how {
            PatchKind::Merge => patch::merge(&mut v, body),
            PatchKind::Strategic => patch::strategic(&mut v, body),
        }
        if status_sub {
            v["spec"] = current["spec"].clone();
        } else if kind.status {
            v["status"] = current["status"].clone();
        }
        v["metadata"]["name"] = name.into();
        v["metadata"]["uid"] = current["metadata"]["uid"].clone();
        self.admit(kind, namespace, &mut v)?;
        v["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        if v == current {
            // Nothing changed: no write, the revision stays.
            let at = current
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .and_then(|r| r.parse().ok())
                .unwrap_or_default();
            return Ok(ObjEvent {
                rv: at,
                kind: EventType::Modified,
                resource: kind.resource,
                object: v,
            });
        }
        let key = (kind.resource, namespace.to_owned(), name.to_owned());
        Ok(self.commit(rv, kind, key, v, EventType::Modified))
    }

    pub fn delete(
        &mut self,
        rv: u64,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
    ) -> Answer<ObjEvent> {
        let key = (kind.resource, namespace.to_owned(), name.to_owned());
        let mut v = self
            .items
            .remove(&key)
            .ok_or_else(|| not_found(kind, name))?;
        v["metadata"]["resourceVersion"] = rv.to_string().into();
        Ok(self.record(ObjEvent {
            rv,
            kind: EventType::Deleted,
            resource: kind.resource,
            object: v,
        }))
    }

    /// Forgets every event up to `rv`.
    pub fn compact(&mut self, rv: u64) {
        self.history.clear();
        self.compacted = rv;
    }

    fn commit(
        &mut self,
        rv: u64,
        kind: &'static Kind,
        key: (&'static str, String, String),
        mut v: Value,
        event: EventType,
    ) -> ObjEvent {
        v["metadata"]["resourceVersion"] = rv.to_string().into();
        self.items.insert(key, v.clone());
        self.record(ObjEvent {
            rv,
            kind: event,
            resource: kind.resource,
            object: v,
        })
    }

    fn record(&mut self, e: ObjEvent) -> ObjEvent {
        self.history.push_back(e.clone());
        while self.history.len() > HISTORY {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        e
    }
}

/// 409 if a write names a resourceVersion other than the object's: an
/// optimistic update that lost the race.
fn check_version(kind: &Kind, name: &str, current: &Value, write: &Value) -> Answer<()> {
    let version = |v: &Value| {
        v.pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match version(write) {
        Some(named) if Some(&named) != version(current).as_ref() => Err(conflict(kind, name)),
        _ => Ok(()),
    }
}

fn conflict(kind: &Kind, name: &str) -> Box<Status> {
    status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again",
            kind.resource
        ),
        Some(name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_follow_the_servers_rules() {
        let mut o = Objects::default();
        let pod =
            json!({"metadata": {"name": "a", "labels": {"pod": "a"}}, "spec": {"nodeName": "n1"}});
        let e = o.create(1, &PODS, "x", pod.clone()).unwrap_err();
        assert_eq!(e.code, Some(404), "no namespace x yet");
        let ns = o
            .create(2, &NAMESPACES, "", json!({"metadata": {"name": "x"}}))
            .unwrap();
        assert_eq!(
            ns.object["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "x"
        );
        let added = o.create(3, &PODS, "x", pod.clone()).unwrap();
        assert_eq!(added.object["metadata"]["resourceVersion"], "3");
        assert_eq!(o.create(4, &PODS, "x", pod).unwrap_err().code, Some(409));
        // The status subresource never changes spec, the object never status.
        let status =
            json!({"status": {"podIPs": [{"ip": "10.244.1.2"}]}, "spec": {"nodeName": "n9"}});
        let e = o
            .patch(5, &PODS, "x", "a", PatchKind::Merge, &status, true)
            .unwrap();
        assert_eq!(e.object["spec"]["nodeName"], "n1");
        assert_eq!(e.object["status"]["podIPs"][0]["ip"], "10.244.1.2");
        let e = o
            .patch(
                6,
                &PODS,
                "x",
                "a",
                PatchKind::Merge,
                &json!({"status": null, "metadata": {"labels": {"pod": "b"}}}),
                false,
            )
            .unwrap();
        assert_eq!(e.object["status"]["podIPs"][0]["ip"], "10.244.1.2");
        assert_eq!(e.object["metadata"]["labels"]["pod"], "b");
        let stale = json!({"metadata": {"resourceVersion": "3", "labels": {"pod": "c"}}});
        assert_eq!(
            o.patch(7, &PODS, "x", "a", PatchKind::Merge, &stale, false)
                .unwrap_err()
                .code,
            Some(409)
        );
        assert_eq!(o.events_since("pods", Some("x"), 3).unwrap().len(), 2);
        assert!(o.events_since("pods", Some("y"), 0).unwrap().is_empty());
        o.delete(8, &PODS, "x", "a").unwrap();
        assert!(o.list(&PODS, None, 8).0.is_empty());
        o.compact(8);
        assert_eq!(o.events_since("pods", None, 3).unwrap_err().code, Some(410));
    }
}
