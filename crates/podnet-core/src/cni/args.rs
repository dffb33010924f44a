//! `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`.

use super::error::CniError;

/// The keys podnet understands. Any other key is an error unless
/// `IgnoreUnknown` is true, as in the reference plugins.
const KNOWN: [&str; 5] = [
    "IgnoreUnknown",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub ignore_unknown: bool,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub pod_infra_container_id: Option<String>,
    pub pod_uid: Option<String>,
}

impl CniArgs {
    pub fn parse(raw: &str) -> Result<Self, CniError> {
        let mut args = CniArgs::default();
        let mut unknown = Vec::new();
        for pair in raw.split(';').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                CniError::env(format!("CNI_ARGS: \"{pair}\" is not of the form KEY=VALUE"))
            })?;
            match key {
                "IgnoreUnknown" => args.ignore_unknown = parse_bool(value)?,
                "K8S_POD_NAMESPACE" => args.pod_namespace = Some(value.to_owned()),
                "K8S_POD_NAME" => args.pod_name = Some(value.to_owned()),
                "K8S_POD_INFRA_CONTAINER_ID" => {
                    args.pod_infra_container_id = Some(value.to_owned())
                }
                "K8S_POD_UID" => args.pod_uid = Some(value.to_owned()),
                other => unknown.push(other.to_owned()),
            }
        }
        if !args.ignore_unknown && !unknown.is_empty() {
            return Err(CniError::env(format!(
                "CNI_ARGS: unknown key(s) {} (known: {}; set IgnoreUnknown=1 to allow others)",
                unknown.join(", "),
                KNOWN.join(", ")
            )));
        }
        Ok(args)
    }
}

fn parse_bool(value: &str) -> Result<bool, CniError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(CniError::env(format!(
            "CNI_ARGS: IgnoreUnknown=\"{value}\" is not a boolean"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_args() {
        let a = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=u;X=y",
        )
        .unwrap();
        assert!(a.ignore_unknown);
        assert_eq!(a.pod_namespace.as_deref(), Some("default"));
        assert_eq!(a.pod_name.as_deref(), Some("web-0"));
        assert_eq!(a.pod_uid.as_deref(), Some("u"));
    }

    #[test]
    fn unknown_key_without_ignore_is_rejected_by_name() {
        let e = CniArgs::parse("FOO=bar").unwrap_err();
        assert_eq!(e.code, super::super::Code::InvalidEnv);
        assert!(e.msg.contains("FOO"));
    }

    #[test]
    fn empty_and_malformed() {
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
        assert!(
            CniArgs::parse("novalue")
                .unwrap_err()
                .msg
                .contains("novalue")
        );
        assert!(CniArgs::parse("IgnoreUnknown=maybe").is_err());
    }
}
