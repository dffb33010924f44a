//! The `CNI_*` environment, validated per command.

use super::args::CniArgs;
use super::error::CniError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    fn parse(raw: &str) -> Result<Self, CniError> {
        Ok(match raw {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            other => {
                return Err(CniError::env(format!(
                    "CNI_COMMAND \"{other}\" is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"
                )));
            }
        })
    }

    /// The variables the spec requires for this command.
    fn required(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => {
                &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
            }
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Command::Status | Command::Gc => &["CNI_PATH"],
            Command::Version => &[],
        }
    }
}

/// The validated environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    /// Empty when the runtime has no namespace any more (a second DEL).
    pub netns: String,
    pub ifname: String,
    pub path: Vec<String>,
    pub args: CniArgs,
}

impl Env {
    /// Reads and validates the environment through `get`, which returns a
    /// variable's value if it is set.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let command = Command::parse(
            &get("CNI_COMMAND").ok_or_else(|| CniError::env("CNI_COMMAND is not set"))?,
        )?;
        for var in command.required() {
            // CNI_NETNS may be empty on DEL only, and DEL does not require it.
            if get(var).is_none_or(|v| v.is_empty()) {
                return Err(CniError::env(format!(
                    "{var} is required for {command:?} but is not set"
                )));
            }
        }
        let value = |k: &str| get(k).unwrap_or_default();
        let ifname = value("CNI_IFNAME");
        if command.required().contains(&"CNI_IFNAME") {
            validate_ifname(&ifname)?;
        }
        let container_id = value("CNI_CONTAINERID");
        if command.required().contains(&"CNI_CONTAINERID") {
            validate_container_id(&container_id)?;
        }
        Ok(Env {
            command,
            container_id,
            netns: value("CNI_NETNS"),
            ifname,
            path: value("CNI_PATH")
                .split(':')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            args: CniArgs::parse(&value("CNI_ARGS"))?,
        })
    }
}

/// The spec's container ID: a letter or digit, then letters, digits, `_`,
/// `.` and `-`. So it can never be a path (`/`, `..`) or hold a NUL.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let ok = id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(CniError::env(format!(
            "CNI_CONTAINERID {id:?} is invalid: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )))
    }
}

/// Linux interface names: 1..=15 bytes, no `/`, no whitespace, not `.`/`..`.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let bad = |why: &str| {
        Err(CniError::env(format!(
            "CNI_IFNAME \"{name}\" is invalid: {why}"
        )))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 15 {
        return bad("it is longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("it is a path component");
    }
    if name.contains('/') {
        return bad("it contains '/'");
    }
    if name.chars().any(|c| c.is_whitespace() || c == ':') {
        return bad("it contains whitespace or ':'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::Code;
    use std::collections::HashMap;

    #[test]
    fn container_ids_that_could_be_paths_are_refused() {
        for bad in ["../etc", "a/b", "..", ".hidden", "a\0b", "-x", "a b"] {
            let e = env(&[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", bad),
                ("CNI_IFNAME", "eth0"),
            ])
            .unwrap_err();
            assert_eq!(e.code, Code::InvalidEnv, "{bad:?}");
        }
        for good in ["c1", "0123abcdef", "my_pod.v1-2"] {
            assert!(validate_container_id(good).is_ok(), "{good}");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| map.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    #[test]
    fn full_add_env_parses() {
        let e = env(ADD).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.path, vec!["/opt/cni/bin", "/usr/lib/cni"]);
    }

    #[test]
    fn each_missing_add_variable_is_code_4_and_named() {
        for (missing, _) in &ADD[1..] {
            let pairs: Vec<_> = ADD.iter().copied().filter(|(k, _)| k != missing).collect();
            let e = env(&pairs).unwrap_err();
            assert_eq!(e.code, Code::InvalidEnv);
            assert!(e.msg.contains(missing), "{}", e.msg);
        }
    }

    #[test]
    fn del_needs_no_netns_or_path() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", ""),
        ])
        .unwrap();
        assert_eq!(e.netns, "");
    }

    #[test]
    fn bad_commands() {
        assert_eq!(env(&[]).unwrap_err().code, Code::InvalidEnv);
        let e = env(&[("CNI_COMMAND", "FROB")]).unwrap_err();
        assert!(e.msg.contains("FROB"));
    }

    #[test]
    fn invalid_ifnames() {
        for name in ["", "a23456789012345x", "a/b", ".", "..", "et h0", "eth\t0"] {
            assert!(validate_ifname(name).is_err(), "{name:?}");
        }
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("a23456789012345").is_ok());
    }
}
