//! host-gw: a peer's pod subnets are routed via its underlay address. No
//! devices, no encapsulation; every node must share an L2 segment.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Decide, Settings};
use crate::cluster::desired::{Datapath, Me, PeerRoute};
use crate::cluster::lease::LeaseAttrs;

pub const TYPE: &str = "host-gw";

/// host-gw has no settings of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostGw {}

impl Settings for HostGw {
    const TYPE: &'static str = TYPE;
}

impl Decide for HostGw {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn settings(&self) -> Value {
        Value::Object(Default::default())
    }

    fn overhead(&self, _: bool) -> u32 {
        0
    }

    fn lease_data(&self, _: bool, _: IpAddr, _: Option<&str>) -> Value {
        Value::Null
    }

    fn unknown_data_fields(&self, _: &Value) -> Vec<String> {
        Vec::new()
    }

    fn overlay_ports(&self) -> Vec<u16> {
        Vec::new()
    }

    fn peer(
        &self,
        _: &Me<'_>,
        _: &LeaseAttrs,
        subnet: IpNet,
        underlay: IpAddr,
        out: &mut Datapath,
    ) {
        out.routes.insert(PeerRoute::direct(subnet, underlay));
    }
}
