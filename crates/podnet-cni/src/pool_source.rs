//! What the plugin learns about its node: the pool to allocate from and the
//! MTU, from the config first and the agent's subnet file second.

use std::io;

use ipnet::IpNet;

use podnet_core::cni::{CniError, Code, NetConf};
use podnet_core::ipam::Pool;
use podnet_core::subnet_file::SubnetFile;
use podnet_linux::netlink::Netlink;
use podnet_linux::presence;

const FALLBACK_MTU: u32 = 1500;

/// The agent's subnet file, if it has written one.
pub fn subnet_file(conf: &NetConf) -> Result<Option<SubnetFile>, CniError> {
    let path = &conf.subnet_file;
    match std::fs::read_to_string(path) {
        // Cut short or damaged: podnetd rewrites it at its next resync.
        Ok(raw) => SubnetFile::parse(&raw).map(Some).map_err(|e| {
            CniError::new(
                Code::TryAgainLater,
                format!(
                    "subnetFile {} is unreadable ({e}); podnetd rewrites it within a resync",
                    path.display()
                ),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CniError::new(
            Code::Io,
            format!("subnetFile {}: {e}", path.display()),
        )),
    }
}

/// Refuses an ADD (code 11, try again later) while the podnetd that
/// serves this node is not running: its subnet file may be stale, and a
/// pod attached now would have no routes to its peers. A node where no
/// podnetd ever ran (no lock beside the subnet file) is not checked.
pub fn check_agent(conf: &NetConf) -> Result<(), CniError> {
    let dir = conf
        .subnet_file
        .parent()
        .unwrap_or(std::path::Path::new("/"));
    match presence::agent_running(dir) {
        Ok(Some(false)) => Err(CniError::new(
            Code::TryAgainLater,
            format!(
                "podnetd is not running on this node (its lock {} is free); pods are attached \
                 once it is back",
                dir.join(presence::LOCK_FILE).display()
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(CniError::new(
            Code::Io,
            format!("{}: {e}", dir.join(presence::LOCK_FILE).display()),
        )),
    }
}

/// Ranges in the `ipam` section win; otherwise the node's leased subnets.
/// With neither, the node is not ready yet: code 11, try again later.
pub fn pool(conf: &NetConf, file: Option<&SubnetFile>) -> Result<Pool, CniError> {
    if let Some(pool) = &conf.ipam.pool {
        if let Some(f) = file {
            check_inside_lease(pool, f, conf)?;
        }
        return Ok(pool.clone());
    }
    match file {
        Some(f) if !f.node_subnets.is_empty() => Pool::from_conf(&f.range_sets(), |i, _| {
            format!("subnetFile {} nodeSubnets[{i}]", conf.subnet_file.display())
        })
        .map_err(CniError::from),
        _ => Err(CniError::new(
            Code::TryAgainLater,
            format!(
                "no pod subnet known yet: ipam has no ranges and {} does not exist \
                 (is podnetd running on this node?)",
                conf.subnet_file.display()
            ),
        )),
    }
}

/// Configured ranges must lie inside the subnets this node leased: an
/// address outside them would collide with another node's pods.
fn check_inside_lease(pool: &Pool, file: &SubnetFile, conf: &NetConf) -> Result<(), CniError> {
    let leased: Vec<IpNet> = file
        .node_subnets
        .iter()
        .filter_map(|r| r.subnet.parse().ok())
        .collect();
    if leased.is_empty() {
        return Ok(());
    }
    for range in pool.sets.iter().flat_map(|s| s.ranges.iter()) {
        let same_family: Vec<&IpNet> = leased
            .iter()
            .filter(|l| l.addr().is_ipv4() == range.subnet.addr().is_ipv4())
            .collect();
        if !same_family.is_empty() && !same_family.iter().any(|l| l.contains(&range.subnet)) {
            let names: Vec<String> = same_family.iter().map(ToString::to_string).collect();
            return Err(CniError::config(format!(
                "ipam range {} is outside this node's leased subnet {} (from subnetFile {})",
                range.subnet,
                names.join(", "),
                conf.subnet_file.display()
            )));
        }
    }
    Ok(())
}

/// `mtu` from the config, else the subnet file's, else the MTU of the
/// node's default-route interface, else 1500.
pub fn mtu(conf: &NetConf, file: Option<&SubnetFile>, host: &mut Netlink) -> u32 {
    conf.mtu
        .or_else(|| file.and_then(|f| f.mtu))
        .or_else(|| host.default_route_mtu().ok().flatten())
        .unwrap_or(FALLBACK_MTU)
}
