//! CHECK: the attachment still matches what ADD reported.

use podnet_core::cni::{CniError, Env, NetConf};

use super::open_netns;
use crate::{bridge, ipam};

pub fn check(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<(), CniError> {
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::config("prevResult is required for CHECK"))?;
    let netns = open_netns(env)?;
    ipam::check(conf, env, stdin, prev)?;
    bridge::verify(conf, env, &netns, prev)
}
