//! The network config list a runtime loads (a `.conflist`): what makes
//! one loadable, and podnet's default. Shared by `podnet install-cni` and
//! podnetd, which installs it once the node's network is up.

use serde_json::Value;

use super::version::CniVersion;

/// Sorts before the other CNI configs, `10-*` ones (containerd's and
/// flannel's) included: runtimes use the first.
pub const CONFLIST_NAME: &str = "05-podnet.conflist";

/// Names earlier releases gave the conflist: removed, if podnet's, when
/// this one is installed or uninstalled.
pub const FORMER_NAMES: [&str; 1] = ["10-podnet.conflist"];

/// Whether a config file is podnet's: one of its plugins is podnet.
pub fn is_podnets(raw: &[u8]) -> bool {
    serde_json::from_slice::<Value>(raw).is_ok_and(|v| {
        v.get("plugins")
            .and_then(Value::as_array)
            .is_some_and(|p| p.iter().any(|p| p["type"] == "podnet"))
    })
}

/// The conflist that stands in while podnet is removed from a node: the
/// same networks, each podnet plugin marked `uninstalling`, so that ADD
/// answers "try again later" and DEL still tears a pod down. (Removing
/// the conflist instead would leave the runtime no config to run DEL
/// with: containerd's StopPodSandbox then fails, and pods stick in
/// Terminating.) `None` if `raw` is not a conflist.
pub fn uninstalling(raw: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(raw).ok()?;
    for plugin in v.get_mut("plugins")?.as_array_mut()? {
        if plugin["type"] == "podnet" {
            plugin["uninstalling"] = Value::Bool(true);
        }
    }
    serde_json::to_vec(&v).ok()
}

/// The config files among `names` that a runtime would load before
/// `ours`: libcni reads `.conf`, `.conflist` and `.json` files and uses
/// the first in lexical order.
pub fn loaded_before<'a>(names: impl IntoIterator<Item = &'a str>, ours: &str) -> Vec<&'a str> {
    let mut ahead: Vec<&str> = names
        .into_iter()
        .filter(|n| {
            [".conf", ".conflist", ".json"]
                .iter()
                .any(|e| n.ends_with(e))
        })
        .filter(|n| *n < ours)
        .collect();
    ahead.sort();
    ahead
}

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
        assert!(CONFLIST_NAME < "10-containerd-net.conflist");
        assert!(CONFLIST_NAME < "10-flannel.conflist");
        assert!(is_podnets(DEFAULT_CONFLIST.as_bytes()));
    }

    #[test]
    fn configs_a_runtime_would_load_first_are_named() {
        let names = [
            "01-other.conflist",
            "02-old.conf",
            "03-x.json",
            "04-notes.txt",
            "05-podnet.conflist",
            "10-flannel.conflist",
        ];
        assert_eq!(
            loaded_before(names, CONFLIST_NAME),
            ["01-other.conflist", "02-old.conf", "03-x.json"]
        );
        assert!(loaded_before(["10-containerd-net.conflist"], CONFLIST_NAME).is_empty());
    }

    #[test]
    fn the_uninstalling_conflist_marks_only_podnet() {
        let raw = r#"{"cniVersion":"1.0.0","name":"podnet","plugins":[{"type":"podnet"},{"type":"portmap"}]}"#;
        let v: Value = serde_json::from_slice(&uninstalling(raw.as_bytes()).unwrap()).unwrap();
        assert_eq!(v["plugins"][0]["uninstalling"], true);
        assert!(v["plugins"][1].get("uninstalling").is_none());
        assert!(check_conflist(&serde_json::to_vec(&v).unwrap()).is_ok());
        assert!(uninstalling(b"{}").is_none());
    }

    #[test]
    fn only_a_conflist_with_the_podnet_plugin_is_podnets() {
        let flannel = r#"{"cniVersion":"1.0.0","name":"cbr0","plugins":[{"type":"flannel"}]}"#;
        assert!(!is_podnets(flannel.as_bytes()));
        assert!(!is_podnets(b"{"));
        let ours = r#"{"name":"x","plugins":[{"type":"podnet"},{"type":"portmap"}]}"#;
        assert!(is_podnets(ours.as_bytes()));
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
