//! The CNI spec versions podnet speaks, and what differs between them.

use std::fmt;
use std::str::FromStr;

use super::error::{CniError, Code};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl CniVersion {
    pub const ALL: [CniVersion; 5] = [
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Before 1.0.0, each entry of `ips` carried `"version": "4"|"6"`.
    pub fn ips_carry_version(self) -> bool {
        self < CniVersion::V1_0_0
    }

    /// The VERSION command's answer.
    pub fn version_info(self) -> String {
        let supported: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
        serde_json::json!({ "cniVersion": self.as_str(), "supportedVersions": supported })
            .to_string()
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CniVersion {
    type Err = CniError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                CniError::new(
                    Code::IncompatibleVersion,
                    format!("unsupported cniVersion \"{s}\""),
                )
                .with_details("podnet supports 0.3.0, 0.3.1, 0.4.0, 1.0.0 and 1.1.0")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_supported_versions() {
        for v in CniVersion::ALL {
            assert_eq!(v.as_str().parse::<CniVersion>().unwrap(), v);
        }
    }

    #[test]
    fn unsupported_version_is_code_1() {
        let e = "0.2.0".parse::<CniVersion>().unwrap_err();
        assert_eq!(e.code, Code::IncompatibleVersion);
        assert!(e.msg.contains("0.2.0"));
    }

    #[test]
    fn version_info_lists_all_five() {
        let v: serde_json::Value =
            serde_json::from_str(&CniVersion::V1_1_0.version_info()).unwrap();
        assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 5);
        assert_eq!(v["cniVersion"], "1.1.0");
    }
}
