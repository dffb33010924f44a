//! Facts about this node: its name, underlay address and MTU, and the
//! files and sysctls the agent owns in it.

use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use ipnet::IpNet;
use podnet_core::subnet_file::SubnetFile;
use podnet_linux::files::write_private_atomic;
use podnet_linux::ipam_store::IpamStore;
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

/// A router forwards; the agent turns it on in its own node only. A key
/// that is on already is not written: in a container that is not
/// privileged /proc/sys is read-only, and the node (kubeadm's
/// prerequisites, or a sysctl.d file) turns forwarding on instead.
pub fn enable_forwarding(v6: bool) -> Result<()> {
    let mut keys = vec!["net/ipv4/ip_forward"];
    if v6 {
        keys.push("net/ipv6/conf/all/forwarding");
    }
    for key in keys {
        if sysctl::read(key).is_ok_and(|v| v.trim() == "1") {
            continue;
        }
        sysctl::write(key, "1").with_context(|| {
            format!(
                "{key} is off and cannot be turned on here (read-only /proc/sys: \
                 an unprivileged container); set {} = 1 on the node",
                key.replace('/', ".")
            )
        })?;
    }
    Ok(())
}

/// Reads and checks the CNI conflist `src`, before anything is written.
pub fn read_conflist(src: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(src).with_context(|| format!("--cni-conflist {}", src.display()))?;
    podnet_core::cni::conflist::check_conflist(&raw)
        .map_err(|e| anyhow!("--cni-conflist {}: {e}", src.display()))?;
    Ok(raw)
}

/// Installs conflist `raw` as `dir/name` (written beside it and renamed):
/// once this node's subnet file is written, so the runtime reports the
/// network ready only when it is.
pub fn install_conflist(raw: &[u8], dir: &Path, name: &str) -> Result<()> {
    let done = podnet_linux::files::install_conflist(dir, name, raw)
        .with_context(|| dir.join(name).display().to_string())?;
    if done.written {
        tracing::info!(conflist = %dir.join(name).display(), "CNI conflist installed");
    }
    for path in &done.removed {
        tracing::info!(conflist = %path.display(), "an earlier release's conflist removed");
    }
    if !done.ahead.is_empty() {
        tracing::warn!(
            dir = %dir.display(),
            configs = ?done.ahead,
            "a runtime loads the first CNI config by name: these come before {name}, so pods here get their network, not podnet's; remove them"
        );
    }
    Ok(())
}

/// Makes the run dir (mode 0700) if it is not there.
pub fn make_run_dir(run_dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(run_dir)
        .with_context(|| format!("create {}", run_dir.display()))
}

/// Writes `<run-dir>/subnet.json` atomically, mode 0600.
pub fn write_subnet_file(run_dir: &Path, file: &SubnetFile) -> Result<()> {
    make_run_dir(run_dir)?;
    let target = run_dir.join("subnet.json");
    write_private_atomic(&target, &serde_json::to_vec_pretty(file)?)
        .with_context(|| format!("write {}", target.display()))
}

/// Names each pod whose address lies outside this node's subnets (`own`):
/// it is on a subnet the node held before, and has no way out until it
/// is recreated.
pub fn name_pods_outside(ipam_dir: &Path, own: &[IpNet]) {
    for net in std::fs::read_dir(ipam_dir).into_iter().flatten().flatten() {
        let Ok(state) = IpamStore::open(&net.path()).and_then(|s| s.load()) else {
            continue;
        };
        for (ip, who) in &state.allocations {
            if !own.iter().any(|s| s.contains(ip)) {
                tracing::warn!(
                    network = %net.file_name().to_string_lossy(),
                    container = %who.container_id,
                    ifname = %who.ifname,
                    %ip,
                    "pod on the old subnet: it has no way out until it is recreated"
                );
            }
        }
    }
}

/// The cluster must not contain the node's own address: routes to pods
/// would swallow the underlay.
pub fn check_no_overlap(cidrs: &[ipnet::IpNet], ip: IpAddr) -> Result<()> {
    if let Some(net) = cidrs.iter().find(|n| n.contains(&ip)) {
        bail!("net-conf: Network {net} overlaps this node's address {ip}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conflist_goes_in_whole_and_a_bad_one_is_refused() {
        use podnet_core::cni::conflist::{CONFLIST_NAME, DEFAULT_CONFLIST};
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src.conflist");
        let dir = tmp.path().join("net.d");
        let target = dir.join(CONFLIST_NAME);
        std::fs::write(&src, DEFAULT_CONFLIST).unwrap();
        install_conflist(&read_conflist(&src).unwrap(), &dir, CONFLIST_NAME).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), DEFAULT_CONFLIST);
        std::fs::write(&src, r#"{"name":"podnet"}"#).unwrap();
        let err = read_conflist(&src).unwrap_err().to_string();
        assert!(err.contains("--cni-conflist"), "{err}");
    }

    #[test]
    fn an_upgrade_removes_the_former_conflist_and_leaves_anothers() {
        use podnet_core::cni::conflist::{CONFLIST_NAME, DEFAULT_CONFLIST};
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("net.d");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("10-podnet.conflist"), DEFAULT_CONFLIST).unwrap();
        std::fs::write(dir.join("10-flannel.conflist"), "{}").unwrap();
        std::fs::write(dir.join("01-other.conf"), "{}").unwrap();
        let raw = DEFAULT_CONFLIST.as_bytes();
        install_conflist(raw, &dir, CONFLIST_NAME).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["01-other.conf", CONFLIST_NAME, "10-flannel.conflist"]
        );
        // Another's file of a former name stays.
        let other = r#"{"name":"x","plugins":[{"type":"bridge"}]}"#;
        std::fs::write(dir.join("10-podnet.conflist"), other).unwrap();
        install_conflist(raw, &dir, CONFLIST_NAME).unwrap();
        assert!(dir.join("10-podnet.conflist").exists());
    }
}
