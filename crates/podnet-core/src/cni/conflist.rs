//! The network config list a runtime loads (a `.conflist`): what makes
//! one loadable, and podnet's default. Shared by `podnet install-cni` and
//! podnetd, which installs it once the node's network is up.

use serde_json::Value;

use super::version::CniVersion;

/// Sorts before the other CNI configs: runtimes use the first.
pub const CONFLIST_NAME: &str = "10-podnet.conflist";

/// Installed when no `--conflist` is given: podnet alone, its pool and MTU
/// from the subnet file. CNI 1.0.0 is the newest containerd 1.6 speaks.
pub const DEFAULT_CONFLIST: &str =
    r#"{"cniVersion":"1.0.0","name":"podnet","plugins":[{"type":"podnet"}]}"#;

/// A conflist the runtime will load: JSON with a name, a CNI version
/// podnet speaks, and plugins that each name their type.
pub fn check_conflist(raw: &[u8]) -> Result<(), String> {
    let v: Value = serde_json::from_slice(raw).map_err(|e| format!("not JSON: {e}"))?;
    if !v.get("name").is_some_and(Value::is_string) {
        return Err("no \"name\"".into());
    }
    let version = v.get("cniVersion").and_then(Value::as_str).unwrap_or("");
    if !CniVersion::ALL
        .iter()
        .any(|known| known.as_str() == version)
    {
        return Err(format!("cniVersion {version:?} is not one podnet speaks"));
    }
    let plugins = v
        .get("plugins")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or("no \"plugins\" list")?;
    if let Some(i) = plugins
        .iter()
        .position(|p| !p.get("type").is_some_and(Value::is_string))
    {
        return Err(format!("plugins[{i}] has no \"type\""));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_conflist_sorts_first_and_is_valid() {
        check_conflist(DEFAULT_CONFLIST.as_bytes()).unwrap();
        assert!(CONFLIST_NAME < "87-podman-bridge.conflist");
        assert!(CONFLIST_NAME < "99-loopback.conf");
    }

    #[test]
    fn a_conflist_the_runtime_would_refuse_is_refused() {
        for (bad, why) in [
            ("{", "not JSON"),
            (
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"podnet"}]}"#,
                "name",
            ),
            (
                r#"{"name":"n","cniVersion":"9.9.9","plugins":[{"type":"podnet"}]}"#,
                "9.9.9",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[]}"#,
                "plugins",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"podnet"},{}]}"#,
                "plugins[1]",
            ),
        ] {
            let err = check_conflist(bad.as_bytes()).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
