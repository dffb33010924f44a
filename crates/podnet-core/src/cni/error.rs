//! The spec's error codes and the error JSON a plugin prints on failure.

use serde::Serialize;

/// Well-known error codes from the CNI spec, plus podnet's own (>= 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnv = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    NotAvailable = 50,
    /// podnet: the address pool of a range set has no free address.
    PoolExhausted = 100,
    /// podnet: a kernel (netlink, sysctl, nftables) operation failed.
    Kernel = 101,
    /// podnet: the pod's attachment does not match `prevResult` (CHECK).
    CheckFailed = 102,
}

impl Code {
    pub fn as_u32(self) -> u32 {
        self as u32
    }
}

/// A failure as the runtime sees it: a code, a message and optional details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(Code::InvalidConfig, msg)
    }

    pub fn env(msg: impl Into<String>) -> Self {
        Self::new(Code::InvalidEnv, msg)
    }

    /// The spec's error JSON, stamped with the version the runtime asked for.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        let wire = Wire {
            cni_version,
            code: self.code.as_u32(),
            msg: &self.msg,
            details: &self.details,
        };
        // Serialising a struct of strings and an integer cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_spec_fields() {
        let e = CniError::config("bad subnet \"x\"").with_details("ipam.subnet");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.0.0")).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["code"], 7);
        assert_eq!(v["msg"], "bad subnet \"x\"");
        assert_eq!(v["details"], "ipam.subnet");
    }

    #[test]
    fn empty_details_are_omitted() {
        let v: serde_json::Value =
            serde_json::from_str(&CniError::env("x").to_json("0.4.0")).unwrap();
        assert!(v.get("details").is_none());
    }
}
