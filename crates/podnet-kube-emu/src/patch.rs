//! The two patch types podnet and kubectl send for Nodes: JSON merge patch
//! (RFC 7386) and strategic merge patch, which differs in merging the
//! lists whose patch strategy upstream declares `merge`: conditions and
//! addresses by `type`, and `spec.podCIDRs` as a set of values. Every
//! other list (taints, images) is replaced, as upstream does and as in a
//! merge patch.

use serde_json::{Map, Value};

/// Lists merged by key in a strategic merge patch of a Node.
const MERGE_KEYS: &[(&[&str], &str)] = &[
    (&["status", "conditions"], "type"),
    (&["status", "addresses"], "type"),
];

/// Lists of values merged as sets in a strategic merge patch.
const MERGE_VALUES: &[&[&str]] = &[&["spec", "podCIDRs"]];

pub fn merge(target: &mut Value, patch: &Value) {
    apply(target, patch, &mut Vec::new(), false);
}

pub fn strategic(target: &mut Value, patch: &Value) {
    apply(target, patch, &mut Vec::new(), true);
}

fn apply(target: &mut Value, patch: &Value, path: &mut Vec<String>, strategic: bool) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(obj) = target else { return };
    for (k, v) in patch {
        if v.is_null() {
            obj.remove(k);
            continue;
        }
        path.push(k.clone());
        let key = strategic
            .then(|| merge_key(path))
            .flatten()
            .filter(|_| v.is_array());
        let values =
            strategic && v.is_array() && MERGE_VALUES.iter().any(|p| p.iter().eq(path.iter()));
        match key {
            Some(key) => merge_list(obj.entry(k.clone()).or_insert(Value::Null), v, key),
            None if values => merge_values(obj.entry(k.clone()).or_insert(Value::Null), v),
            None => apply(
                obj.entry(k.clone()).or_insert(Value::Null),
                v,
                path,
                strategic,
            ),
        }
        path.pop();
    }
}

fn merge_key(path: &[String]) -> Option<&'static str> {
    MERGE_KEYS
        .iter()
        .find(|(p, _)| p.iter().eq(path.iter()))
        .map(|(_, key)| *key)
}

/// Each value not yet in the list is appended.
fn merge_values(target: &mut Value, patch: &Value) {
    if !target.is_array() {
        *target = Value::Array(Vec::new());
    }
    let (Value::Array(items), Value::Array(new)) = (target, patch) else {
        return;
    };
    for n in new {
        if !items.contains(n) {
            items.push(n.clone());
        }
    }
}

/// Each patch item replaces the fields of the item with the same key, or
/// is appended.
fn merge_list(target: &mut Value, patch: &Value, key: &str) {
    if !target.is_array() {
        *target = Value::Array(Vec::new());
    }
    let (Value::Array(items), Value::Array(new)) = (target, patch) else {
        return;
    };
    for n in new {
        // `$patch: delete` removes the item with that key.
        if n.get("$patch").and_then(Value::as_str) == Some("delete") {
            items.retain(|i| i.get(key) != n.get(key));
            continue;
        }
        match items.iter_mut().find(|i| i.get(key) == n.get(key)) {
            Some(item) => merge(item, n),
            None => items.push(n.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_merge_patch_sets_removes_and_replaces_lists() {
        let mut node = json!({"metadata":{"annotations":{"a":"1","b":"2"}},
            "status":{"conditions":[{"type":"Ready","status":"True"}]}});
        merge(
            &mut node,
            &json!({"metadata":{"annotations":{"a":null,"c":"3"}},
                "status":{"conditions":[{"type":"NetworkUnavailable","status":"False"}]}}),
        );
        assert_eq!(node["metadata"]["annotations"], json!({"b":"2","c":"3"}));
        assert_eq!(node["status"]["conditions"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_strategic_patch_merges_conditions_by_type() {
        let mut node = json!({"status":{"conditions":[
            {"type":"Ready","status":"True"},
            {"type":"NetworkUnavailable","status":"True","reason":"NoRouteCreated"}]}});
        strategic(
            &mut node,
            &json!({"status":{"conditions":[
                {"type":"NetworkUnavailable","status":"False","reason":"PodnetIsUp"}]}}),
        );
        let c = &node["status"]["conditions"];
        assert_eq!(c.as_array().unwrap().len(), 2);
        assert_eq!(c[0]["status"], "True");
        assert_eq!(
            c[1],
            json!({"type":"NetworkUnavailable","status":"False","reason":"PodnetIsUp"})
        );
    }

    #[test]
    fn a_strategic_patch_replaces_taints_and_merges_pod_cidrs_as_a_set() {
        let mut node = json!({"spec":{
            "taints":[{"key":"a","effect":"NoSchedule"},{"key":"b","effect":"NoSchedule"}],
            "podCIDRs":["10.244.1.0/24"]}});
        strategic(
            &mut node,
            &json!({"spec":{"taints":[{"key":"a","effect":"NoExecute"}],
                "podCIDRs":["10.244.1.0/24","fd00::/64"]}}),
        );
        assert_eq!(
            node["spec"]["taints"],
            json!([{"key":"a","effect":"NoExecute"}]),
            "no merge key: replaced, as upstream"
        );
        assert_eq!(
            node["spec"]["podCIDRs"],
            json!(["10.244.1.0/24", "fd00::/64"])
        );
    }

    #[test]
    fn a_strategic_patch_deletes_an_item_by_its_key() {
        let mut node = json!({"status":{"conditions":[
            {"type":"Ready","status":"True"},
            {"type":"NetworkUnavailable","status":"False"}]}});
        strategic(
            &mut node,
            &json!({"status":{"conditions":[{"type":"NetworkUnavailable","$patch":"delete"}]}}),
        );
        assert_eq!(
            node["status"]["conditions"],
            json!([{"type":"Ready","status":"True"}])
        );
    }
}
