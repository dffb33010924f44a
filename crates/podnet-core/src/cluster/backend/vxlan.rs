//! vxlan: a peer's pod subnets are routed onlink through this node's
//! vxlan device, whose permanent neighbour and FDB entries map the peer
//! subnet's address to the peer's VTEP MAC and that MAC to the peer's
//! underlay address (flannel's scheme). With `DirectRouting`, peers on
//! this node's own segment are routed as host-gw would.
//!
//! Its lease data, as flannel writes it: `{"VNI":1,"VtepMAC":
//! "aa:bb:cc:dd:ee:ff"}`. Only this backend reads it; the lease and the
//! stores carry it as opaque JSON.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Decide, Settings};
use crate::cluster::desired::{Count, Datapath, Me, PeerRoute, family_index};
use crate::cluster::lease::LeaseAttrs;
use crate::cluster::netconf::NetConfError;
use crate::names::{format_mac, parse_mac, vtep_mac};

pub const TYPE: &str = "vxlan";

/// Encapsulation overhead per underlay family (outer IP + UDP + VXLAN +
/// inner Ethernet).
pub const OVERHEAD_V4: u32 = 50;
pub const OVERHEAD_V6: u32 = 70;

/// The vxlan backend's settings, flannel's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Vxlan {
    #[serde(rename = "VNI")]
    pub vni: u32,
    pub port: u16,
    pub direct_routing: bool,
}

impl Default for Vxlan {
    fn default() -> Self {
        Vxlan {
            vni: 1,
            port: 8472,
            direct_routing: false,
        }
    }
}

/// A permanent neighbour entry on a vxlan device: the peer subnet's
/// address resolves to the peer's VTEP MAC.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Neighbour {
    pub ip: IpAddr,
    pub mac: String,
}

/// A permanent FDB entry on a vxlan device: the VTEP MAC lives at the
/// peer's underlay address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fdb {
    pub mac: String,
    pub dst: IpAddr,
}

/// The entries of the vxlan devices, by family index: IPv4
/// (`podnet.vxlan`) and IPv6 (`podnet.vxlan6`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entries {
    pub neighbours: [BTreeSet<Neighbour>; 2],
    pub fdb: [BTreeSet<Fdb>; 2],
}

impl Count for Entries {
    fn count(&self) -> usize {
        let n: usize = self.neighbours.iter().map(BTreeSet::len).sum();
        n + self.fdb.iter().map(BTreeSet::len).sum::<usize>()
    }
}

impl Settings for Vxlan {
    const TYPE: &'static str = TYPE;

    fn validate(self) -> Result<Vxlan, NetConfError> {
        if self.vni == 0 || self.vni >= 1 << 24 {
            return Err(NetConfError(format!(
                "Backend.VNI {} is outside 1..16777215",
                self.vni
            )));
        }
        Ok(self)
    }
}

impl Decide for Vxlan {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn settings(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Each pod family crosses the underlay of its own family.
    fn overhead(&self, v4_pods: bool) -> u32 {
        if v4_pods { OVERHEAD_V4 } else { OVERHEAD_V6 }
    }

    fn lease_data(&self, _: bool, local: IpAddr, _: Option<&str>) -> Value {
        VxlanData {
            vni: self.vni,
            vtep_mac: format_mac(&vtep_mac(&local)),
        }
        .to_value()
    }

    fn unknown_data_fields(&self, data: &Value) -> Vec<String> {
        unknown_fields(data)
    }

    fn overlay_ports(&self) -> Vec<u16> {
        vec![self.port]
    }

    fn peer(
        &self,
        me: &Me<'_>,
        peer: &LeaseAttrs,
        subnet: IpNet,
        underlay: IpAddr,
        out: &mut Datapath,
    ) {
        if self.direct_routing && me.segments.iter().any(|s| s.contains(&underlay)) {
            out.routes.insert(PeerRoute::direct(subnet, underlay));
            return;
        }
        let v4 = subnet.addr().is_ipv4();
        let Some(VxlanData { vtep_mac: mac, .. }) = VxlanData::of(peer, v4) else {
            return;
        };
        let gateway = subnet.network();
        out.routes.insert(PeerRoute {
            dst: subnet,
            via: gateway,
            overlay: true,
        });
        let f = family_index(v4);
        out.edit_objects(|e: &mut Entries| {
            e.neighbours[f].insert(Neighbour {
                ip: gateway,
                mac: mac.clone(),
            });
            e.fdb[f].insert(Fdb { mac, dst: underlay });
        });
    }
}

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
        if attrs.backend_type != TYPE {
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
