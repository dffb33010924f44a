//! VXLAN devices, and the neighbour and FDB entries that point a vxlan
//! device at its peers.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::errno::Errno;

use super::{Change, Message, Netlink, Result, family};

pub struct VxlanSpec<'a> {
    pub name: &'a str,
    pub vni: u32,
    pub port: u16,
    /// The local underlay address, and the link that carries it.
    pub local: IpAddr,
    pub underlay: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
}

/// A permanent entry on a vxlan device: a neighbour (`ip` -> `mac`) or an
/// FDB entry (`mac` -> remote `ip`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub ip: IpAddr,
    pub mac: Vec<u8>,
}

impl Netlink {
    /// Creates the device, learning off, up; `EEXIST` if it exists.
    pub fn create_vxlan(&mut self, spec: &VxlanSpec<'_>) -> Result<()> {
        let local = match spec.local {
            IpAddr::V4(v4) => InfoVxlan::Local(v4),
            IpAddr::V6(v6) => InfoVxlan::Local6(v6),
        };
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes
            .push(LinkAttribute::IfName(spec.name.to_owned()));
        msg.attributes
            .push(LinkAttribute::Address(spec.mac.to_vec()));
        msg.attributes.push(LinkAttribute::Mtu(spec.mtu));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(vec![
                InfoVxlan::Id(spec.vni),
                local,
                InfoVxlan::Link(spec.underlay),
                InfoVxlan::Port(spec.port),
                InfoVxlan::Learning(false),
            ])),
        ]));
        let name = spec.name.to_owned();
        self.create(|| format!("create vxlan {name}"), msg)
    }

    /// The permanent neighbour entries (`fdb == false`) or FDB entries with
    /// a remote address (`fdb == true`) of a device.
    pub fn entries(&mut self, ifindex: u32, fdb: bool) -> Result<Vec<Entry>> {
        let fam = if fdb {
            AddressFamily::Bridge
        } else {
            AddressFamily::Unspec
        };
        // Dump everything and filter here: the kernel reads an FDB dump's
        // header in more than one way depending on its length.
        let msg = neighbour_message(0, fam);
        let msgs = self.request(
            || "dump neighbours".into(),
            RouteNetlinkMessage::GetNeighbour(msg),
            NLM_F_DUMP,
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                Message::Route(RouteNetlinkMessage::NewNeighbour(n))
                    if n.header.ifindex == ifindex
                        && n.header.state == NeighbourState::Permanent
                        && (n.header.family == AddressFamily::Bridge) == fdb =>
                {
                    entry_from(n)
                }
                _ => None,
            })
            .collect())
    }

    /// Installs a permanent neighbour (`fdb == false`: IP -> MAC) or FDB
    /// entry (`fdb == true`: MAC -> remote IP) on a vxlan device.
    pub fn replace_entry(&mut self, ifindex: u32, entry: &Entry, fdb: bool) -> Result<()> {
        self.apply(&[Change::replace_entry(ifindex, entry, fdb)])
    }

    /// Deletes an entry; one that is already gone is not an error.
    pub fn delete_entry(&mut self, ifindex: u32, entry: &Entry, fdb: bool) -> Result<()> {
        self.apply(&[Change::delete_entry(ifindex, entry, fdb)])
    }
}

impl Change {
    pub fn replace_entry(ifindex: u32, entry: &Entry, fdb: bool) -> Change {
        Change {
            msg: RouteNetlinkMessage::NewNeighbour(entry_message(ifindex, entry, fdb)).into(),
            flags: NLM_F_CREATE | NLM_F_REPLACE,
            tolerate: &[],
            what: format!(
                "add {} entry {}",
                if fdb { "fdb" } else { "neighbour" },
                entry.ip
            ),
        }
    }

    pub fn delete_entry(ifindex: u32, entry: &Entry, fdb: bool) -> Change {
        Change {
            msg: RouteNetlinkMessage::DelNeighbour(entry_message(ifindex, entry, fdb)).into(),
            flags: 0,
            tolerate: &[Errno::ENOENT, Errno::ESRCH],
            what: format!("delete entry {}", entry.ip),
        }
    }
}

fn entry_from(n: NeighbourMessage) -> Option<Entry> {
    let mut ip = None;
    let mut mac = None;
    for attr in n.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                ip = Some(IpAddr::V4(v4))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                ip = Some(IpAddr::V6(v6))
            }
            // In an AF_BRIDGE message the parser cannot tell the address
            // family: go by length.
            NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                ip = match b.len() {
                    4 => <[u8; 4]>::try_from(b.as_slice()).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from),
                    _ => None,
                }
            }
            NeighbourAttribute::LinkLayerAddress(l) => mac = Some(l),
            _ => {}
        }
    }
    Some(Entry { ip: ip?, mac: mac? })
}

fn neighbour_message(ifindex: u32, fam: AddressFamily) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = fam;
    msg.header.ifindex = ifindex;
    msg.header.state = NeighbourState::Permanent;
    msg.header.kind = RouteType::Unicast;
    msg
}

fn entry_message(ifindex: u32, entry: &Entry, fdb: bool) -> NeighbourMessage {
    let fam = if fdb {
        AddressFamily::Bridge
    } else {
        family(entry.ip)
    };
    let mut msg = neighbour_message(ifindex, fam);
    if fdb {
        // NTF_SELF: the entry belongs to the vxlan device itself.
        msg.header.flags = NeighbourFlags::Own;
    }
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(
            entry.ip,
        )));
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(entry.mac.clone()));
    msg
}

/// A vxlan device's settings as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanSettings {
    pub vni: Option<u32>,
    pub port: Option<u16>,
    pub local: Option<IpAddr>,
}

impl VxlanSettings {
    /// Whether a device with these settings is the one `spec` makes.
    pub fn matches(&self, spec: &VxlanSpec<'_>) -> bool {
        *self
            == VxlanSettings {
                vni: Some(spec.vni),
                port: Some(spec.port),
                local: Some(spec.local),
            }
    }
}

pub(super) fn settings(attrs: &[InfoVxlan]) -> VxlanSettings {
    let mut out = VxlanSettings {
        vni: None,
        port: None,
        local: None,
    };
    for attr in attrs {
        match attr {
            InfoVxlan::Id(vni) => out.vni = Some(*vni),
            InfoVxlan::Port(port) => out.port = Some(*port),
            InfoVxlan::Local(v4) => out.local = Some(IpAddr::V4(*v4)),
            InfoVxlan::Local6(v6) => out.local = Some(IpAddr::V6(*v6)),
            _ => {}
        }
    }
    out
}
