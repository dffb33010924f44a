//! `ipMasq`: pods' traffic leaving their subnet is masqueraded, with one
//! tagged rule per pod address in podnet's own nftables table.

use podnet_core::cni::{CniError, Env, NetConf};
use podnet_core::ipam::Allocation;
use podnet_core::names::host_veth_name;
use podnet_linux::nft::masq::{self as nft, MasqRule};

use crate::bridge::kernel;

fn tag(conf: &NetConf, env: &Env) -> String {
    nft::tag(&conf.name, &host_veth_name(&env.container_id, &env.ifname))
}

pub fn add(conf: &NetConf, env: &Env, allocs: &[Allocation]) -> Result<(), CniError> {
    if !conf.ip_masq {
        return Ok(());
    }
    let tag = tag(conf, env);
    let rules: Vec<MasqRule> = allocs
        .iter()
        .map(|a| MasqRule {
            source: a.address.addr(),
            exclude: a.address.trunc(),
            tag: tag.clone(),
        })
        .collect();
    nft::add_masquerade(&rules).map_err(kernel)
}

pub fn remove(conf: &NetConf, env: &Env) -> Result<(), CniError> {
    if !conf.ip_masq {
        return Ok(());
    }
    nft::remove_masquerade(&tag(conf, env)).map_err(kernel)
}

/// GC: removes this network's rules whose host veth is not in `keep`.
pub fn sweep(conf: &NetConf, keep: &[String]) -> Result<(), CniError> {
    if !conf.ip_masq {
        return Ok(());
    }
    let tags: Vec<String> = keep.iter().map(|veth| nft::tag(&conf.name, veth)).collect();
    let prefix = nft::tag(&conf.name, "");
    nft::remove_tagged(|t| t.starts_with(&prefix) && !tags.iter().any(|k| k == t)).map_err(kernel)
}
