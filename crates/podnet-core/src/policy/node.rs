//! What passes on one node between podnetd's policy and its clients: the
//! plugin's ADD handing over a pod (one JSON line each way on a local
//! socket), and the state podnetd reports once a ruleset is in place.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where podnetd listens by default (under its `--run-dir`).
pub const DEFAULT_SOCKET: &str = "/run/podnet/policy.sock";
/// The applied state's file name in podnetd's `--run-dir`.
pub const STATE_FILE: &str = "policy.json";

/// A pod on this node, by name, with the addresses ADD gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodAddrs {
    pub namespace: String,
    pub name: String,
    pub ips: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Request {
    /// Place the pod in the policy sets; answered once they are written.
    Add(PodAddrs),
    /// Forget the pod's addresses.
    Del(PodAddrs),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    /// Done: the ruleset of this generation holds it.
    Placed { generation: u64 },
    /// Not done, and why; the runtime may retry.
    Refused { why: String },
}

/// The ruleset in place on this node, as podnetd reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The [`digest`] of the records it was compiled from.
    pub digest: String,
    /// Counts every ruleset written since podnetd started.
    pub generation: u64,
    pub rules: usize,
    pub elements: usize,
    /// Records left out, with why.
    pub corrupt: BTreeMap<String, String>,
}

/// A digest of records by key: equal records, equal digest, whichever
/// store revision they were read at.
pub fn digest(items: &BTreeMap<String, Vec<u8>>) -> String {
    let mut h = Sha256::new();
    for (key, value) in items {
        for part in [key.as_bytes(), value] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_is_one_json_object_each_way() {
        let req = Request::Add(PodAddrs {
            namespace: "x".into(),
            name: "a".into(),
            ips: vec!["10.244.1.2".parse().unwrap()],
        });
        let line = serde_json::to_string(&req).unwrap();
        assert_eq!(
            line,
            r#"{"add":{"namespace":"x","name":"a","ips":["10.244.1.2"]}}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), req);
        let reply = serde_json::to_string(&Reply::Placed { generation: 3 }).unwrap();
        assert_eq!(reply, r#"{"placed":{"generation":3}}"#);
    }

    #[test]
    fn the_digest_follows_content_only() {
        let a: BTreeMap<String, Vec<u8>> = [("pods/x/a".into(), b"1".to_vec())].into();
        let b: BTreeMap<String, Vec<u8>> = [("pods/x/a1".into(), Vec::new())].into();
        assert_eq!(digest(&a), digest(&a.clone()));
        assert_ne!(digest(&a), digest(&b), "key and value are framed apart");
        assert_ne!(digest(&a), digest(&BTreeMap::new()));
    }
}
