//! ADD: allocate, wire, answer. A failure leaves nothing behind.

use podnet_core::cni::{CniError, CniResult, Env, NetConf};

use super::{attachment, open_netns, store};
use crate::{bridge, masq, node};

pub fn add(conf: &NetConf, env: &Env) -> Result<CniResult, CniError> {
    let netns = open_netns(env)?;
    let file = node::subnet_file(conf)?;
    let pool = node::pool(conf, file.as_ref())?;
    let mut host = podnet_linux::netlink::Netlink::open().map_err(bridge::kernel)?;
    let mtu = node::mtu(conf, file.as_ref(), &mut host);

    let who = attachment(env);
    let store = store(conf)?;
    let (allocs, fresh) = store.transact(|state| {
        let fresh = state.owned_by(&who).is_empty();
        Ok((state.allocate(&pool, &who, &conf.runtime.ips)?, fresh))
    })?;

    let wired = bridge::attach(conf, env, &netns, &allocs, mtu)
        .and_then(|result| masq::add(conf, env, &allocs).map(|()| result));
    wired.inspect_err(|e| {
        tracing::warn!("ADD failed, rolling back: {}", e.msg);
        if let Err(undo) = bridge::detach(env).and_then(|()| masq::remove(conf, env)) {
            tracing::error!("rollback: removing the attachment failed: {}", undo.msg);
        }
        // Only what this ADD took is given back; a retried ADD of a live
        // attachment keeps its address for the DEL that will follow.
        if fresh && let Err(undo) = store.transact(|s| Ok(s.release(&who))) {
            tracing::error!("rollback: releasing the address failed: {}", undo.msg);
        }
    })
}
