//! IPAM for one attachment, built in or delegated to a plugin in CNI_PATH.
//! Callers see one interface either way.

use std::net::IpAddr;

use podnet_core::cni::config::IpamKind;
use podnet_core::cni::result::Route;
use podnet_core::cni::{CniError, CniResult, Code, Env, NetConf};
use podnet_core::ipam::addr::first_host;
use podnet_core::ipam::{Allocation, Attachment};
use podnet_core::subnet_file::SubnetFile;
use serde_json::Value;

use crate::{delegate, pool_source};
use podnet_linux::failpoint;
use podnet_linux::ipam_store::IpamStore;

/// What IPAM gave one attachment.
pub struct Lease {
    pub allocs: Vec<Allocation>,
    /// Extra pod routes (besides the default routes).
    pub routes: Vec<Route>,
    pub dns: Option<Value>,
    /// True if this call took the addresses (not a repeated ADD).
    fresh: bool,
}

pub fn attachment(env: &Env) -> Attachment {
    Attachment {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
    }
}

pub fn store(conf: &NetConf) -> Result<IpamStore, CniError> {
    IpamStore::open(&conf.ipam.state_dir)
}

/// `file` is the node's subnet file, read once by the caller.
pub fn allocate(
    conf: &NetConf,
    env: &Env,
    stdin: &[u8],
    file: Option<&SubnetFile>,
) -> Result<Lease, CniError> {
    match &conf.ipam.kind {
        IpamKind::Builtin => {
            let pool = pool_source::pool(conf, file)?;
            let who = attachment(env);
            let lease = store(conf)?.transact(|state| {
                let fresh = state.owned_by(&who).is_empty();
                Ok(Lease {
                    allocs: state.allocate(&pool, &who, &conf.runtime.ips)?,
                    routes: conf.ipam.routes.clone(),
                    dns: conf.dns.clone(),
                    fresh,
                })
            });
            failpoint::hit("add-after-ipam-write");
            lease
        }
        IpamKind::Delegated { plugin, .. } => {
            let out = delegate::exec(plugin, "ADD", env, stdin)?.ok_or_else(|| {
                CniError::new(Code::Io, format!("IPAM plugin {plugin} returned no result"))
            })?;
            let result: CniResult = serde_json::from_value(out).map_err(|e| {
                CniError::new(
                    Code::Decode,
                    format!("IPAM plugin {plugin}: bad result: {e}"),
                )
            })?;
            lease_from(result, conf)
        }
    }
}

/// A delegated plugin's result as a lease. A missing gateway means the
/// subnet's first host, as the reference bridge plugin assumes.
fn lease_from(result: CniResult, conf: &NetConf) -> Result<Lease, CniError> {
    if result.ips.is_empty() {
        return Err(CniError::new(Code::Io, "IPAM plugin returned no addresses"));
    }
    let allocs = result
        .ips
        .iter()
        .map(|ip| Allocation {
            address: ip.address,
            gateway: ip
                .gateway
                .unwrap_or_else(|| first_host(&ip.address.trunc())),
        })
        .collect();
    Ok(Lease {
        allocs,
        routes: result.routes,
        dns: result.dns.or_else(|| conf.dns.clone()),
        fresh: true,
    })
}

/// Gives back what `allocate` took, after a failed ADD.
pub fn undo(conf: &NetConf, env: &Env, stdin: &[u8], lease: &Lease) -> Result<(), CniError> {
    if lease.fresh {
        release(conf, env, stdin)
    } else {
        Ok(())
    }
}

pub fn release(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<(), CniError> {
    match &conf.ipam.kind {
        IpamKind::Builtin => {
            let who = attachment(env);
            let freed = store(conf)?.transact(|state| Ok(state.release(&who)))?;
            tracing::info!(?freed, "released");
            Ok(())
        }
        IpamKind::Delegated { plugin, .. } => delegate::exec(plugin, "DEL", env, stdin).map(drop),
    }
}

/// The addresses IPAM holds for this attachment (CHECK).
pub fn check(conf: &NetConf, env: &Env, stdin: &[u8], prev: &CniResult) -> Result<(), CniError> {
    match &conf.ipam.kind {
        IpamKind::Builtin => {
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
            let missing: Vec<IpAddr> = prev
                .ips
                .iter()
                .map(|ip| ip.address.addr())
                .filter(|ip| !held.contains(ip))
                .collect();
            match missing.first() {
                None => Ok(()),
                Some(ip) => Err(CniError::new(
                    Code::CheckFailed,
                    format!("address {ip} from prevResult is not allocated to this container"),
                )),
            }
        }
        IpamKind::Delegated { plugin, .. } => delegate::exec(plugin, "CHECK", env, stdin).map(drop),
    }
}

/// STATUS: code 50 when no pool is known or it is exhausted.
pub fn status(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<(), CniError> {
    match &conf.ipam.kind {
        IpamKind::Builtin => {
            let unavailable = |msg: String| CniError::new(Code::NotAvailable, msg);
            let file = pool_source::subnet_file(conf)?;
            let pool = pool_source::pool(conf, file.as_ref()).map_err(|e| unavailable(e.msg))?;
            if !store(conf)?.load()?.has_capacity(&pool) {
                return Err(unavailable(format!(
                    "the address pool of network {} is exhausted",
                    conf.name
                )));
            }
            Ok(())
        }
        IpamKind::Delegated { plugin, .. } => delegate_1_1(plugin, "STATUS", env, stdin),
    }
}

/// GC: frees every allocation whose attachment is not in `valid`.
pub fn gc(conf: &NetConf, env: &Env, stdin: &[u8], valid: &[Attachment]) -> Result<(), CniError> {
    match &conf.ipam.kind {
        IpamKind::Builtin => {
            let freed =
                store(conf)?.transact(|state| Ok(state.release_unless(|a| valid.contains(a))))?;
            tracing::info!(?freed, "gc released");
            Ok(())
        }
        IpamKind::Delegated { plugin, .. } => delegate_1_1(plugin, "GC", env, stdin),
    }
}

/// Runs a CNI 1.1 command (STATUS, GC) on a delegated plugin. A plugin
/// that does not list 1.1.0 in VERSION, or answers code 4 (unknown
/// command), does not support it: that is "nothing to do", not "broken".
fn delegate_1_1(plugin: &str, command: &str, env: &Env, stdin: &[u8]) -> Result<(), CniError> {
    let info = delegate::exec(plugin, "VERSION", env, br#"{"cniVersion":"1.1.0"}"#)?;
    let speaks_1_1 = info
        .as_ref()
        .and_then(|v| v.get("supportedVersions")?.as_array().cloned())
        .is_some_and(|vs| vs.iter().any(|v| v == "1.1.0"));
    if !speaks_1_1 {
        tracing::info!("IPAM plugin {plugin} predates CNI 1.1: skipping {command}");
        return Ok(());
    }
    match delegate::exec(plugin, command, env, stdin) {
        Err(e) if e.code == Code::InvalidEnv => {
            tracing::info!("IPAM plugin {plugin} does not support {command}: {}", e.msg);
            Ok(())
        }
        other => other.map(drop),
    }
}
