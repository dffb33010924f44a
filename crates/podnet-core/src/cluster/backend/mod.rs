//! The datapath backends, decided purely. Each backend is one module here
//! (its net-conf settings, its lease data, the objects it wants per peer,
//! its MTU overhead and overlay port) and one in podnetd (its devices and
//! entries). Adding a backend: a module in each, a variant of [`Backend`]
//! and a line in [`REGISTRY`] and in [`Backend::decide`].

pub mod host_gw;
pub mod vxlan;

use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::desired::{Datapath, Me};
use super::lease::LeaseAttrs;
use super::netconf::NetConfError;

/// What a backend decides. Everything here is pure.
pub trait Decide {
    /// The `Backend.Type` it answers to, also its leases' `BackendType`.
    fn type_name(&self) -> &'static str;
    /// Bytes its encapsulation costs over an underlay of this family.
    fn overhead(&self, v4_underlay: bool) -> u32;
    /// This node's lease data for one family's underlay address.
    fn lease_data(&self, local: IpAddr) -> Value;
    /// The fields of a peer's lease data this podnet does not read.
    fn unknown_data_fields(&self, data: &Value) -> Vec<String>;
    /// The UDP port its overlay arrives on, if it has one: it skips
    /// connection tracking.
    fn overlay_port(&self) -> Option<u16>;
    /// The objects this node wants to reach one peer subnet, whose node
    /// sits at `underlay`; a peer whose data does not parse adds nothing.
    fn peer(
        &self,
        me: &Me<'_>,
        peer: &LeaseAttrs,
        subnet: IpNet,
        underlay: IpAddr,
        out: &mut Datapath,
    );
}

/// The backend a net-conf names, with its own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    HostGw(host_gw::HostGw),
    Vxlan(vxlan::Vxlan),
}

/// A backend's parser: its settings from `Backend`, naming the fields it
/// does not know.
type Parse = fn(&Value, &mut Vec<String>) -> Result<Backend, NetConfError>;

/// Every backend by `Backend.Type`.
const REGISTRY: &[(&str, Parse)] = &[
    (host_gw::TYPE, |v, u| Ok(Backend::HostGw(settings(v, u)?))),
    (vxlan::TYPE, |v, u| {
        Ok(Backend::Vxlan(vxlan::Vxlan::parse(settings(v, u)?)?))
    }),
];

/// flannel's default backend.
pub const DEFAULT_TYPE: &str = vxlan::TYPE;

/// Fields every backend has, read by the net-conf itself.
pub const COMMON_FIELDS: [&str; 2] = ["Type", "MTU"];

impl Backend {
    pub fn decide(&self) -> &dyn Decide {
        match self {
            Backend::HostGw(b) => b,
            Backend::Vxlan(b) => b,
        }
    }

    pub fn type_name(&self) -> &'static str {
        self.decide().type_name()
    }

    /// Parses `Backend` (absent: flannel's default), pushing the fields
    /// it does not know as `Backend.<name>`.
    pub fn parse(raw: Option<&Value>, unknown: &mut Vec<String>) -> Result<Self, NetConfError> {
        let empty = Value::Object(Default::default());
        let raw = raw.unwrap_or(&empty);
        let kind = match raw.get("Type") {
            None | Some(Value::Null) => DEFAULT_TYPE,
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(NetConfError(format!(
                    "Backend.Type {other} is not a string"
                )));
            }
        };
        let Some((_, parse)) = REGISTRY.iter().find(|(name, _)| *name == kind) else {
            let known: Vec<String> = REGISTRY.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            return Err(NetConfError(format!(
                "Backend.Type \"{kind}\" is not supported (use {})",
                known.join(" or ")
            )));
        };
        let mut own = Vec::new();
        let backend = parse(raw, &mut own)?;
        unknown.extend(
            own.into_iter()
                .filter(|f| !COMMON_FIELDS.contains(&f.as_str()))
                .map(|f| format!("Backend.{f}")),
        );
        Ok(backend)
    }
}

/// A backend's settings from the `Backend` object, naming fields its
/// struct does not have.
fn settings<T: DeserializeOwned>(
    raw: &Value,
    unknown: &mut Vec<String>,
) -> Result<T, NetConfError> {
    serde_ignored::deserialize(raw, |path| unknown.push(path.to_string().replace(".?", "")))
        .map_err(|e| NetConfError(format!("Backend: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<(Backend, Vec<String>), NetConfError> {
        let value: Value = serde_json::from_str(json).unwrap();
        let mut unknown = Vec::new();
        Backend::parse(Some(&value), &mut unknown).map(|b| (b, unknown))
    }

    #[test]
    fn every_registered_backend_parses_under_its_own_name() {
        for (name, _) in REGISTRY {
            let (backend, unknown) = parse(&format!(r#"{{"Type":"{name}"}}"#)).unwrap();
            assert_eq!(backend.type_name(), *name);
            assert!(unknown.is_empty(), "{unknown:?}");
        }
        let mut unknown = Vec::new();
        assert_eq!(
            Backend::parse(None, &mut unknown).unwrap().type_name(),
            DEFAULT_TYPE
        );
    }

    #[test]
    fn an_unknown_type_names_the_supported_ones() {
        let e = parse(r#"{"Type":"geneve"}"#).unwrap_err();
        assert!(e.0.contains(r#""host-gw" or "vxlan""#), "{e}");
    }

    #[test]
    fn each_backend_decides_its_overhead_data_and_port() {
        let (host_gw, _) = parse(r#"{"Type":"host-gw"}"#).unwrap();
        let (vxlan, _) = parse(r#"{"Type":"vxlan","VNI":7,"Port":4789}"#).unwrap();
        let local: IpAddr = "192.168.1.2".parse().unwrap();
        let (h, v) = (host_gw.decide(), vxlan.decide());
        assert_eq!((h.overhead(true), h.overhead(false)), (0, 0));
        assert_eq!((v.overhead(true), v.overhead(false)), (50, 70));
        assert_eq!((h.overlay_port(), v.overlay_port()), (None, Some(4789)));
        assert_eq!(h.lease_data(local), Value::Null);
        let data = v.lease_data(local);
        assert_eq!(data["VNI"], 7);
        assert_eq!(
            data["VtepMAC"],
            crate::names::format_mac(&crate::names::vtep_mac(&local))
        );
        assert_eq!(
            v.unknown_data_fields(&serde_json::json!({"VNI":1,"New":2})),
            ["New"]
        );
    }
}
