//! What policy reads, as a store keeps it: namespace, pod and policy
//! records under one key space, and the [`Cluster`] they describe.
//!
//! ```text
//! namespaces/<ns>           {"name", "labels"}
//! pods/<ns>/<name>          {"namespace", "name", "node", "labels", "ips", "ports"}
//! policies/<ns>/<name>      a NetworkPolicy document (JSON)
//! ```
//!
//! Pod and namespace records are written by whoever runs the pods (the
//! lab; on Kubernetes they are the API's objects). A pod's addresses may
//! come later than its record: the plugin's ADD binds them on the pod's
//! own node at once (see [`Bound`]). A record that does not parse is
//! listed apart and costs only itself.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::api::{NetworkPolicy, Protocol};
use super::model::{Cluster, NamedPort, Pod};
use super::selector::Labels;

/// The label the API server gives every namespace (since Kubernetes 1.22).
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The three kinds of record, by their key's first segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    Pod,
    Policy,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Namespace, Kind::Pod, Kind::Policy];

    pub fn segment(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Pod => "pods",
            Kind::Policy => "policies",
        }
    }

    /// A record's key: `namespaces/NS`, `pods/NS/NAME`, `policies/NS/NAME`.
    pub fn key(self, namespace: &str, name: &str) -> String {
        match self {
            Kind::Namespace => format!("namespaces/{namespace}"),
            _ => format!("{}/{namespace}/{name}", self.segment()),
        }
    }

    /// The kind and `(namespace, name)` a key names; `None` for a key that
    /// is no record's. Names are checked as the API server checks them
    /// (DNS labels for namespaces, subdomains for the rest), so a key is
    /// also a safe file name once its slashes are mapped.
    pub fn parse(key: &str) -> Option<(Kind, String, String)> {
        let mut parts = key.split('/');
        let first = parts.next()?;
        let kind = Kind::ALL.into_iter().find(|k| k.segment() == first)?;
        let namespace = parts.next().filter(|n| is_label(n))?.to_owned();
        let name = match kind {
            Kind::Namespace => namespace.clone(),
            _ => parts.next().filter(|n| is_subdomain(n))?.to_owned(),
        };
        parts.next().is_none().then_some((kind, namespace, name))
    }
}

/// A DNS-1123 label: what a namespace's name must be.
pub fn is_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain: what a pod's or a policy's name must be.
pub fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRecord {
    pub name: String,
    pub port: u16,
    #[serde(default = "tcp")]
    pub protocol: Protocol,
}

fn tcp() -> Protocol {
    Protocol::TCP
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    pub namespace: String,
    pub name: String,
    /// The node it runs on (`spec.nodeName`).
    pub node: String,
    #[serde(default)]
    pub labels: Labels,
    /// Its addresses once known (`status.podIPs`).
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    /// Its containers' named ports.
    #[serde(default)]
    pub ports: Vec<PortRecord>,
}

/// A pod's addresses as this node's plugin bound them at ADD, by
/// `(namespace, name)`: known before any record carries them.
pub type Bound = BTreeMap<(String, String), Vec<IpAddr>>;

/// The cluster the records describe, and the records that do not parse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Read {
    pub cluster: Cluster,
    pub corrupt: BTreeMap<String, String>,
}

/// The cluster `records` (by key) describe, with `bound`'s addresses on
/// `node`'s pods. A namespace with pods but no record is there with only
/// its name label, as the API server labels every namespace.
pub fn read(records: &BTreeMap<String, Vec<u8>>, bound: &Bound, node: &str) -> Read {
    let mut out = Read::default();
    for (key, value) in records {
        if let Err(why) = read_one(&mut out.cluster, key, value) {
            out.corrupt.insert(key.clone(), why);
        }
    }
    for pod in &mut out.cluster.pods {
        if let Some(ips) = bound.get(&(pod.namespace.clone(), pod.name.clone())) {
            pod.node = node.to_owned();
            for ip in ips {
                if !pod.ips.contains(ip) {
                    pod.ips.push(*ip);
                }
            }
        }
    }
    for pod in &out.cluster.pods {
        out.cluster
            .namespaces
            .entry(pod.namespace.clone())
            .or_default();
    }
    for (name, labels) in &mut out.cluster.namespaces {
        labels.insert(NAME_LABEL.to_owned(), name.clone());
    }
    out
}

fn read_one(cluster: &mut Cluster, key: &str, value: &[u8]) -> Result<(), String> {
    let (kind, namespace, name) = Kind::parse(key).ok_or("not a record's key")?;
    let mismatch = |ns: &str, n: &str| format!("the record names {ns}/{n}, its key another");
    match kind {
        Kind::Namespace => {
            let r: NamespaceRecord = serde_json::from_slice(value).map_err(|e| e.to_string())?;
            if r.name != name {
                return Err(mismatch(&r.name, ""));
            }
            cluster.namespaces.insert(r.name, r.labels);
        }
        Kind::Pod => {
            let r: PodRecord = serde_json::from_slice(value).map_err(|e| e.to_string())?;
            if (r.namespace.as_str(), r.name.as_str()) != (namespace.as_str(), name.as_str()) {
                return Err(mismatch(&r.namespace, &r.name));
            }
            cluster.pods.push(Pod {
                namespace: r.namespace,
                name: r.name,
                node: r.node,
                labels: r.labels,
                ips: r.ips,
                ports: r
                    .ports
                    .into_iter()
                    .map(|p| NamedPort {
                        name: p.name,
                        port: p.port,
                        protocol: p.protocol,
                    })
                    .collect(),
            });
        }
        Kind::Policy => {
            let text = std::str::from_utf8(value).map_err(|e| e.to_string())?;
            let mut docs = NetworkPolicy::documents(text).map_err(|e| e.to_string())?;
            let (policy, _) = docs
                .pop()
                .filter(|_| docs.is_empty())
                .ok_or("a policy record holds exactly one NetworkPolicy".to_owned())?;
            if (policy.namespace.as_str(), policy.name.as_str())
                != (namespace.as_str(), name.as_str())
            {
                return Err(mismatch(&policy.namespace, &policy.name));
            }
            cluster.policies.push(policy);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(items: &[(&str, serde_json::Value)]) -> BTreeMap<String, Vec<u8>> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string().into_bytes()))
            .collect()
    }

    #[test]
    fn keys_name_their_records_and_nothing_else() {
        assert_eq!(Kind::Pod.key("x", "a"), "pods/x/a");
        assert_eq!(Kind::Namespace.key("x", "ignored"), "namespaces/x");
        assert_eq!(
            Kind::parse("policies/x/allow.web"),
            Some((Kind::Policy, "x".into(), "allow.web".into()))
        );
        assert_eq!(
            Kind::parse("namespaces/x"),
            Some((Kind::Namespace, "x".into(), "x".into()))
        );
        for bad in [
            "pods/x",
            "pods/x/a/b",
            "pods/X/a",
            "pods/x/../a",
            "pods/x/..",
            "nodes/x/a",
            "namespaces/x.y",
            "",
        ] {
            assert_eq!(Kind::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn records_make_the_cluster_and_a_bad_one_costs_only_itself() {
        let recs = records(&[
            (
                "namespaces/x",
                serde_json::json!({"name": "x", "labels": {"team": "a"}}),
            ),
            (
                "pods/x/a",
                serde_json::json!({"namespace": "x", "name": "a", "node": "node2",
                    "labels": {"pod": "a"}, "ips": ["10.244.2.5"],
                    "ports": [{"name": "serve-80-udp", "port": 80, "protocol": "UDP"}]}),
            ),
            (
                "pods/y/b",
                serde_json::json!({"namespace": "y", "name": "b", "node": "node1"}),
            ),
            (
                "policies/x/deny",
                serde_json::json!({"kind": "NetworkPolicy",
                    "metadata": {"namespace": "x", "name": "deny"},
                    "spec": {"podSelector": {}}}),
            ),
            ("pods/x/c", serde_json::json!({"namespace": "x"})),
            (
                "pods/x/d",
                serde_json::json!({"namespace": "x", "name": "e", "node": "n"}),
            ),
            (
                "policies/x/other",
                serde_json::json!({"kind": "NetworkPolicy",
                    "metadata": {"namespace": "x", "name": "deny"},
                    "spec": {"podSelector": {}}}),
            ),
        ]);
        let bound: Bound = [(
            ("y".into(), "b".into()),
            vec!["10.244.1.7".parse().unwrap()],
        )]
        .into();
        let read = read(&recs, &bound, "node1");
        assert_eq!(
            read.corrupt.keys().collect::<Vec<_>>(),
            ["pods/x/c", "pods/x/d", "policies/x/other"]
        );
        let c = &read.cluster;
        assert_eq!(c.namespaces["x"]["team"], "a");
        assert_eq!(c.namespaces["x"][NAME_LABEL], "x");
        assert_eq!(
            c.namespaces["y"][NAME_LABEL], "y",
            "a namespace from its pods"
        );
        assert_eq!(c.pods.len(), 2);
        assert_eq!(c.pods[0].ports[0].protocol, Protocol::UDP);
        assert_eq!(c.pods[1].ips, ["10.244.1.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.policies.len(), 1);
        assert!(c.policies[0].ingress.as_ref().is_some_and(Vec::is_empty));
    }
}
