//! Authorization as the API server's RBAC does it, for the one role the
//! emulator enforces: the ClusterRole in `deploy/rbac.yaml`, so that the
//! role podnet ships and the 403s its tests see cannot drift apart.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use serde::Deserialize;

/// Who a request is from, by its bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum User {
    /// The lab and the tests, acting as kubelet and the controller manager.
    Admin,
    /// podnet's service account, held to the role.
    Podnet,
}

impl User {
    pub fn name(&self) -> &'static str {
        match self {
            User::Admin => "kubernetes-admin",
            User::Podnet => "system:serviceaccount:podnet-system:podnet",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Role {
    rules: Vec<PolicyRule>,
}

impl Role {
    /// The first ClusterRole in a multi-document YAML file.
    pub fn parse(yaml: &str) -> Result<Role, String> {
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let value = serde_json::Value::deserialize(doc).map_err(|e| e.to_string())?;
            if value["kind"] == "ClusterRole" {
                let role: ClusterRole = serde_json::from_value(value).map_err(|e| e.to_string())?;
                return Ok(Role {
                    rules: role.rules.unwrap_or_default(),
                });
            }
        }
        Err("no ClusterRole in the file".into())
    }

    /// Whether the role lets `verb` on `resource` (e.g. `nodes/status`)
    /// in API group `group` (`""`: core).
    pub fn allows(&self, verb: &str, group: &str, resource: &str) -> bool {
        let has = |list: &Option<Vec<String>>, want: &str| {
            list.as_ref()
                .is_some_and(|l| l.iter().any(|x| x == want || x == "*"))
        };
        self.rules.iter().any(|r| {
            has(&r.api_groups, group)
                && has(&r.resources, resource)
                && r.verbs.iter().any(|v| v == verb || v == "*")
        })
    }
}

pub fn allowed(user: &User, role: &Role, verb: &str, group: &str, resource: &str) -> bool {
    *user == User::Admin || role.allows(verb, group, resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_role_grants_exactly_what_podnet_needs() {
        let role = Role::parse(include_str!("../../../deploy/rbac.yaml")).unwrap();
        for verb in ["get", "list", "watch"] {
            for (group, res) in [
                ("", "nodes"),
                ("", "pods"),
                ("", "namespaces"),
                ("networking.k8s.io", "networkpolicies"),
            ] {
                assert!(role.allows(verb, group, res), "{verb} {res}");
            }
        }
        assert!(role.allows("patch", "", "nodes/status"));
        for (verb, group, res) in [
            ("patch", "", "nodes"),
            ("update", "", "nodes"),
            ("update", "", "nodes/status"),
            ("delete", "", "nodes"),
            ("create", "", "nodes"),
            ("create", "", "pods"),
            ("patch", "", "pods/status"),
            ("update", "", "namespaces"),
            ("delete", "networking.k8s.io", "networkpolicies"),
            ("list", "", "networkpolicies"),
            ("list", "", "secrets"),
        ] {
            assert!(
                !role.allows(verb, group, res),
                "{verb} {res} must not be granted"
            );
        }
    }
}
