//! ADD: allocate, wire, answer. A failure leaves nothing behind.

use podnet_core::cni::{CniError, CniResult, Env, NetConf};
use podnet_linux::netlink::Netlink;

use super::open_netns;
use crate::{bridge, ipam, masq, node};

pub fn add(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<CniResult, CniError> {
    let netns = open_netns(env)?;
    let mut host = Netlink::open().map_err(bridge::kernel)?;
    let mtu = node::mtu(conf, node::subnet_file(conf)?.as_ref(), &mut host);
    let lease = ipam::allocate(conf, env, stdin)?;
    let wired = bridge::attach(&mut host, conf, env, &netns, &lease, mtu)
        .and_then(|result| masq::add(conf, env, &lease.allocs).map(|()| result));
    wired.inspect_err(|e| {
        tracing::warn!("ADD failed, rolling back: {}", e.msg);
        let undone = bridge::detach(env)
            .and_then(|()| masq::remove(conf, env))
            // Only what this ADD took is given back; a retried ADD of a
            // live attachment keeps its address for the DEL that follows.
            .and_then(|()| ipam::undo(conf, env, stdin, &lease));
        if let Err(undo) = undone {
            tracing::error!("rollback failed: {}", undo.msg);
        }
    })
}
