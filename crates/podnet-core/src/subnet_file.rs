//! `subnet.json`: what the node agent tells the plugin about this node.
//!
//! Versioned so that an old plugin refuses a file it does not understand
//! instead of misreading it.

use serde::{Deserialize, Serialize};

use crate::ipam::RangeConf;

pub const SUBNET_FILE_VERSION: u32 = 1;
pub const DEFAULT_SUBNET_FILE: &str = "/run/podnet/subnet.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetFile {
    pub version: u32,
    /// The cluster CIDRs, one per family.
    #[serde(default)]
    pub cluster_cidrs: Vec<String>,
    /// This node's pod subnets with their gateways, one per family.
    #[serde(default)]
    pub node_subnets: Vec<RangeConf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

impl SubnetFile {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let file: SubnetFile = serde_json::from_str(raw).map_err(|e| e.to_string())?;
        if file.version != SUBNET_FILE_VERSION {
            return Err(format!(
                "version {} is not supported (expected {SUBNET_FILE_VERSION})",
                file.version
            ));
        }
        Ok(file)
    }

    /// The node subnets as IPAM range sets: one set per family.
    pub fn range_sets(&self) -> Vec<Vec<RangeConf>> {
        self.node_subnets.iter().map(|r| vec![r.clone()]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_unknown_versions() {
        let f = SubnetFile::parse(
            r#"{"version":1,"clusterCidrs":["10.244.0.0/16"],"nodeSubnets":[{"subnet":"10.244.1.0/24"}],"mtu":1450}"#,
        )
        .unwrap();
        assert_eq!(f.mtu, Some(1450));
        assert_eq!(f.range_sets()[0][0].subnet, "10.244.1.0/24");
        assert!(
            SubnetFile::parse(r#"{"version":2}"#)
                .unwrap_err()
                .contains("version 2")
        );
    }
}
