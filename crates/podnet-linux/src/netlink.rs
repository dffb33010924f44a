//! A small, typed, synchronous rtnetlink client.
//!
//! Each method is one request and its answer. A socket opened inside a
//! namespace ([`Netlink::open_in`]) keeps talking to that namespace after
//! the thread has left it.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::link::{
    InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::errno::Errno;

use crate::netns::{Netns, NetnsError};

pub mod monitor;
mod nexthop;
mod vxlan;
use nexthop::Message;
pub use nexthop::Nexthop;
pub use vxlan::{Entry, VxlanSettings, VxlanSpec};

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("{op}: {errno}")]
    Kernel { op: String, errno: Errno },
    #[error("netlink socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("netlink decode: {0}")]
    Decode(String),
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

impl NetlinkError {
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, NetlinkError>;

/// What podnet needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    pub mac: Vec<u8>,
    pub mtu: u32,
    pub master: Option<u32>,
    pub up: bool,
    /// Operationally up (IFF_RUNNING): the kernel has acted on its carrier,
    /// so it can transmit.
    pub running: bool,
    /// For a veth: its peer's index (in the peer's namespace).
    pub peer: Option<u32>,
    /// `ip link set ... alias`: a pod's port records its guard here.
    pub alias: Option<String>,
    /// For a vxlan device: what it was made with.
    pub vxlan: Option<VxlanSettings>,
}

/// A route as podnet compares routes: destination, gateway, device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub oif: Option<u32>,
    pub table: u32,
    /// The route protocol: who installed it (podnetd tags its own).
    pub protocol: u8,
    /// The nexthop object it goes through, if it uses one.
    pub nexthop: Option<u32>,
}

/// A route to install in the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub oif: Option<u32>,
    pub protocol: u8,
    /// The gateway is on the link even if no address says so (vxlan).
    pub onlink: bool,
}

/// One change for [`Netlink::apply`].
#[derive(Debug, Clone)]
pub struct Change {
    msg: Message,
    flags: u16,
    /// Errors that mean "already as wanted".
    tolerate: &'static [Errno],
    what: String,
}

impl Change {
    fn set_link(what: String, msg: LinkMessage) -> Change {
        Change {
            msg: RouteNetlinkMessage::SetLink(msg).into(),
            flags: 0,
            tolerate: &[],
            what,
        }
    }

    pub fn set_up(index: u32) -> Change {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        Change::set_link(format!("set link {index} up"), msg)
    }

    pub fn set_mtu(index: u32, mtu: u32) -> Change {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        Change::set_link(format!("set link {index} mtu {mtu}"), msg)
    }

    pub fn set_master(index: u32, master: u32) -> Change {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Controller(master));
        Change::set_link(format!("attach link {index} to {master}"), msg)
    }

    pub fn set_alias(index: u32, alias: &str) -> Change {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes
            .push(LinkAttribute::IfAlias(alias.to_owned()));
        Change {
            msg: RouteNetlinkMessage::NewLink(msg).into(),
            flags: 0,
            tolerate: &[],
            what: format!("set the alias of link {index}"),
        }
    }

    pub fn set_hairpin(index: u32, on: bool) -> Change {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                on,
            )])),
        ]));
        Change {
            msg: RouteNetlinkMessage::NewLink(msg).into(),
            flags: 0,
            tolerate: &[],
            what: format!("set hairpin on link {index}"),
        }
    }

    /// Sets which bridge group addresses (01:80:c2:00:00:0X, bit X) a
    /// bridge forwards rather than takes in for the node.
    pub fn set_group_fwd_mask(index: u32, mask: u16) -> Change {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::GroupFwdMask(mask)])),
        ]));
        Change {
            msg: RouteNetlinkMessage::NewLink(msg).into(),
            flags: 0,
            tolerate: &[],
            what: format!("set the group forward mask of bridge {index}"),
        }
    }

    /// Adds an address; one already there is as wanted. IPv6 addresses
    /// skip duplicate address detection, which would delay them by seconds.
    pub fn add_address(index: u32, addr: IpNet) -> Change {
        let mut msg = AddressMessage::default();
        msg.header.family = family(addr.addr());
        msg.header.prefix_len = addr.prefix_len();
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(addr.addr()));
        msg.attributes.push(AddressAttribute::Address(addr.addr()));
        if let IpNet::V4(v4) = addr {
            msg.attributes
                .push(AddressAttribute::Broadcast(v4.broadcast()));
        } else {
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        Change {
            msg: RouteNetlinkMessage::NewAddress(msg).into(),
            flags: NLM_F_CREATE | NLM_F_EXCL,
            tolerate: &[Errno::EEXIST],
            what: format!("add address {addr} to link {index}"),
        }
    }

    pub fn replace_route(spec: &RouteSpec) -> Change {
        let mut msg = route_message(spec.dst, spec.protocol);
        msg.header.scope = if spec.gw.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if let Some(gw) = spec.gw {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        if let Some(oif) = spec.oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        if spec.onlink {
            msg.header.flags = RouteFlags::Onlink;
        }
        Change {
            msg: RouteNetlinkMessage::NewRoute(msg).into(),
            flags: NLM_F_CREATE | NLM_F_REPLACE,
            tolerate: &[],
            what: format!("add route {} via {:?}", spec.dst, spec.gw),
        }
    }

    /// Installs (or replaces) a route through a nexthop object.
    pub fn replace_route_via_nexthop(dst: IpNet, nexthop: u32, protocol: u8) -> Change {
        let mut msg = route_message(dst, protocol);
        msg.attributes.push(RouteAttribute::NhId(nexthop));
        Change {
            msg: RouteNetlinkMessage::NewRoute(msg).into(),
            flags: NLM_F_CREATE | NLM_F_REPLACE,
            tolerate: &[],
            what: format!("add route {dst} via nexthop {nexthop}"),
        }
    }

    pub fn delete_route(dst: IpNet, protocol: u8) -> Change {
        Change {
            msg: RouteNetlinkMessage::DelRoute(route_message(dst, protocol)).into(),
            flags: 0,
            tolerate: &[Errno::ESRCH],
            what: format!("delete route {dst}"),
        }
    }
}

/// The protocol the plugin's pod routes carry ("boot", as `ip route` uses).
pub const PROTO_BOOT: u8 = 3;

/// The request to create a veth pair with its peer in another namespace.
pub struct VethSpec<'a> {
    pub host_name: &'a str,
    pub peer_name: &'a str,
    pub peer_netns: &'a Netns,
    pub mtu: u32,
    pub peer_mac: Option<[u8; 6]>,
}

pub struct Netlink {
    socket: Socket,
    seq: u32,
    /// One receive buffer for the socket's life: a datagram is read with a
    /// single syscall, without peeking at its size first.
    buf: Vec<u8>,
    /// A reply since the last request began carried `NLM_F_DUMP_INTR`.
    interrupted: bool,
}

/// Set on a dump's messages when the objects changed while it ran.
const NLM_F_DUMP_INTR: u16 = 0x10;

/// The kernel sends dump datagrams of at most 32 KiB.
pub(crate) const RECV_BUF: usize = 64 * 1024;

impl Netlink {
    /// A socket in the calling thread's current namespace.
    pub fn open() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        socket.set_ext_ack(true).ok();
        Ok(Netlink {
            socket,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
            interrupted: false,
        })
    }

    /// A socket bound to `ns`; the thread is back home when this returns.
    pub fn open_in(ns: &Netns) -> Result<Self> {
        let _guard = ns.enter()?;
        Self::open()
    }

    fn encode(&mut self, msg: Message, flags: u16, buf: &mut Vec<u8>) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        let mut req =
            NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(msg));
        req.header.flags = NLM_F_REQUEST | flags;
        req.header.sequence_number = self.seq;
        req.finalize();
        let at = buf.len();
        buf.resize(at + ((req.buffer_len() + 3) & !3), 0);
        req.serialize(&mut buf[at..]);
        self.seq
    }

    /// Reads replies, handing each (sequence number, payload) to `handle`
    /// until it returns false.
    fn receive(
        &mut self,
        mut handle: impl FnMut(u32, NetlinkPayload<Message>) -> bool,
    ) -> Result<()> {
        loop {
            let len = recv_datagram(&self.socket, &mut self.buf)?;
            let mut offset = 0;
            while offset < len {
                let msg = NetlinkMessage::<Message>::deserialize(&self.buf[offset..len])
                    .map_err(|e| NetlinkError::Decode(e.to_string()))?;
                let size = msg.header.length as usize;
                if size == 0 {
                    break;
                }
                // Only the reply to the request in flight (the last sent).
                self.interrupted |= msg.header.sequence_number == self.seq
                    && msg.header.flags & NLM_F_DUMP_INTR != 0;
                offset += (size + 3) & !3;
                if !handle(msg.header.sequence_number, msg.payload) {
                    return Ok(());
                }
            }
        }
    }

    /// Sends one request and collects its replies. A dump the kernel
    /// marks interrupted (`NLM_F_DUMP_INTR`: the objects changed while it
    /// ran, so it may have skipped a live one) is asked again; it is never
    /// read as complete.
    fn request(
        &mut self,
        op: impl FnOnce() -> String,
        msg: impl Into<Message>,
        flags: u16,
    ) -> Result<Vec<Message>> {
        const ATTEMPTS: usize = 10;
        let msg = msg.into();
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        for _ in 0..ATTEMPTS {
            self.interrupted = false;
            let out = self.request_once(msg.clone(), flags)?;
            if !(dump && self.interrupted) {
                return out.map_err(|errno| NetlinkError::Kernel { op: op(), errno });
            }
        }
        Err(NetlinkError::Kernel {
            op: format!("{} (interrupted {ATTEMPTS} times)", op()),
            errno: Errno::EINTR,
        })
    }

    fn request_once(
        &mut self,
        msg: Message,
        flags: u16,
    ) -> Result<std::result::Result<Vec<Message>, Errno>> {
        let mut buf = Vec::new();
        let seq = self.encode(msg, flags, &mut buf);
        self.socket.send(&buf, 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        let mut failed = None;
        self.receive(|got, payload| {
            if got != seq {
                return true;
            }
            match payload {
                NetlinkPayload::Done(_) => false,
                NetlinkPayload::Error(e) => {
                    failed = e.code.map(|c| Errno::from_raw(-c.get()));
                    false
                }
                NetlinkPayload::InnerMessage(m) => {
                    out.push(m);
                    dump || flags & NLM_F_ACK != 0
                }
                _ => true,
            }
        })?;
        Ok(failed.map_or(Ok(out), Err))
    }

    /// Applies many changes at once: each chunk goes out in one send, and
    /// then its acks are collected. Thousands of routes take one round
    /// trip per chunk instead of one each. Errors a change tolerates (for
    /// a delete: already gone) are ignored; the first other error is
    /// returned after every change was tried.
    pub fn apply(&mut self, changes: &[Change]) -> Result<()> {
        const CHUNK: usize = 128;
        let mut first_error = None;
        for chunk in changes.chunks(CHUNK) {
            let mut buf = Vec::new();
            let seqs: Vec<u32> = chunk
                .iter()
                .map(|c| self.encode(c.msg.clone(), c.flags | NLM_F_ACK, &mut buf))
                .collect();
            self.socket.send(&buf, 0)?;
            let mut pending = chunk.len();
            self.receive(|got, payload| {
                if let (Some(i), NetlinkPayload::Error(e)) =
                    (seqs.iter().position(|s| *s == got), payload)
                {
                    pending -= 1;
                    if let Some(code) = e.code {
                        let errno = Errno::from_raw(-code.get());
                        if !chunk[i].tolerate.contains(&errno) && first_error.is_none() {
                            first_error = Some(NetlinkError::Kernel {
                                op: chunk[i].what.clone(),
                                errno,
                            });
                        }
                    }
                }
                pending > 0
            })?;
        }
        first_error.map_or(Ok(()), Err)
    }

    // ---- links ----

    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        self.get_link(|| format!("get link {name}"), msg)
    }

    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.get_link(|| format!("get link {index}"), msg)
    }

    /// One link, or None if there is no such link.
    fn get_link(&mut self, op: impl FnOnce() -> String, msg: LinkMessage) -> Result<Option<Link>> {
        match self.request(op, RouteNetlinkMessage::GetLink(msg), NLM_F_ACK) {
            Ok(msgs) => Ok(msgs.into_iter().find_map(link_from)),
            Err(e) if e.errno() == Some(Errno::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn links(&mut self) -> Result<Vec<Link>> {
        let msgs = self.request(
            || "dump links".into(),
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(msgs.into_iter().filter_map(link_from).collect())
    }

    /// Creates a bridge with a fixed MAC; `EEXIST` if it is already there.
    pub fn create_bridge(&mut self, name: &str, mac: [u8; 6], mtu: Option<u32>) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.create(|| format!("create bridge {name}"), msg)
    }

    /// Creates a link of a kind that needs no settings at creation (a
    /// `wireguard` device); `EOPNOTSUPP` if the kernel lacks the kind.
    pub fn create_link(&mut self, name: &str, kind: &str, mtu: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Other(kind.to_owned()),
            )]));
        self.create(|| format!("create {kind} {name}"), msg)
    }

    /// Creates a veth pair whose peer is born inside `peer_netns`, so its
    /// name never collides with the host's.
    pub fn create_veth(&mut self, spec: &VethSpec<'_>) -> Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(spec.peer_name.to_owned()));
        peer.attributes.push(LinkAttribute::Mtu(spec.mtu));
        if let Some(mac) = spec.peer_mac {
            peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        use std::os::fd::AsRawFd;
        peer.attributes
            .push(LinkAttribute::NetNsFd(spec.peer_netns.file().as_raw_fd()));
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(spec.host_name.to_owned()));
        msg.attributes.push(LinkAttribute::Mtu(spec.mtu));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.create(|| format!("create veth {}", spec.host_name), msg)
    }

    fn create(&mut self, op: impl FnOnce() -> String, msg: LinkMessage) -> Result<()> {
        self.request(
            op,
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    pub fn set_up(&mut self, index: u32) -> Result<()> {
        self.apply(&[Change::set_up(index)])
    }

    pub fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        self.apply(&[Change::set_master(index, master)])
    }

    /// Hairpin lets a pod reach itself through a service VIP.
    pub fn set_hairpin(&mut self, index: u32, on: bool) -> Result<()> {
        self.apply(&[Change::set_hairpin(index, on)])
    }

    /// Deletes a link; a link that is already gone is not an error. The
    /// kernel has unregistered the link (and a veth's peer) when this returns.
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.request(
            || format!("delete link {index}"),
            RouteNetlinkMessage::DelLink(msg),
            NLM_F_ACK,
        ) {
            Err(e) if e.errno() == Some(Errno::ENODEV) => Ok(()),
            other => other.map(drop),
        }
    }

    // ---- addresses ----

    /// Adds `addr` to a link; an address already there is not an error.
    /// Removes `addr` from link `index`; already gone is fine.
    pub fn delete_address(&mut self, index: u32, addr: IpNet) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = family(addr.addr());
        msg.header.prefix_len = addr.prefix_len();
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(addr.addr()));
        self.apply(&[Change {
            msg: RouteNetlinkMessage::DelAddress(msg).into(),
            flags: 0,
            tolerate: &[Errno::EADDRNOTAVAIL],
            what: format!("delete address {addr} from link {index}"),
        }])
    }

    pub fn add_address(&mut self, index: u32, addr: IpNet) -> Result<()> {
        self.apply(&[Change::add_address(index, addr)])
    }

    /// The addresses on a link, with their prefix lengths.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<IpNet>> {
        Ok(self
            .all_addresses()?
            .into_iter()
            .filter(|(i, _)| *i == index)
            .map(|(_, a)| a)
            .collect())
    }

    /// Every address in this namespace, with its link's index.
    pub fn all_addresses(&mut self) -> Result<Vec<(u32, IpNet)>> {
        let msgs = self.request(
            || "dump addresses".into(),
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                Message::Route(RouteNetlinkMessage::NewAddress(a)) => {
                    let (index, prefix) = (a.header.index, a.header.prefix_len);
                    a.attributes.into_iter().find_map(|attr| match attr {
                        AddressAttribute::Address(ip) => {
                            IpNet::new(ip, prefix).ok().map(|n| (index, n))
                        }
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Installs (or replaces) a route in the main table.
    pub fn replace_route(&mut self, spec: &RouteSpec) -> Result<()> {
        self.apply(&[Change::replace_route(spec)])
    }

    /// Deletes the main-table route to `dst` carrying `protocol`; a route
    /// that is already gone is not an error.
    pub fn delete_route(&mut self, dst: IpNet, protocol: u8) -> Result<()> {
        self.apply(&[Change::delete_route(dst, protocol)])
    }

    /// All routes of both families in every table.
    pub fn routes(&mut self) -> Result<Vec<Route>> {
        let mut out = self.routes_of(AddressFamily::Inet)?;
        out.extend(self.routes_of(AddressFamily::Inet6)?);
        Ok(out)
    }

    /// The link carrying this namespace's IPv4 default route.
    pub fn default_route_link(&mut self) -> Result<Option<Link>> {
        let routes = self.routes_of(AddressFamily::Inet)?;
        let main = u32::from(RouteHeader::RT_TABLE_MAIN);
        match routes
            .iter()
            .filter(|r| r.dst.prefix_len() == 0 && r.table == main)
            .find_map(|r| r.oif)
        {
            Some(oif) => self.link_by_index(oif),
            None => Ok(None),
        }
    }

    fn routes_of(&mut self, family: AddressFamily) -> Result<Vec<Route>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family;
        let msgs = self.request(
            || "dump routes".into(),
            RouteNetlinkMessage::GetRoute(msg),
            NLM_F_DUMP,
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                Message::Route(RouteNetlinkMessage::NewRoute(r)) => route_from(r),
                _ => None,
            })
            .collect())
    }

    /// The MTU of the link that carries this namespace's IPv4 default route.
    pub fn default_route_mtu(&mut self) -> Result<Option<u32>> {
        Ok(self.default_route_link()?.map(|l| l.mtu))
    }
}

/// Reads one datagram into `buf` (emptied first); its length. One that
/// does not fit the buffer is an error, never read in part.
pub(crate) fn recv_datagram(socket: &Socket, buf: &mut Vec<u8>) -> Result<usize> {
    buf.clear();
    let len = socket.recv(buf, libc_msg_trunc())?;
    if len > buf.len() {
        return Err(NetlinkError::Decode(format!(
            "a {len}-byte reply exceeds the {}-byte buffer",
            buf.capacity()
        )));
    }
    Ok(len)
}

/// MSG_TRUNC makes recv report a datagram's full length even if it did not
/// fit, so truncation is detected instead of silently misparsed.
fn libc_msg_trunc() -> i32 {
    nix::sys::socket::MsgFlags::MSG_TRUNC.bits()
}

fn route_message(dst: IpNet, protocol: u8) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family(dst.addr());
    msg.header.destination_prefix_length = dst.prefix_len();
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::from(protocol);
    msg.header.kind = RouteType::Unicast;
    if dst.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst.addr())));
    }
    msg
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn link_from(msg: Message) -> Option<Link> {
    let Message::Route(RouteNetlinkMessage::NewLink(m)) = msg else {
        return None;
    };
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        kind: None,
        mac: Vec::new(),
        mtu: 0,
        master: None,
        up: m.header.flags.contains(LinkFlags::Up),
        running: m.header.flags.contains(LinkFlags::Running),
        peer: None,
        alias: None,
        vxlan: None,
    };
    for attr in m.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(a) => link.mac = a,
            LinkAttribute::Mtu(v) => link.mtu = v,
            LinkAttribute::Controller(c) => link.master = Some(c),
            LinkAttribute::Link(p) => link.peer = Some(p),
            LinkAttribute::IfAlias(a) => link.alias = Some(a),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => link.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::Vxlan(attrs)) => {
                            link.vxlan = Some(vxlan::settings(&attrs));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(link)
}

fn route_from(r: RouteMessage) -> Option<Route> {
    let mut dst = None;
    let mut gw = None;
    let mut oif = None;
    let mut nexthop = None;
    let mut table = u32::from(r.header.table);
    let protocol = u8::from(r.header.protocol);
    for attr in r.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = ip_of(a),
            RouteAttribute::Gateway(a) => gw = ip_of(a),
            RouteAttribute::Oif(i) => oif = Some(i),
            RouteAttribute::Table(t) => table = t,
            RouteAttribute::NhId(id) => nexthop = Some(id),
            _ => {}
        }
    }
    let dst = dst.unwrap_or(match r.header.address_family {
        AddressFamily::Inet6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    });
    Some(Route {
        dst: IpNet::new(dst, r.header.destination_prefix_length).ok()?,
        gw,
        oif,
        table,
        protocol,
        nexthop,
    })
}

fn ip_of(a: RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(v6)),
        _ => None,
    }
}
