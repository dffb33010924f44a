//! Nexthop objects (Linux 5.3+): a gateway and device that routes refer
//! to by ID.
//!
//! netlink-packet-route models routes that carry a nexthop ID but not the
//! RTM_*NEXTHOP messages themselves, so the message (an 8-byte header and
//! three attributes) is encoded here.
//!
//! Why podnetd wants them: the kernel keys its shared route data on the
//! device, not the gateway, so thousands of routes through one device with
//! distinct gateways pile into one hash chain and each insert walks it.
//! Routes that point at their own nexthop object hash apart; 5000 of them
//! go in several times faster.

use std::net::IpAddr;

use netlink_packet_core::{
    DecodeError, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NetlinkDeserializable, NetlinkHeader,
    NetlinkSerializable, NlaBuffer, NlasIterator,
};
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;

use super::{Change, Netlink, Result};

const RTM_NEWNEXTHOP: u16 = 104;
const RTM_DELNEXTHOP: u16 = 105;
const RTM_GETNEXTHOP: u16 = 106;
const NHA_ID: u16 = 1;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;
const RTNH_F_ONLINK: u32 = 4;
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// `struct nhmsg`: family, scope, protocol, reserved, flags.
const HEADER_LEN: usize = 8;

/// A gateway nexthop object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nexthop {
    pub id: u32,
    pub gw: IpAddr,
    pub oif: u32,
    /// The gateway is on the device even if no address says so (vxlan).
    pub onlink: bool,
    /// Who installed it, as for routes.
    pub protocol: u8,
}

/// One RTM_*NEXTHOP message; absent attributes are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NexthopMessage {
    kind: u16,
    family: u8,
    protocol: u8,
    flags: u32,
    id: Option<u32>,
    oif: Option<u32>,
    gw: Option<IpAddr>,
}

impl NexthopMessage {
    fn attributes(&self) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        if let Some(id) = self.id {
            out.push((NHA_ID, id.to_ne_bytes().to_vec()));
        }
        if let Some(oif) = self.oif {
            out.push((NHA_OIF, oif.to_ne_bytes().to_vec()));
        }
        match self.gw {
            Some(IpAddr::V4(v4)) => out.push((NHA_GATEWAY, v4.octets().to_vec())),
            Some(IpAddr::V6(v6)) => out.push((NHA_GATEWAY, v6.octets().to_vec())),
            None => {}
        }
        out
    }

    fn to_nexthop(&self) -> Option<Nexthop> {
        Some(Nexthop {
            id: self.id?,
            gw: self.gw?,
            oif: self.oif?,
            onlink: self.flags & RTNH_F_ONLINK != 0,
            protocol: self.protocol,
        })
    }
}

/// An NLA's length: its 4-byte header and value, before padding.
fn nla_len(value: &[u8]) -> usize {
    4 + value.len()
}

fn padded(len: usize) -> usize {
    (len + 3) & !3
}

impl NetlinkSerializable for NexthopMessage {
    fn message_type(&self) -> u16 {
        self.kind
    }

    fn buffer_len(&self) -> usize {
        HEADER_LEN
            + self
                .attributes()
                .iter()
                .map(|(_, v)| padded(nla_len(v)))
                .sum::<usize>()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        buffer[..HEADER_LEN].fill(0);
        buffer[0] = self.family;
        buffer[2] = self.protocol;
        buffer[4..8].copy_from_slice(&self.flags.to_ne_bytes());
        let mut at = HEADER_LEN;
        for (kind, value) in self.attributes() {
            let len = nla_len(&value);
            let end = at + padded(len);
            buffer[at..end].fill(0);
            buffer[at..at + 2].copy_from_slice(&(len as u16).to_ne_bytes());
            buffer[at + 2..at + 4].copy_from_slice(&kind.to_ne_bytes());
            buffer[at + 4..at + len].copy_from_slice(&value);
            at = end;
        }
    }
}

impl NetlinkDeserializable for NexthopMessage {
    type Error = DecodeError;

    fn deserialize(
        header: &NetlinkHeader,
        payload: &[u8],
    ) -> std::result::Result<Self, DecodeError> {
        if payload.len() < HEADER_LEN {
            return Err("nexthop message shorter than its header".into());
        }
        let mut msg = NexthopMessage {
            kind: header.message_type,
            family: payload[0],
            protocol: payload[2],
            flags: u32::from_ne_bytes([payload[4], payload[5], payload[6], payload[7]]),
            ..Default::default()
        };
        for nla in NlasIterator::new(&payload[HEADER_LEN..]) {
            let nla: NlaBuffer<&[u8]> = nla?;
            let value = nla.value();
            match (nla.kind(), value.len()) {
                (NHA_ID, 4) => {
                    msg.id = Some(u32::from_ne_bytes([value[0], value[1], value[2], value[3]]))
                }
                (NHA_OIF, 4) => {
                    msg.oif = Some(u32::from_ne_bytes([value[0], value[1], value[2], value[3]]))
                }
                (NHA_GATEWAY, 4) => msg.gw = <[u8; 4]>::try_from(value).ok().map(IpAddr::from),
                (NHA_GATEWAY, 16) => msg.gw = <[u8; 16]>::try_from(value).ok().map(IpAddr::from),
                _ => {}
            }
        }
        Ok(msg)
    }
}

/// Everything podnet sends: the crate's messages, and nexthop objects.
#[derive(Debug, Clone)]
pub enum Message {
    Route(RouteNetlinkMessage),
    Nexthop(NexthopMessage),
}

impl From<RouteNetlinkMessage> for Message {
    fn from(m: RouteNetlinkMessage) -> Self {
        Message::Route(m)
    }
}

impl NetlinkSerializable for Message {
    fn message_type(&self) -> u16 {
        match self {
            Message::Route(m) => m.message_type(),
            Message::Nexthop(m) => m.message_type(),
        }
    }

    fn buffer_len(&self) -> usize {
        match self {
            Message::Route(m) => NetlinkSerializable::buffer_len(m),
            Message::Nexthop(m) => m.buffer_len(),
        }
    }

    fn serialize(&self, buffer: &mut [u8]) {
        match self {
            Message::Route(m) => NetlinkSerializable::serialize(m, buffer),
            Message::Nexthop(m) => m.serialize(buffer),
        }
    }
}

impl NetlinkDeserializable for Message {
    type Error = DecodeError;

    fn deserialize(
        header: &NetlinkHeader,
        payload: &[u8],
    ) -> std::result::Result<Self, DecodeError> {
        match header.message_type {
            RTM_NEWNEXTHOP..=RTM_GETNEXTHOP => {
                NexthopMessage::deserialize(header, payload).map(Message::Nexthop)
            }
            _ => RouteNetlinkMessage::deserialize(header, payload).map(Message::Route),
        }
    }
}

fn family_of(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { AF_INET } else { AF_INET6 }
}

impl Change {
    /// Creates or replaces a nexthop object. Routes that use it follow.
    pub fn replace_nexthop(nh: &Nexthop) -> Change {
        Change {
            msg: Message::Nexthop(NexthopMessage {
                kind: RTM_NEWNEXTHOP,
                family: family_of(nh.gw),
                protocol: nh.protocol,
                flags: if nh.onlink { RTNH_F_ONLINK } else { 0 },
                id: Some(nh.id),
                oif: Some(nh.oif),
                gw: Some(nh.gw),
            }),
            flags: NLM_F_CREATE | NLM_F_REPLACE,
            tolerate: &[],
            what: format!("add nexthop {} via {}", nh.id, nh.gw),
        }
    }

    /// Deletes a nexthop object, and with it every route that uses it; one
    /// that is already gone is not an error.
    pub fn delete_nexthop(id: u32) -> Change {
        Change {
            msg: Message::Nexthop(NexthopMessage {
                kind: RTM_DELNEXTHOP,
                id: Some(id),
                ..Default::default()
            }),
            flags: 0,
            tolerate: &[Errno::ENOENT],
            what: format!("delete nexthop {id}"),
        }
    }
}

impl Netlink {
    /// Every gateway nexthop object in this namespace, anyone's.
    pub fn nexthops(&mut self) -> Result<Vec<Nexthop>> {
        let msgs = self.request(
            || "dump nexthops".into(),
            Message::Nexthop(NexthopMessage {
                kind: RTM_GETNEXTHOP,
                family: AF_UNSPEC,
                ..Default::default()
            }),
            NLM_F_DUMP,
        )?;
        Ok(msgs
            .iter()
            .filter_map(|m| match m {
                Message::Nexthop(n) => n.to_nexthop(),
                Message::Route(_) => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nexthop_survives_encode_and_decode() {
        for gw in ["172.16.0.1", "fd00::1"] {
            let msg = NexthopMessage {
                kind: RTM_NEWNEXTHOP,
                family: family_of(gw.parse().unwrap()),
                protocol: 112,
                flags: RTNH_F_ONLINK,
                id: Some(0x7000_0001),
                oif: Some(7),
                gw: Some(gw.parse().unwrap()),
            };
            let mut buf = vec![0xff; msg.buffer_len()];
            msg.serialize(&mut buf);
            let mut header = NetlinkHeader::default();
            header.message_type = RTM_NEWNEXTHOP;
            let back = NexthopMessage::deserialize(&header, &buf).unwrap();
            assert_eq!(back, msg);
            let nh = back.to_nexthop().unwrap();
            assert!(nh.onlink);
            assert_eq!((nh.id, nh.oif, nh.protocol), (0x7000_0001, 7, 112));
        }
    }

    #[test]
    fn a_short_message_is_an_error() {
        let header = NetlinkHeader::default();
        assert!(NexthopMessage::deserialize(&header, &[0; 4]).is_err());
    }
}
