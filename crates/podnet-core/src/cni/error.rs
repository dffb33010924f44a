//! The spec's error codes and the error JSON a plugin prints on failure.

use serde::Serialize;

use crate::ipam::IpamError;
use crate::ipam::pool::PoolError;

/// Well-known error codes from the CNI spec, podnet's own (>= 100), and
/// any other code a delegated plugin answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    IncompatibleVersion,
    UnsupportedField,
    UnknownContainer,
    InvalidEnv,
    Io,
    Decode,
    InvalidConfig,
    TryAgainLater,
    NotAvailable,
    /// podnet: the address pool of a range set has no free address.
    PoolExhausted,
    /// podnet: a kernel (netlink, sysctl, nftables) operation failed.
    Kernel,
    /// podnet: the pod's attachment does not match `prevResult` (CHECK).
    CheckFailed,
    /// A code passed through from a delegated plugin.
    Other(u32),
}

const KNOWN: [(Code, u32); 12] = [
    (Code::IncompatibleVersion, 1),
    (Code::UnsupportedField, 2),
    (Code::UnknownContainer, 3),
    (Code::InvalidEnv, 4),
    (Code::Io, 5),
    (Code::Decode, 6),
    (Code::InvalidConfig, 7),
    (Code::TryAgainLater, 11),
    (Code::NotAvailable, 50),
    (Code::PoolExhausted, 100),
    (Code::Kernel, 101),
    (Code::CheckFailed, 102),
];

impl Code {
    pub fn as_u32(self) -> u32 {
        match self {
            Code::Other(n) => n,
            known => KNOWN
                .iter()
                .find(|(c, _)| *c == known)
                .map_or(999, |(_, n)| *n),
        }
    }

    pub fn from_u32(n: u32) -> Code {
        KNOWN
            .iter()
            .find(|(_, k)| *k == n)
            .map_or(Code::Other(n), |(c, _)| *c)
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

impl From<IpamError> for CniError {
    fn from(e: IpamError) -> Self {
        let code = match e {
            IpamError::Exhausted(_) => Code::PoolExhausted,
            _ => Code::InvalidConfig,
        };
        CniError::new(code, e.to_string())
    }
}

impl From<PoolError> for CniError {
    fn from(e: PoolError) -> Self {
        CniError::config(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipam_errors_get_their_spec_codes() {
        let full = IpamError::Exhausted("10.0.0.0/29".into());
        assert_eq!(CniError::from(full).code, Code::PoolExhausted);
        let bad = PoolError("ipam.subnet \"x\" is not a CIDR".into());
        assert_eq!(CniError::from(bad).code, Code::InvalidConfig);
    }

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
    fn codes_round_trip() {
        for (code, n) in KNOWN {
            assert_eq!(code.as_u32(), n);
            assert_eq!(Code::from_u32(n), code);
        }
        assert_eq!(Code::from_u32(999), Code::Other(999));
        assert_eq!(Code::Other(999).as_u32(), 999);
    }

    #[test]
    fn empty_details_are_omitted() {
        let v: serde_json::Value =
            serde_json::from_str(&CniError::env("x").to_json("0.4.0")).unwrap();
        assert!(v.get("details").is_none());
    }
}
