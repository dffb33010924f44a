//! nftables over nfnetlink, for what must be fast or read back.
//!
//! The nftables crate drives the `nft` binary, a process and a JSON round
//! trip per call (milliseconds): the plugin cannot afford that on every
//! ADD. Encoded here, as `netlink/nexthop.rs` encodes nexthops: set
//! elements added, deleted and listed; tables listed and deleted; rules
//! counted (the agent's drift checks); named counters read. Tables, sets,
//! chains and their rules are made with the nftables crate or `nft -f`.

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use nix::errno::Errno;

use crate::netlink::{NetlinkError, RECV_BUF, recv_datagram};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_GETOBJ: u16 = 19;
const NFTA_OBJ_TABLE: u16 = 1;
const NFTA_OBJ_NAME: u16 = 2;
const NFTA_OBJ_TYPE: u16 = 3;
const NFTA_OBJ_DATA: u16 = 4;
const NFT_OBJECT_COUNTER: u32 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const HEADER: usize = 16;
/// `NFPROTO_INET`.
pub const FAMILY_INET: u8 = 1;
/// `NFPROTO_BRIDGE`.
pub const FAMILY_BRIDGE: u8 = 7;

type Result<T> = std::result::Result<T, NetlinkError>;

/// Add an element to a set, or delete one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Delete,
}

/// One change: (op, set, key).
pub type Change<'a> = (Op, &'a str, &'a [u8]);

pub struct Nfnl {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Nfnl {
    /// A socket in the calling thread's current namespace.
    pub fn open() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Nfnl {
            socket,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Applies `changes` to sets of `table` as one transaction: all of
    /// them, or (on the first error, returned) none. Only the last message
    /// asks for an ack, so a success costs one reply however many changes
    /// there are; the kernel reports a failing message whether asked or not.
    pub fn apply(&mut self, family: u8, table: &str, changes: &[Change<'_>]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let messages: Vec<_> = changes
            .iter()
            .map(|(op, set, key)| {
                let (kind, flags) = match op {
                    Op::Add => (NFT_MSG_NEWSETELEM, NLM_F_CREATE),
                    Op::Delete => (NFT_MSG_DELSETELEM, 0),
                };
                (kind, flags, elem_list(table, set, Some(key)))
            })
            .collect();
        self.transaction(family, &messages)?
            .map_err(|errno| NetlinkError::Kernel {
                op: format!("update nftables table {table}"),
                errno,
            })
    }

    /// The packet count of every named counter of `table`.
    pub fn counters(&mut self, family: u8, table: &str) -> Result<Vec<(String, u64)>> {
        let mut counters = Vec::new();
        let want_table = string(table);
        let mut request = Vec::new();
        attr(&mut request, NFTA_OBJ_TABLE, &want_table);
        attr(
            &mut request,
            NFTA_OBJ_TYPE,
            &NFT_OBJECT_COUNTER.to_be_bytes(),
        );
        let listed = self.dump(NFT_MSG_GETOBJ, family, &request, |body| {
            let obj: Vec<_> = attrs(body.get(4..).unwrap_or_default()).collect();
            let get = |kind| obj.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v);
            if get(NFTA_OBJ_TABLE) != Some(want_table.as_slice())
                || get(NFTA_OBJ_TYPE) != Some(&NFT_OBJECT_COUNTER.to_be_bytes()[..])
            {
                return;
            }
            let name = get(NFTA_OBJ_NAME).map(c_string);
            let packets = get(NFTA_OBJ_DATA)
                .and_then(|d| attrs(d).find(|(k, _)| *k == NFTA_COUNTER_PACKETS))
                .and_then(|(_, v)| Some(u64::from_be_bytes(v.try_into().ok()?)));
            if let (Some(name), Some(packets)) = (name, packets) {
                counters.push((name, packets));
            }
        })?;
        match listed {
            Ok(()) | Err(Errno::ENOENT) => Ok(counters),
            Err(errno) => Err(NetlinkError::Kernel {
                op: format!("list the counters of nftables table {table}"),
                errno,
            }),
        }
    }

    /// Deletes `table` with everything in it; false if there was none.
    pub fn delete_table(&mut self, family: u8, table: &str) -> Result<bool> {
        let mut attrs = Vec::new();
        attr(&mut attrs, NFTA_TABLE_NAME, &string(table));
        match self.transaction(family, &[(NFT_MSG_DELTABLE, 0, attrs)])? {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(errno) => Err(NetlinkError::Kernel {
                op: format!("delete nftables table {table}"),
                errno,
            }),
        }
    }

    /// Sends `messages` (type, extra flags, attributes) as one batch: all
    /// of them, or (on the first error, returned) none. Only the last
    /// message asks for an ack, so a success costs one reply however many
    /// there are; the kernel reports a failing message whether asked or
    /// not. A socket error is the outer error.
    fn transaction(
        &mut self,
        family: u8,
        messages: &[(u16, u16, Vec<u8>)],
    ) -> Result<std::result::Result<(), Errno>> {
        let mut buf = Vec::new();
        self.message(&mut buf, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, &[]);
        let first = self.seq.wrapping_add(1);
        for (i, (kind, flags, attrs)) in messages.iter().enumerate() {
            let ack = if i + 1 == messages.len() {
                NLM_F_ACK
            } else {
                0
            };
            self.message(
                &mut buf,
                nft(*kind),
                NLM_F_REQUEST | flags | ack,
                family,
                attrs,
            );
        }
        let last = self.seq;
        self.message(&mut buf, NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, &[]);
        self.socket.send(&buf, 0)?;
        let mut failed = None;
        self.receive(|seq, kind, body| {
            if kind == NLMSG_ERROR && (first..=last).contains(&seq) {
                if let Some(errno) = error_of(body) {
                    failed.get_or_insert(errno);
                }
                return seq != last;
            }
            true
        })?;
        Ok(failed.map_or(Ok(()), Err))
    }

    /// The keys of every element of `set`.
    pub fn keys(&mut self, family: u8, table: &str, set: &str) -> Result<Vec<Vec<u8>>> {
        let mut keys = Vec::new();
        // nfgenmsg, then the element list.
        self.dump(
            NFT_MSG_GETSETELEM,
            family,
            &elem_list(table, set, None),
            |body| keys.extend(element_keys(body.get(4..).unwrap_or_default())),
        )?
        .map_err(|errno| NetlinkError::Kernel {
            op: format!("list set {set} of nftables table {table}"),
            errno,
        })?;
        Ok(keys)
    }

    /// How many rules `table` holds; `None` if there is no such table.
    pub fn rule_count(&mut self, family: u8, table: &str) -> Result<Option<usize>> {
        // A rule dump of a missing table is merely empty.
        let mut found = false;
        let name = string(table);
        self.dump(NFT_MSG_GETTABLE, family, &[], |body| {
            let attrs = attrs(body.get(4..).unwrap_or_default());
            found |= attrs
                .filter(|(k, _)| *k == NFTA_TABLE_NAME)
                .any(|(_, v)| v == name.as_slice());
        })?
        .map_err(|errno| NetlinkError::Kernel {
            op: "list nftables tables".into(),
            errno,
        })?;
        if !found {
            return Ok(None);
        }
        let mut attrs = Vec::new();
        attr(&mut attrs, NFTA_RULE_TABLE, &string(table));
        let mut count = 0;
        match self.dump(NFT_MSG_GETRULE, family, &attrs, |_| count += 1)? {
            Ok(()) => Ok(Some(count)),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(NetlinkError::Kernel {
                op: format!("list the rules of nftables table {table}"),
                errno,
            }),
        }
    }

    /// Dumps objects of one kind, handing each message's body to `each`;
    /// the kernel's error, if it refuses, is the inner one.
    fn dump(
        &mut self,
        kind: u16,
        family: u8,
        attrs: &[u8],
        mut each: impl FnMut(&[u8]),
    ) -> Result<std::result::Result<(), Errno>> {
        let mut buf = Vec::new();
        self.message(
            &mut buf,
            nft(kind),
            NLM_F_REQUEST | NLM_F_DUMP,
            family,
            attrs,
        );
        let want = self.seq;
        self.socket.send(&buf, 0)?;
        let mut failed = None;
        self.receive(|seq, kind, body| {
            if seq != want {
                return true;
            }
            match kind {
                NLMSG_DONE => false,
                NLMSG_ERROR => {
                    failed = error_of(body);
                    false
                }
                _ => {
                    each(body);
                    true
                }
            }
        })?;
        Ok(failed.map_or(Ok(()), Err))
    }

    /// Appends one message: header, nfgenmsg, attributes.
    fn message(&mut self, buf: &mut Vec<u8>, kind: u16, flags: u16, family: u8, attrs: &[u8]) {
        self.seq = self.seq.wrapping_add(1);
        let len = HEADER + 4 + attrs.len();
        buf.extend_from_slice(&(len as u32).to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&self.seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        // nfgenmsg: family, version 0, resource id (the subsystem, for a
        // batch's begin and end) in network order.
        buf.extend_from_slice(&[family, 0]);
        buf.extend_from_slice(&NFNL_SUBSYS_NFTABLES.to_be_bytes());
        buf.extend_from_slice(attrs);
    }

    /// Reads replies, handing each (sequence, type, body) to `handle`
    /// until it returns false.
    fn receive(&mut self, mut handle: impl FnMut(u32, u16, &[u8]) -> bool) -> Result<()> {
        loop {
            let len = recv_datagram(&self.socket, &mut self.buf)?;
            let mut at = 0;
            while at + HEADER <= len {
                let word = |o: usize| {
                    let b = &self.buf[at + o..at + o + 4];
                    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
                };
                let size = word(0) as usize;
                if size < HEADER || at + size > len {
                    return Err(NetlinkError::Decode(format!(
                        "bad nfnetlink message of {size} bytes"
                    )));
                }
                let kind = u16::from_ne_bytes([self.buf[at + 4], self.buf[at + 5]]);
                let seq = word(8);
                if !handle(seq, kind, &self.buf[at + HEADER..at + size]) {
                    return Ok(());
                }
                at += size.next_multiple_of(4);
            }
        }
    }
}

/// The errno in an NLMSG_ERROR body; `None` for an ack.
fn error_of(body: &[u8]) -> Option<Errno> {
    let code = i32::from_ne_bytes(body.get(..4)?.try_into().ok()?);
    (code != 0).then(|| Errno::from_raw(-code))
}

fn nft(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
}

fn string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Table and set names, and the one element keyed `key` if any.
fn elem_list(table: &str, set: &str, key: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    attr(&mut out, NFTA_SET_ELEM_LIST_TABLE, &string(table));
    attr(&mut out, NFTA_SET_ELEM_LIST_SET, &string(set));
    if let Some(key) = key {
        let mut value = Vec::new();
        attr(&mut value, NFTA_DATA_VALUE, key);
        let mut elem_key = Vec::new();
        attr(&mut elem_key, NFTA_SET_ELEM_KEY | NLA_F_NESTED, &value);
        let mut elem = Vec::new();
        attr(&mut elem, NFTA_LIST_ELEM | NLA_F_NESTED, &elem_key);
        attr(&mut out, NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, &elem);
    }
    out
}

/// Attributes of a buffer: (type without flags, payload).
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16::from_ne_bytes([*buf.first()?, *buf.get(1)?]) as usize;
        let kind = u16::from_ne_bytes([*buf.get(2)?, *buf.get(3)?]) & NLA_TYPE_MASK;
        let payload = buf.get(4..len)?;
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, payload))
    })
}

/// The element keys in one NEWSETELEM message's attributes.
fn element_keys(body: &[u8]) -> Vec<Vec<u8>> {
    let nested = |buf, kind| attrs(buf).filter(move |(k, _)| *k == kind).map(|(_, p)| p);
    nested(body, NFTA_SET_ELEM_LIST_ELEMENTS)
        .flat_map(|list| nested(list, NFTA_LIST_ELEM))
        .flat_map(|elem| nested(elem, NFTA_SET_ELEM_KEY))
        .flat_map(|key| nested(key, NFTA_DATA_VALUE))
        .map(<[u8]>::to_vec)
        .collect()
}

fn c_string(v: &[u8]) -> String {
    String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or_default()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_element_list_round_trips() {
        let key = [7, 0, 0, 0, 10, 1, 2, 3];
        let body = elem_list("t", "s", Some(&key));
        let names: Vec<_> = attrs(&body).map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                NFTA_SET_ELEM_LIST_TABLE,
                NFTA_SET_ELEM_LIST_SET,
                NFTA_SET_ELEM_LIST_ELEMENTS
            ]
        );
        assert_eq!(element_keys(&body), vec![key.to_vec()]);
    }

    #[test]
    fn truncated_attributes_end_the_walk() {
        let body = elem_list("table", "set", Some(&[1, 2, 3, 4]));
        for cut in 0..body.len() {
            let _ = element_keys(&body[..cut]);
        }
    }
}
