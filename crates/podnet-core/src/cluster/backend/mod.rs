//! The datapath backends, decided purely. Each backend is one module here
//! (its net-conf settings, its lease data, the objects it wants per peer,
//! its MTU overhead and overlay ports) and one in podnetd (its devices and
//! entries). Adding a backend: its module, and a line in [`REGISTRY`].

pub mod host_gw;
pub mod vxlan;
pub mod wireguard;

use std::any::Any;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::desired::{Datapath, Me};
use super::lease::LeaseAttrs;
use super::netconf::NetConfError;

/// Every backend: its settings type, by the `Backend.Type` it declares.
const REGISTRY: &[(&str, Parse)] = &[
    registered::<host_gw::HostGw>(),
    registered::<vxlan::Vxlan>(),
    registered::<wireguard::Wireguard>(),
];

/// flannel's default backend.
pub const DEFAULT_TYPE: &str = vxlan::TYPE;

/// Fields every backend has, read by the net-conf itself.
pub const COMMON_FIELDS: [&str; 2] = ["Type", "MTU"];

/// A backend's settings, as its `Backend` object in the net-conf gives
/// them (flannel's field names and defaults).
pub trait Settings: Decide + DeserializeOwned + Serialize + Sized {
    /// The `Backend.Type` it answers to, also its leases' `BackendType`.
    const TYPE: &'static str;
    /// Refuses values the types alone allow, naming the field.
    fn validate(self) -> Result<Self, NetConfError> {
        Ok(self)
    }
}

/// What a backend decides. Everything here is pure.
pub trait Decide: Any + fmt::Debug + Send + Sync {
    /// The `Backend.Type` it answers to, also its leases' `BackendType`.
    fn type_name(&self) -> &'static str;
    /// Its settings as JSON (what makes two backends the same).
    fn settings(&self) -> Value;
    /// Bytes its encapsulation costs the pods of one family: it follows
    /// the underlay family that family's traffic crosses.
    fn overhead(&self, v4_pods: bool) -> u32;
    /// This node's lease data for one pod family, its underlay address
    /// there, and its public identity if the backend has one (podnetd's
    /// half makes or loads it: WireGuard's public key).
    fn lease_data(&self, v4_pods: bool, local: IpAddr, identity: Option<&str>) -> Value;
    /// The fields of a peer's lease data this podnet does not read.
    fn unknown_data_fields(&self, data: &Value) -> Vec<String>;
    /// The UDP ports its overlay arrives on: they skip connection
    /// tracking, and only nodes may send to them.
    fn overlay_ports(&self) -> Vec<u16>;
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
#[derive(Clone)]
pub struct Backend(Arc<dyn Decide>);

/// A backend's parser: its settings from `Backend`, naming the fields it
/// does not know.
type Parse = fn(&Value, &mut Vec<String>) -> Result<Backend, NetConfError>;

const fn registered<T: Settings>() -> (&'static str, Parse) {
    (T::TYPE, |raw, unknown| {
        Ok(Backend::new(settings::<T>(raw, unknown)?.validate()?))
    })
}

impl PartialEq for Backend {
    fn eq(&self, other: &Self) -> bool {
        self.type_name() == other.type_name() && self.0.settings() == other.0.settings()
    }
}

impl Eq for Backend {}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Backend {
    pub fn new(settings: impl Decide) -> Self {
        Backend(Arc::new(settings))
    }

    pub fn decide(&self) -> &dyn Decide {
        self.0.as_ref()
    }

    /// Its settings, if it is a `T`: what its podnetd half works from.
    pub fn settings<T: Decide>(&self) -> Option<&T> {
        let any: &dyn Any = self.0.as_ref();
        any.downcast_ref()
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
                known.join(", ")
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
    let mut note = |path: serde_ignored::Path<'_>| unknown.push(path.to_string().replace(".?", ""));
    let fields = serde_ignored::Deserializer::new(raw, &mut note);
    serde_path_to_error::deserialize(fields).map_err(|e| match e.path().to_string() {
        at if at == "." => NetConfError(format!("Backend: {}", e.inner())),
        at => NetConfError(format!("Backend.{at}: {}", e.inner())),
    })
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
        assert!(e.0.contains(r#""host-gw", "vxlan", "wireguard""#), "{e}");
    }

    #[test]
    fn each_backend_decides_its_overhead_data_and_port() {
        let (host_gw, _) = parse(r#"{"Type":"host-gw"}"#).unwrap();
        let (vxlan, _) = parse(r#"{"Type":"vxlan","VNI":7,"Port":4789}"#).unwrap();
        let local: IpAddr = "192.168.1.2".parse().unwrap();
        let (h, v) = (host_gw.decide(), vxlan.decide());
        assert_eq!((h.overhead(true), h.overhead(false)), (0, 0));
        assert_eq!((v.overhead(true), v.overhead(false)), (50, 70));
        assert_eq!((h.overlay_ports(), v.overlay_ports()), (vec![], vec![4789]));
        assert_eq!(h.lease_data(true, local, None), Value::Null);
        let data = v.lease_data(true, local, None);
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
