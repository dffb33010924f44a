//! Watches the kernel for changes to podnet's own objects, so that a
//! node of thousands of peers need not read its whole datapath every
//! resync to repair drift: routes in the main table, nexthops, the
//! overlay devices and their neighbour and FDB entries (rtnetlink
//! multicast groups), and the agent's nftables table (nfnetlink's). Any
//! such message raises a flag; the agent takes it at its next resync and
//! reconciles in full. Messages about anything else (a pod's ARP churn on
//! the bridge, another table) are dropped after a look at their fixed
//! header. A lost message (the socket's buffer overran) or an error
//! raises the flag too: when in doubt, read everything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER, protocols::NETLINK_ROUTE};

use super::recv_datagram;

// rtnetlink multicast groups (linux/rtnetlink.h).
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_NEIGH: u32 = 3;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV6_ROUTE: u32 = 11;
const RTNLGRP_NEXTHOP: u32 = 32;
const NFNLGRP_NFTABLES: u32 = 7;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTM_NEWNEXTHOP: u16 = 104;
const RTM_DELNEXTHOP: u16 = 105;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_KERNEL: u8 = 2;
const NLMSG_HDRLEN: usize = 16;
const NFPROTO_INET: u8 = 1;

/// What the monitor looks for: the flag to raise, the overlay devices
/// (their links and entries matter), and the agent's nftables table.
#[derive(Clone, Debug)]
pub struct Watch {
    pub changed: Arc<AtomicBool>,
    pub devices: Arc<Mutex<Vec<u32>>>,
    pub table: &'static str,
}

/// Starts the monitor's two threads (rtnetlink, nfnetlink) in the
/// current network namespace; they run for the process's life.
pub fn spawn(watch: Watch) -> std::io::Result<()> {
    let route = subscribe(
        NETLINK_ROUTE,
        &[
            RTNLGRP_LINK,
            RTNLGRP_NEIGH,
            RTNLGRP_IPV4_ROUTE,
            RTNLGRP_IPV6_ROUTE,
            RTNLGRP_NEXTHOP,
        ],
    )?;
    let nft = subscribe(NETLINK_NETFILTER, &[NFNLGRP_NFTABLES])?;
    let w = watch.clone();
    std::thread::Builder::new()
        .name("rtnl-monitor".into())
        .spawn(move || listen(&route, &w, |m, w| route_matters(m, &devices_of(w))))?;
    std::thread::Builder::new()
        .name("nft-monitor".into())
        .spawn(move || listen(&nft, &watch, |m, w| nft_matters(m, w.table)))?;
    Ok(())
}

fn devices_of(w: &Watch) -> Vec<u32> {
    w.devices.lock().map(|d| d.clone()).unwrap_or_default()
}

fn subscribe(protocol: isize, groups: &[u32]) -> std::io::Result<Socket> {
    let mut socket = Socket::new(protocol)?;
    socket.bind(&SocketAddr::new(0, 0))?;
    for group in groups {
        socket.add_membership(*group)?;
    }
    // Room for a burst (a reconcile of thousands of routes echoes each).
    socket.set_rx_buf_sz(4 << 20)?;
    Ok(socket)
}

fn listen(socket: &Socket, watch: &Watch, matters: impl Fn(&[u8], &Watch) -> bool) {
    let mut buf = Vec::with_capacity(1 << 16);
    loop {
        match recv_datagram(socket, &mut buf) {
            Ok(len) => {
                if messages(&buf[..len]).any(|m| matters(m, watch)) {
                    watch.changed.store(true, Ordering::Relaxed);
                }
            }
            // Overrun, or worse: assume anything changed.
            Err(_) => {
                watch.changed.store(true, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The netlink messages in one datagram: (type, payload after the header).
fn messages(mut buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(buf.get(..4)?.try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return None;
        }
        let (msg, rest) = buf.split_at(len.next_multiple_of(4).min(buf.len()));
        buf = rest;
        Some(msg)
    })
}

fn msg_type(msg: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes(msg.get(4..6)?.try_into().ok()?))
}

/// Whether an rtnetlink message may be about podnet's objects: a route in
/// the main table not made by the kernel for an address, any nexthop, an
/// overlay device, or an entry on one.
fn route_matters(msg: &[u8], devices: &[u32]) -> bool {
    let body = &msg[NLMSG_HDRLEN.min(msg.len())..];
    let index_at = |at: usize| {
        body.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
    };
    match msg_type(msg) {
        // rtmsg: family, dst_len, src_len, tos, table, protocol, ...
        Some(RTM_NEWROUTE | RTM_DELROUTE) => {
            body.get(4) == Some(&RT_TABLE_MAIN) && body.get(5) != Some(&RTPROT_KERNEL)
        }
        Some(RTM_NEWNEXTHOP | RTM_DELNEXTHOP) => true,
        // ifinfomsg: family, pad, type (2), index (4); ndmsg: family, pad
        // (3), ifindex (4).
        Some(RTM_NEWLINK | RTM_DELLINK) | Some(RTM_NEWNEIGH | RTM_DELNEIGH) => {
            index_at(4).is_some_and(|i| devices.contains(&i))
        }
        _ => false,
    }
}

/// Whether an nftables message is about `table` (family inet): every
/// object's message starts its attributes with its table's name.
fn nft_matters(msg: &[u8], table: &str) -> bool {
    // nfgenmsg: family, version, res_id (2); then the first attribute.
    let Some(body) = msg.get(NLMSG_HDRLEN..) else {
        return false;
    };
    if body.first() != Some(&NFPROTO_INET) {
        return false;
    }
    let Some(attr) = body.get(4..) else {
        return false;
    };
    let len = attr
        .get(..2)
        .and_then(|b| b.try_into().ok())
        .map_or(0, |b| u16::from_ne_bytes(b) as usize);
    let name = attr.get(4..len).unwrap_or_default();
    name.strip_suffix(&[0]).unwrap_or(name) == table.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u16, body: &[u8]) -> Vec<u8> {
        let len = (NLMSG_HDRLEN + body.len()) as u32;
        let mut m = len.to_ne_bytes().to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn routes_of_the_main_table_matter_unless_the_kernel_made_them() {
        let route = |table, protocol| msg(RTM_DELROUTE, &[2, 24, 0, 0, table, protocol, 0, 1]);
        assert!(route_matters(&route(254, 112), &[]));
        assert!(route_matters(&route(254, 3), &[]), "replaced by hand");
        assert!(!route_matters(&route(254, RTPROT_KERNEL), &[]));
        assert!(!route_matters(&route(255, 2), &[]), "the local table");
        assert!(route_matters(&msg(RTM_DELNEXTHOP, &[0; 8]), &[]));
    }

    #[test]
    fn only_the_overlay_devices_links_and_entries_matter() {
        let neigh = |index: u32| {
            let mut b = vec![7, 0, 0, 0];
            b.extend_from_slice(&index.to_ne_bytes());
            msg(RTM_NEWNEIGH, &b)
        };
        assert!(route_matters(&neigh(9), &[9]));
        assert!(!route_matters(&neigh(4), &[9]), "a pod's ARP on the bridge");
        let link = {
            let mut b = vec![0, 0, 1, 0];
            b.extend_from_slice(&9u32.to_ne_bytes());
            msg(RTM_DELLINK, &b)
        };
        assert!(route_matters(&link, &[9]));
        assert!(!route_matters(&link, &[]));
    }

    #[test]
    fn only_the_agents_table_matters_among_nftables_messages() {
        let nft = |family: u8, table: &str| {
            let mut b = vec![family, 0, 0, 0];
            let name = [table.as_bytes(), &[0]].concat();
            b.extend_from_slice(&((4 + name.len()) as u16).to_ne_bytes());
            b.extend_from_slice(&1u16.to_ne_bytes());
            b.extend_from_slice(&name);
            msg(0x0a00 | 6, &b)
        };
        assert!(nft_matters(&nft(NFPROTO_INET, "podnet"), "podnet"));
        assert!(!nft_matters(&nft(NFPROTO_INET, "podnet-cni"), "podnet"));
        assert!(
            !nft_matters(&nft(7, "podnet-guard"), "podnet"),
            "the guard's"
        );
    }

    #[test]
    fn a_datagram_holds_several_messages() {
        let two = [msg(RTM_NEWNEXTHOP, &[0; 8]), msg(RTM_NEWLINK, &[0; 16])].concat();
        assert_eq!(messages(&two).count(), 2);
        assert_eq!(messages(&two[..10]).count(), 0, "cut short");
    }
}
