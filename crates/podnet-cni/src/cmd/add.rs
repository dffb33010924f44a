//! ADD: allocate, wire, hand the pod to podnetd's policy (where on),
//! answer. A failure leaves nothing behind.

use podnet_core::cni::{CniError, CniResult, Code, Env, NetConf};
use podnet_linux::netlink::Netlink;

use super::open_netns;
use crate::{bridge, ipam, masq, policy, pool_source};

pub fn add(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<CniResult, CniError> {
    if conf.uninstalling {
        return Err(CniError::new(
            Code::TryAgainLater,
            "podnet is being uninstalled from this node: no new pod is attached",
        ));
    }
    let netns = open_netns(env)?;
    pool_source::check_agent(conf)?;
    let file = pool_source::subnet_file(conf)?;
    // IPAM waits on the disk and the veth on the kernel; neither needs the
    // other, so they run side by side.
    let (lease, veth, host) = std::thread::scope(|s| {
        let ipam = s.spawn(|| ipam::allocate(conf, env, stdin, file.as_ref()));
        let mut host = Netlink::open().map_err(bridge::kernel);
        let veth = host.as_mut().map_err(|e| e.clone()).and_then(|host| {
            let mtu = pool_source::mtu(conf, file.as_ref(), host);
            bridge::create_veth(host, conf, env, &netns, mtu)
        });
        let lease = ipam
            .join()
            .unwrap_or_else(|_| Err(CniError::new(Code::Io, "IPAM thread panicked")));
        (lease, veth, host)
    });
    let wired = match (&lease, veth, host) {
        (Ok(lease), Ok(veth), Ok(mut host)) => {
            bridge::attach(&mut host, conf, env, &netns, lease, veth)
                .and_then(|result| masq::add(conf, env, &lease.allocs).map(|()| result))
                .and_then(|result| policy::place(conf, env, &result).map(|()| result))
        }
        // An IPAM error is the more telling one (an exhausted pool, say).
        (Err(e), _, _) => Err(e.clone()),
        (Ok(_), Err(e), _) | (Ok(_), Ok(_), Err(e)) => Err(e),
    };
    wired.inspect_err(|e| {
        tracing::warn!("ADD failed, rolling back: {}", e.msg);
        policy::forget(conf, env);
        let mut undone = bridge::detach(env).and_then(|()| masq::remove(conf, env));
        // Only what this ADD took is given back; a retried ADD of a live
        // attachment keeps its address for the DEL that follows.
        if let Ok(lease) = &lease {
            undone = undone.and_then(|()| ipam::undo(conf, env, stdin, lease));
        }
        if let Err(undo) = undone {
            tracing::error!("rollback failed: {}", undo.msg);
        }
    })
}
