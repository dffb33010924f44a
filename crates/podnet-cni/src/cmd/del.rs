//! DEL: remove the veth, its masquerade rules and the addresses.
//! Idempotent, and it succeeds without a netns or a prevResult: the runtime
//! may call it twice, the second time with an empty CNI_NETNS.

use podnet_core::cni::{CniError, Env, NetConf};

use crate::{bridge, ipam, masq, policy};

pub fn del(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<(), CniError> {
    policy::forget(conf, env);
    bridge::detach(env)?;
    podnet_linux::failpoint::hit("del-halfway");
    masq::remove(conf, env)?;
    ipam::release(conf, env, stdin)
}
