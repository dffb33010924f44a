//! Facts about this node: its name, underlay address and MTU, and the
//! files and sysctls the agent owns in it.

use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use ipnet::IpNet;
use podnet_core::subnet_file::SubnetFile;
use podnet_linux::files::write_private_atomic;
use podnet_linux::netlink::{Link, Netlink};
use podnet_linux::sysctl;

use crate::Args;

pub fn name(args: &Args) -> Result<String> {
    match &args.node_name {
        Some(n) => Ok(n.clone()),
        None => Ok(nix::unistd::gethostname()?
            .into_string()
            .map_err(|_| anyhow!("the hostname is not UTF-8"))?),
    }
}

/// The underlay address and the link that carries it.
pub fn public_ip(args: &Args, nl: &mut Netlink) -> Result<(IpAddr, Link)> {
    let addrs = nl.all_addresses()?;
    let link_of = |nl: &mut Netlink, index: u32| -> Result<Link> {
        nl.link_by_index(index)?
            .ok_or_else(|| anyhow!("link {index} vanished"))
    };
    if let Some(ip) = args.public_ip {
        let index = link_holding(&addrs, ip, "--public-ip")?;
        return Ok((ip, link_of(nl, index)?));
    }
    let link = match &args.iface {
        Some(name) => nl
            .link(name)?
            .ok_or_else(|| anyhow!("--iface {name}: no such interface"))?,
        None => nl
            .default_route_link()?
            .ok_or_else(|| anyhow!("no default route: pass --public-ip or --iface"))?,
    };
    let ip = addrs
        .iter()
        .filter(|(i, a)| *i == link.index && a.addr().is_ipv4())
        .map(|(_, a)| a.addr())
        .next()
        .ok_or_else(|| anyhow!("interface {} has no IPv4 address", link.name))?;
    Ok((ip, link))
}

/// The index of the link that holds `ip`, given every address of the node.
pub fn link_holding(addrs: &[(u32, IpNet)], ip: IpAddr, flag: &str) -> Result<u32> {
    addrs
        .iter()
        .find(|(_, a)| a.addr() == ip)
        .map(|(index, _)| *index)
        .ok_or_else(|| anyhow!("{flag} {ip} is not an address of this node"))
}

/// A router forwards; the agent turns it on in its own node only.
pub fn enable_forwarding(v6: bool) -> Result<()> {
    sysctl::write("net/ipv4/ip_forward", "1")?;
    if v6 {
        sysctl::write("net/ipv6/conf/all/forwarding", "1")?;
    }
    Ok(())
}

/// Writes `<run-dir>/subnet.json` atomically, mode 0600.
pub fn write_subnet_file(run_dir: &Path, file: &SubnetFile) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(run_dir)
        .with_context(|| format!("create {}", run_dir.display()))?;
    let target = run_dir.join("subnet.json");
    write_private_atomic(&target, &serde_json::to_vec_pretty(file)?)
        .with_context(|| format!("write {}", target.display()))
}

/// The cluster must not contain the node's own address: routes to pods
/// would swallow the underlay.
pub fn check_no_overlap(cidrs: &[ipnet::IpNet], ip: IpAddr) -> Result<()> {
    if let Some(net) = cidrs.iter().find(|n| n.contains(&ip)) {
        bail!("net-conf: Network {net} overlaps this node's address {ip}");
    }
    Ok(())
}
