//! What podnet reads of a Node, and how a lease maps onto one, decided
//! purely. Only these fields are kept (name, podCIDRs, podnet's
//! annotations, addresses), never whole Node objects, which carry images
//! and conditions.

use std::borrow::Cow;
use std::collections::BTreeMap;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podnet_core::cluster::lease::{Lease, LeaseAttrs};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub const BACKEND_TYPE: &str = "podnet.io/backend-type";
pub const BACKEND_DATA: &str = "podnet.io/backend-data";
pub const BACKEND_V6_DATA: &str = "podnet.io/backend-v6-data";
pub const PUBLIC_IP: &str = "podnet.io/public-ip";
pub const PUBLIC_IPV6: &str = "podnet.io/public-ipv6";

/// A Node as podnet reads it: unknown fields are skipped while parsing.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SlimNode {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: SlimSpec,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SlimSpec {
    #[serde(rename = "podCIDRs", default, skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<String>,
}

impl kube::Resource for SlimNode {
    type DynamicType = ();
    type Scope = kube::core::ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Node".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "nodes".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// This node's subnets from `spec.podCIDRs`; an empty list if unset.
pub fn pod_cidrs(node: &SlimNode) -> Result<Vec<IpNet>, String> {
    node.spec
        .pod_cidrs
        .iter()
        .map(|c| c.parse().map_err(|e| format!("spec.podCIDRs {c:?}: {e}")))
        .collect()
}

/// podnet's annotations for `attrs`.
pub fn annotations(attrs: &LeaseAttrs) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([
        (BACKEND_TYPE.to_owned(), attrs.backend_type.clone()),
        (BACKEND_DATA.to_owned(), attrs.backend_data.to_string()),
        (PUBLIC_IP.to_owned(), attrs.public_ip.to_string()),
    ]);
    if !attrs.backend_v6_data.is_null() {
        a.insert(
            BACKEND_V6_DATA.to_owned(),
            attrs.backend_v6_data.to_string(),
        );
    }
    if let Some(v6) = attrs.public_ipv6 {
        a.insert(PUBLIC_IPV6.to_owned(), v6.to_string());
    }
    a
}

/// The merge patch that sets podnet's annotations to `attrs` (and removes
/// the optional ones `attrs` lacks), touching no other key.
pub fn annotations_patch(attrs: &LeaseAttrs) -> Value {
    let mut a: serde_json::Map<String, Value> = annotations(attrs)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    for key in [BACKEND_V6_DATA, PUBLIC_IPV6] {
        a.entry(key).or_insert(Value::Null);
    }
    json!({ "metadata": { "annotations": a } })
}

/// The reason podnet gives the NetworkUnavailable condition it sets.
pub const UP_REASON: &str = "PodnetIsUp";

/// The `nodes/status` strategic merge patch that takes podnet off a Node:
/// its annotations removed, and the NetworkUnavailable condition deleted
/// if podnet set it (another plugin's stays). `None` if there is nothing
/// of podnet's.
pub fn forget_patch(node: &k8s_openapi::api::core::v1::Node) -> Option<Value> {
    let ours: serde_json::Map<String, Value> = node
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("podnet.io/"))
        .map(|(k, _)| (k.clone(), Value::Null))
        .collect();
    let condition = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "NetworkUnavailable" && c.reason.as_deref() == Some(UP_REASON));
    if ours.is_empty() && !condition {
        return None;
    }
    let mut patch = json!({ "metadata": { "annotations": ours } });
    if condition {
        patch["status"] =
            json!({"conditions": [{"type": "NetworkUnavailable", "$patch": "delete"}]});
    }
    Some(patch)
}

/// Whether the node's annotations say `attrs` already.
pub fn annotated(node: &SlimNode, attrs: &LeaseAttrs) -> bool {
    let have = node.metadata.annotations.as_ref();
    let want = annotations(attrs);
    let theirs = |k: &str| have.and_then(|h| h.get(k));
    want.iter().all(|(k, v)| theirs(k) == Some(v))
        && [BACKEND_V6_DATA, PUBLIC_IPV6]
            .iter()
            .all(|k| want.contains_key(*k) || theirs(k).is_none())
}

/// A peer's lease: `None` while it has no podCIDRs or no annotations yet
/// (skipped until it has both), `Some(Err)` for annotations podnet cannot
/// read.
pub fn lease(node: &SlimNode) -> Option<Result<Lease, String>> {
    let name = node.metadata.name.clone()?;
    let subnets = match pod_cidrs(node) {
        Ok(s) if s.is_empty() => return None,
        Ok(s) => s,
        Err(e) => return Some(Err(e)),
    };
    let a = node.metadata.annotations.as_ref()?;
    let backend_type = a.get(BACKEND_TYPE)?.clone();
    Some(attrs_of(a, backend_type).map(|attrs| Lease {
        node: name,
        subnets,
        expires: u64::MAX,
        attrs,
    }))
}

fn attrs_of(a: &BTreeMap<String, String>, backend_type: String) -> Result<LeaseAttrs, String> {
    let ip = |key: &str| -> Result<Option<std::net::IpAddr>, String> {
        a.get(key)
            .map(|v| v.parse().map_err(|e| format!("{key} {v:?}: {e}")))
            .transpose()
    };
    let data = |key: &str| -> Result<Value, String> {
        a.get(key)
            .map(|v| serde_json::from_str(v).map_err(|e| format!("{key}: {e}")))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    Ok(LeaseAttrs {
        public_ip: ip(PUBLIC_IP)?.ok_or(format!("no {PUBLIC_IP}"))?,
        public_ipv6: ip(PUBLIC_IPV6)?,
        backend_type,
        backend_data: data(BACKEND_DATA)?,
        backend_v6_data: data(BACKEND_V6_DATA)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> LeaseAttrs {
        LeaseAttrs {
            public_ip: "192.168.1.1".parse().unwrap(),
            public_ipv6: None,
            backend_type: "vxlan".into(),
            backend_data: json!({"VNI": 1, "VtepMAC": "aa:bb:cc:dd:ee:ff"}),
            backend_v6_data: Value::Null,
        }
    }

    fn node(cidrs: &[&str], annotations: Option<BTreeMap<String, String>>) -> SlimNode {
        SlimNode {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                annotations,
                ..Default::default()
            },
            spec: SlimSpec {
                pod_cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
            },
        }
    }

    #[test]
    fn a_lease_round_trips_through_annotations() {
        let n = node(&["10.244.1.0/24"], Some(annotations(&attrs())));
        let lease = lease(&n).unwrap().unwrap();
        assert_eq!(lease.attrs, attrs());
        assert_eq!(lease.subnets, ["10.244.1.0/24".parse::<IpNet>().unwrap()]);
        assert!(annotated(&n, &attrs()));
    }

    #[test]
    fn a_node_without_cidrs_or_annotations_is_skipped_and_bad_ones_named() {
        assert!(lease(&node(&[], Some(annotations(&attrs())))).is_none());
        assert!(lease(&node(&["10.244.1.0/24"], None)).is_none());
        let mut bad = annotations(&attrs());
        bad.insert(PUBLIC_IP.into(), "nope".into());
        let err = lease(&node(&["10.244.1.0/24"], Some(bad)))
            .unwrap()
            .unwrap_err();
        assert!(err.contains(PUBLIC_IP), "{err}");
    }

    #[test]
    fn the_patch_touches_only_podnets_keys() {
        let p = annotations_patch(&attrs());
        let keys: Vec<&String> = p["metadata"]["annotations"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert!(keys.iter().all(|k| k.starts_with("podnet.io/")), "{keys:?}");
        assert!(p["metadata"]["annotations"][PUBLIC_IPV6].is_null());
    }

    #[test]
    fn a_removed_annotation_is_noticed() {
        let mut a = annotations(&attrs());
        a.remove(BACKEND_DATA);
        assert!(!annotated(&node(&["10.244.1.0/24"], Some(a)), &attrs()));
    }
}
