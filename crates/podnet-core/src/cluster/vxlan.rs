//! The vxlan backend's lease data, as flannel writes it: `{"VNI":1,
//! "VtepMAC":"aa:bb:cc:dd:ee:ff"}`. Only this backend reads it; the lease
//! and the stores carry it as opaque JSON.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lease::LeaseAttrs;
use crate::names::parse_mac;

pub const BACKEND_TYPE: &str = "vxlan";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VxlanData {
    #[serde(rename = "VNI")]
    pub vni: u32,
    /// The MAC of the node's vxlan device for this family.
    #[serde(rename = "VtepMAC")]
    pub vtep_mac: String,
}

/// The fields this podnet reads; a newer one may write more.
const FIELDS: [&str; 2] = ["VNI", "VtepMAC"];

/// The backend data's fields this podnet does not know, for a warning.
pub fn unknown_fields(data: &Value) -> Vec<String> {
    data.as_object()
        .map(|o| {
            o.keys()
                .filter(|k| !FIELDS.contains(&k.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

impl VxlanData {
    pub fn to_value(&self) -> Value {
        serde_json::json!({ "VNI": self.vni, "VtepMAC": self.vtep_mac })
    }

    /// A peer's data for one family; `None` unless the peer runs vxlan and
    /// its data parses with a valid MAC (unknown fields are ignored).
    pub fn of(attrs: &LeaseAttrs, v4: bool) -> Option<VxlanData> {
        if attrs.backend_type != BACKEND_TYPE {
            return None;
        }
        // Read in place: this runs for every peer on every reconcile.
        VxlanData::deserialize(attrs.backend_data(v4))
            .ok()
            .filter(|d| parse_mac(&d.vtep_mac).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flannel_vxlan_data_round_trips_and_tolerates_new_fields() {
        let attrs: LeaseAttrs = serde_json::from_str(
            r#"{"PublicIP":"10.0.0.2","BackendType":"vxlan",
                "BackendData":{"VNI":1,"VtepMAC":"12:34:56:78:9a:bc","Later":1}}"#,
        )
        .unwrap();
        let d = VxlanData::of(&attrs, true).unwrap();
        assert_eq!(d.vtep_mac, "12:34:56:78:9a:bc");
        assert_eq!(VxlanData::of(&attrs, false), None);
        let host_gw = LeaseAttrs {
            backend_type: "host-gw".into(),
            ..attrs.clone()
        };
        assert_eq!(VxlanData::of(&host_gw, true), None);
        let mut bad = attrs.clone();
        bad.backend_data["VtepMAC"] = "not a mac".into();
        assert_eq!(VxlanData::of(&bad, true), None);
        assert_eq!(d.to_value()["VNI"], 1);
        assert_eq!(unknown_fields(&attrs.backend_data), ["Later"]);
        assert!(unknown_fields(&d.to_value()).is_empty());
    }
}
