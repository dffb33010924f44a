//! CHECK: the attachment still matches what ADD reported.

use podnet_core::cni::{CniError, Code, Env, NetConf};

use super::{attachment, open_netns, store};
use crate::bridge;

pub fn check(conf: &NetConf, env: &Env) -> Result<(), CniError> {
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::config("prevResult is required for CHECK"))?;
    let netns = open_netns(env)?;
    let held = store(conf)?.load()?.owned_by(&attachment(env));
    if held.is_empty() {
        return Err(CniError::new(
            Code::UnknownContainer,
            format!(
                "no addresses are allocated to container {} ifname {}",
                env.container_id, env.ifname
            ),
        ));
    }
    for ip in &prev.ips {
        if !held.contains(&ip.address.addr()) {
            return Err(CniError::new(
                Code::CheckFailed,
                format!(
                    "address {} from prevResult is not allocated to this container",
                    ip.address
                ),
            ));
        }
    }
    bridge::verify(conf, env, &netns, prev)
}
