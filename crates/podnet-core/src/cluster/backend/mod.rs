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
