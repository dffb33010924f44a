//! The `networking.k8s.io/v1` NetworkPolicy as users write it (YAML or
//! JSON, one or many documents), validated as the API server validates it
//! and defaulted as it defaults it, into a [`Policy`]: per direction,
//! either not isolating or its list of rules.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::selector::LabelSelector;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicy {
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
    /// Absent: `default`, as kubectl applies it.
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

fn default_namespace() -> String {
    "default".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub pod_selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_types: Option<Vec<PolicyType>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<IngressRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<EgressRule>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyType {
    Ingress,
    Egress,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<Peer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<Port>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<Peer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<Port>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Peer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpBlock {
    pub cidr: IpNet,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    /// Absent: TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u16>,
}

/// A port number, or the name of a container port of the destination pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortValue {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    TCP,
    UDP,
    SCTP,
}

/// A policy refused, naming it and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("NetworkPolicy {0}")]
pub struct PolicyError(pub String);

/// A policy as it is enforced: what it selects, and per direction `None`
/// (not isolating) or the rules that allow (none: nothing is allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    pub selector: LabelSelector,
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
}

/// One rule: the peers (empty: every peer) and ports (empty: every port
/// and protocol) it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub peers: Vec<Peer>,
    pub ports: Vec<Port>,
}

impl NetworkPolicy {
    /// Every document of `text` (YAML or JSON) that is a NetworkPolicy;
    /// any other kind, or a policy the API server would refuse, is an
    /// error naming it.
    pub fn parse_all(text: &str) -> Result<Vec<Policy>, PolicyError> {
        Ok(Self::documents(text)?.into_iter().map(|(p, _)| p).collect())
    }

    /// Each policy of `text` with its document as JSON: what a store keeps.
    pub fn documents(text: &str) -> Result<Vec<(Policy, serde_json::Value)>, PolicyError> {
        let mut out = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(text) {
            let value = serde_json::Value::deserialize(doc)
                .map_err(|e| PolicyError(format!("document: {e}")))?;
            if value.is_null() {
                continue;
            }
            if value["kind"] != "NetworkPolicy" {
                return Err(PolicyError(format!(
                    "document of kind {}: only NetworkPolicy is taken",
                    value["kind"]
                )));
            }
            let policy: NetworkPolicy = serde_path_to_error::deserialize(&value)
                .map_err(|e| PolicyError(format!("{}: {}", e.path(), e.inner())))?;
            out.push((policy.validate()?, value));
        }
        Ok(out)
    }

    /// Validated and defaulted as the API server does.
    pub fn validate(self) -> Result<Policy, PolicyError> {
        let id = format!("{}/{}", self.metadata.namespace, self.metadata.name);
        let fail = |what: String| PolicyError(format!("{id}: {what}"));
        let spec = self.spec;
        spec.pod_selector
            .validate()
            .map_err(|e| fail(format!("spec.podSelector: {e}")))?;
        let ingress: Vec<Rule> = spec
            .ingress
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| {
                rule(
                    r.from.as_deref(),
                    r.ports.as_deref(),
                    &format!("spec.ingress[{i}]"),
                )
            })
            .collect::<Result<_, String>>()
            .map_err(fail)?;
        let egress: Vec<Rule> = spec
            .egress
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| {
                rule(
                    r.to.as_deref(),
                    r.ports.as_deref(),
                    &format!("spec.egress[{i}]"),
                )
            })
            .collect::<Result<_, String>>()
            .map_err(fail)?;
        // Omitted policyTypes: Ingress always, Egress only when there are
        // egress rules (so `egress: []` is Ingress only).
        let types = spec.policy_types.unwrap_or_else(|| {
            let mut t = vec![PolicyType::Ingress];
            if !egress.is_empty() {
                t.push(PolicyType::Egress);
            }
            t
        });
        Ok(Policy {
            namespace: self.metadata.namespace,
            name: self.metadata.name,
            selector: spec.pod_selector,
            ingress: types.contains(&PolicyType::Ingress).then_some(ingress),
            egress: types.contains(&PolicyType::Egress).then_some(egress),
        })
    }
}

fn rule(peers: Option<&[Peer]>, ports: Option<&[Port]>, at: &str) -> Result<Rule, String> {
    let peers = peers.unwrap_or_default();
    for (i, p) in peers.iter().enumerate() {
        let at = format!("{at}.peers[{i}]");
        let selectors = p.pod_selector.is_some() || p.namespace_selector.is_some();
        match (&p.ip_block, selectors) {
            (None, false) => return Err(format!("{at}: names no peer")),
            (Some(_), true) => return Err(format!("{at}: ipBlock goes alone, without selectors")),
            (Some(b), false) => {
                if let Some(e) = b
                    .except
                    .iter()
                    .find(|e| !b.cidr.contains(*e) || **e == b.cidr)
                {
                    return Err(format!(
                        "{at}.ipBlock.except {e} is not inside cidr {}",
                        b.cidr
                    ));
                }
            }
            (None, true) => {
                for s in [&p.pod_selector, &p.namespace_selector]
                    .into_iter()
                    .flatten()
                {
                    s.validate().map_err(|e| format!("{at}: {e}"))?;
                }
            }
        }
    }
    let ports = ports.unwrap_or_default();
    for (i, p) in ports.iter().enumerate() {
        let at = format!("{at}.ports[{i}]");
        match (&p.port, p.end_port) {
            (Some(PortValue::Number(0)), _) => return Err(format!("{at}.port 0 is not a port")),
            (Some(PortValue::Name(n)), _) if n.is_empty() || n.len() > 15 => {
                return Err(format!(
                    "{at}.port {n:?} is not a port name (1-15 characters)"
                ));
            }
            (Some(PortValue::Number(start)), Some(end)) if end < *start => {
                return Err(format!("{at}.endPort {end} is below port {start}"));
            }
            (Some(PortValue::Name(_)) | None, Some(_)) => {
                return Err(format!("{at}.endPort needs a numeric port"));
            }
            _ => {}
        }
    }
    Ok(Rule {
        peers: peers.to_vec(),
        ports: ports.to_vec(),
    })
}
