//! The result of ADD (and the `prevResult` of CHECK/DEL), in every version's
//! wire format.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::version::CniVersion;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Set only on the pod's interface: the netns path it lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    #[serde(default)]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<serde_json::Value>,
}

impl CniResult {
    /// The result as `version` spells it: before 1.0.0 each IP carries
    /// `"version"`, and only 1.1.0 knows an interface's `mtu`.
    pub fn to_json(&self, version: CniVersion) -> serde_json::Value {
        let mut out = self.clone();
        out.cni_version = version.as_str().to_owned();
        if version < CniVersion::V1_1_0 {
            out.interfaces.iter_mut().for_each(|i| i.mtu = None);
        }
        let mut value = serde_json::to_value(&out).unwrap_or_default();
        if version.ips_carry_version()
            && let Some(ips) = value.get_mut("ips").and_then(|v| v.as_array_mut())
        {
            for (ip, cfg) in ips.iter_mut().zip(&out.ips) {
                let family = if cfg.address.addr().is_ipv4() {
                    "4"
                } else {
                    "6"
                };
                if let Some(obj) = ip.as_object_mut() {
                    obj.insert("version".into(), family.into());
                }
            }
        }
        value
    }

    /// The index of the interface that lives in the pod (has `sandbox`).
    pub fn pod_interface(&self) -> Option<(usize, &Interface)> {
        self.interfaces
            .iter()
            .enumerate()
            .find(|(_, i)| i.sandbox.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            cni_version: String::new(),
            interfaces: vec![
                Interface {
                    name: "podnet0".into(),
                    mac: "02:00:00:00:00:01".into(),
                    mtu: Some(1500),
                    sandbox: None,
                },
                Interface {
                    name: "pn0123".into(),
                    mac: "02:00:00:00:00:02".into(),
                    mtu: Some(1500),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: "02:00:00:00:00:03".into(),
                    mtu: Some(1500),
                    sandbox: Some("/var/run/netns/x".into()),
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.244.1.2/24".parse().unwrap(),
                    gateway: Some("10.244.1.1".parse().unwrap()),
                    interface: Some(2),
                },
                IpConfig {
                    address: "fd00::2/64".parse().unwrap(),
                    gateway: Some("fd00::1".parse().unwrap()),
                    interface: Some(2),
                },
            ],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("10.244.1.1".parse().unwrap()),
            }],
            dns: None,
        }
    }

    #[test]
    fn old_versions_carry_ip_version() {
        for v in [CniVersion::V0_3_0, CniVersion::V0_3_1, CniVersion::V0_4_0] {
            let j = sample().to_json(v);
            assert_eq!(j["cniVersion"], v.as_str());
            assert_eq!(j["ips"][0]["version"], "4");
            assert_eq!(j["ips"][1]["version"], "6");
            assert!(j["interfaces"][0].get("mtu").is_none());
        }
    }

    #[test]
    fn v1_has_no_ip_version_and_only_1_1_has_mtu() {
        let j = sample().to_json(CniVersion::V1_0_0);
        assert!(j["ips"][0].get("version").is_none());
        assert!(j["interfaces"][2].get("mtu").is_none());
        let j = sample().to_json(CniVersion::V1_1_0);
        assert_eq!(j["interfaces"][2]["mtu"], 1500);
        assert_eq!(j["interfaces"][2]["sandbox"], "/var/run/netns/x");
        assert_eq!(j["ips"][0]["interface"], 2);
    }

    #[test]
    fn parses_any_version_back() {
        for v in CniVersion::ALL {
            let back: CniResult = serde_json::from_value(sample().to_json(v)).unwrap();
            assert_eq!(back.ips, sample().ips);
            assert_eq!(back.pod_interface().unwrap().0, 2);
        }
    }
}
