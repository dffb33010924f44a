//! What policy reads of Namespaces, Pods and NetworkPolicies, and how they
//! map to the store's records, decided purely. A Pod keeps its name,
//! namespace, labels, node, phase, addresses and named container ports,
//! nothing else (no images, volumes, conditions).

use std::borrow::Cow;

use k8s_openapi::api::core::v1::{Container, ContainerPort, Namespace, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podnet_core::policy::Protocol;
use podnet_core::policy::source::{Kind, NamespaceRecord, PodRecord, PortRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SlimNamespace {
    pub metadata: ObjectMeta,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SlimPod {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: SlimPodSpec,
    #[serde(default)]
    pub status: SlimPodStatus,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimPodSpec {
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub containers: Vec<SlimContainer>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SlimContainer {
    #[serde(default)]
    pub ports: Vec<SlimPort>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimPort {
    #[serde(default)]
    pub name: Option<String>,
    pub container_port: i32,
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimPodStatus {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(rename = "podIPs", default)]
    pub pod_ips: Vec<SlimPodIp>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SlimPodIp {
    pub ip: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SlimPolicy {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Value,
}

/// `kube::Resource` for a slim type: its kind, group, version, plural
/// and scope.
macro_rules! resource {
    ($t:ty, $kind:literal, $group:literal, $version:literal, $plural:literal, $scope:ty) => {
        impl kube::Resource for $t {
            type DynamicType = ();
            type Scope = $scope;

            fn kind(_: &()) -> Cow<'_, str> {
                $kind.into()
            }
            fn group(_: &()) -> Cow<'_, str> {
                $group.into()
            }
            fn version(_: &()) -> Cow<'_, str> {
                $version.into()
            }
            fn plural(_: &()) -> Cow<'_, str> {
                $plural.into()
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

resource!(
    SlimNamespace,
    "Namespace",
    "",
    "v1",
    "namespaces",
    kube::core::ClusterResourceScope
);
resource!(
    SlimPod,
    "Pod",
    "",
    "v1",
    "pods",
    kube::core::NamespaceResourceScope
);
resource!(
    SlimPolicy,
    "NetworkPolicy",
    "networking.k8s.io",
    "v1",
    "networkpolicies",
    kube::core::NamespaceResourceScope
);

fn kind_of<T: kube::Resource<DynamicType = ()>>() -> Kind {
    match T::plural(&()).as_ref() {
        "namespaces" => Kind::Namespace,
        "pods" => Kind::Pod,
        _ => Kind::Policy,
    }
}

/// The record key of an object.
pub fn key_of<T: kube::Resource<DynamicType = ()>>(o: &T) -> Option<String> {
    let name = o.meta().name.as_deref()?;
    let ns = o.meta().namespace.as_deref().unwrap_or(name);
    Some(kind_of::<T>().key(ns, name))
}

fn encoded<T: Serialize>(key: Option<String>, record: &T) -> Option<(String, Vec<u8>)> {
    Some((key?, serde_json::to_vec(record).ok()?))
}

pub fn namespace_record(n: &SlimNamespace) -> Option<(String, Vec<u8>)> {
    let record = NamespaceRecord {
        name: n.metadata.name.clone()?,
        labels: n.metadata.labels.clone().unwrap_or_default(),
    };
    encoded(key_of(n), &record)
}

/// A pod's record; `None` for a pod that has ended (Succeeded, Failed):
/// its addresses may already be another pod's.
pub fn pod_record(p: &SlimPod) -> Option<(String, Vec<u8>)> {
    if matches!(p.status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let record = PodRecord {
        namespace: p.metadata.namespace.clone()?,
        name: p.metadata.name.clone()?,
        node: p.spec.node_name.clone().unwrap_or_default(),
        labels: p.metadata.labels.clone().unwrap_or_default(),
        ips: p
            .status
            .pod_ips
            .iter()
            .filter_map(|i| i.ip.parse().ok())
            .collect(),
        ports: p
            .spec
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .filter_map(|port| {
                Some(PortRecord {
                    name: port.name.clone()?,
                    port: u16::try_from(port.container_port).ok()?,
                    protocol: match port.protocol.as_deref() {
                        Some("UDP") => Protocol::UDP,
                        Some("SCTP") => Protocol::SCTP,
                        _ => Protocol::TCP,
                    },
                })
            })
            .collect(),
    };
    encoded(key_of(p), &record)
}

pub fn policy_record(p: &SlimPolicy) -> Option<(String, Vec<u8>)> {
    let doc = json!({
        "kind": "NetworkPolicy",
        "metadata": {"name": p.metadata.name, "namespace": p.metadata.namespace},
        "spec": p.spec,
    });
    encoded(key_of(p), &doc)
}

/// A Namespace with a record's labels.
pub fn namespace_object(r: &NamespaceRecord) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(r.name.clone()),
            labels: Some(r.labels.clone()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A Pod as a record describes it (its addresses are its status's: see
/// [`pod_status`]).
pub fn pod_object(r: &PodRecord) -> Pod {
    let ports: Vec<ContainerPort> = r
        .ports
        .iter()
        .map(|p| ContainerPort {
            name: Some(p.name.clone()),
            container_port: i32::from(p.port),
            protocol: Some(format!("{:?}", p.protocol)),
            ..Default::default()
        })
        .collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(r.name.clone()),
            namespace: Some(r.namespace.clone()),
            labels: Some(r.labels.clone()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: (!r.node.is_empty()).then(|| r.node.clone()),
            containers: vec![Container {
                name: "main".into(),
                image: Some("registry.k8s.io/pause:3.9".into()),
                ports: (!ports.is_empty()).then_some(ports),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The status kubelet reports for a record's pod: running, its addresses.
pub fn pod_status(r: &PodRecord) -> Value {
    let ips: Vec<Value> = r
        .ips
        .iter()
        .map(|ip| json!({"ip": ip.to_string()}))
        .collect();
    json!({
        "phase": "Running",
        "podIP": r.ips.first().map(ToString::to_string),
        "podIPs": ips,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_and_its_record_round_trip_through_the_object() {
        let record = PodRecord {
            namespace: "x".into(),
            name: "a".into(),
            node: "node1".into(),
            labels: [("pod".to_owned(), "a".to_owned())].into(),
            ips: vec!["10.244.1.2".parse().unwrap(), "fd00::2".parse().unwrap()],
            ports: vec![PortRecord {
                name: "serve-80-udp".into(),
                port: 80,
                protocol: Protocol::UDP,
            }],
        };
        let mut object = serde_json::to_value(pod_object(&record)).unwrap();
        object["status"] = pod_status(&record);
        // As the API sends it, with fields podnet never keeps.
        object["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}}]);
        let slim: SlimPod = serde_json::from_value(object).unwrap();
        let (key, bytes) = pod_record(&slim).unwrap();
        assert_eq!(key, "pods/x/a");
        assert_eq!(serde_json::from_slice::<PodRecord>(&bytes).unwrap(), record);
        let mut ended = slim.clone();
        ended.status.phase = Some("Succeeded".into());
        assert!(
            pod_record(&ended).is_none(),
            "an ended pod's addresses are not its own"
        );
    }

    #[test]
    fn namespaces_and_policies_become_records() {
        let ns: SlimNamespace = serde_json::from_value(json!({
            "metadata": {"name": "y", "labels": {"kubernetes.io/metadata.name": "y"}}
        }))
        .unwrap();
        let (key, bytes) = namespace_record(&ns).unwrap();
        assert_eq!(key, "namespaces/y");
        assert_eq!(
            serde_json::from_slice::<NamespaceRecord>(&bytes)
                .unwrap()
                .labels["kubernetes.io/metadata.name"],
            "y"
        );
        let np: SlimPolicy = serde_json::from_value(json!({
            "metadata": {"name": "deny", "namespace": "y", "resourceVersion": "9"},
            "spec": {"podSelector": {}}
        }))
        .unwrap();
        let (key, bytes) = policy_record(&np).unwrap();
        assert_eq!(key, "policies/y/deny");
        let parsed =
            podnet_core::policy::NetworkPolicy::parse_all(std::str::from_utf8(&bytes).unwrap())
                .unwrap();
        assert_eq!(parsed[0].name, "deny");
    }
}
