//! GC (CNI 1.1): release everything of this network whose attachment the
//! runtime no longer lists. Only podnet's own allocations, host veths on
//! this network's bridge and masquerade rules tagged for this network are
//! candidates.

use podnet_core::cni::{CniError, Env, NetConf};
use podnet_core::names::host_veth_name;

use crate::{bridge, ipam, masq};

pub fn gc(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<(), CniError> {
    let Some(valid) = &conf.valid_attachments else {
        return Err(CniError::config(
            "GC needs cni.dev/valid-attachments (or cni.dev/attachments)",
        ));
    };
    let keep: Vec<String> = valid
        .iter()
        .map(|a| host_veth_name(&a.container_id, &a.ifname))
        .collect();
    let swept = bridge::sweep(conf, &keep)?;
    tracing::info!(?swept, "gc removed host veths");
    masq::sweep(conf, &keep)?;
    ipam::gc(conf, env, stdin, valid)
}
