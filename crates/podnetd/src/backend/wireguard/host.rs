//! The devices on a node: made (the kernel's, else a wireguard-go podnetd
//! starts and supervises), adopted, configured; for [`Host`].

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use podnet_linux::netlink::{Change, Netlink};
use wireguard_uapi::xplatform;

use super::configure::{
    Configure, UserspaceDevice, configurator, device_link, peer_state, socket_path,
};
use super::{
    DeviceSpec, PeerOp, PeerState, SOCKET_DIR, START_CAP, Source, Tunnels, source, userspace_binary,
};
use crate::backend::ensure_address;
use crate::kernel::Host;

/// Makes the device: the kernel's if it has WireGuard, else wireguard-go.
fn make(nl: &mut Netlink, spec: &DeviceSpec<'_>) -> Result<()> {
    let kernel = match nl.create_link(spec.name, "wireguard", spec.mtu) {
        Ok(()) => true,
        Err(e) if e.errno() == Some(Errno::EOPNOTSUPP) => false,
        Err(e) => return Err(e.into()),
    };
    match source(kernel, userspace_binary(), spec.name)? {
        Source::Kernel => {
            tracing::info!(device = spec.name, "WireGuard device made (the kernel's)")
        }
        Source::Userspace(binary) => start_userspace(&binary, spec.name)?,
    }
    Ok(())
}

/// Starts wireguard-go for `device` in a process group of its own, so the
/// tunnel outlives podnetd (a restart adopts it), and waits for its socket.
fn start_userspace(binary: &Path, device: &str) -> Result<()> {
    std::fs::create_dir_all(SOCKET_DIR).with_context(|| SOCKET_DIR.to_owned())?;
    let mut child = Command::new(binary)
        .args(["-f", device])
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let pid = child.id();
    // Reaped when it exits (its device deleted, or killed); podnetd's next
    // reconcile starts another.
    std::thread::spawn(move || {
        let status = child.wait();
        tracing::info!(pid, ?status, "wireguard-go exited");
    });
    let started = Instant::now();
    let mut client = UserspaceDevice(xplatform::Client::create(socket_path(device)));
    while client.get().is_err() {
        if started.elapsed() > START_CAP {
            bail!(
                "wireguard-go (pid {pid}) did not answer on {} within {START_CAP:?}",
                socket_path(device).display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::info!(
        device,
        pid,
        binary = %binary.display(),
        "WireGuard device made (wireguard-go: this kernel has no WireGuard)"
    );
    Ok(())
}

impl Tunnels for Host {
    fn ensure_tunnel(&mut self, spec: &DeviceSpec<'_>) -> Result<u32> {
        let nl = &mut self.nl;
        // A device that answers is adopted, whoever made it.
        let live = nl.link(spec.name)?.and_then(|link| {
            let mut conf = configurator(&link)?;
            let now = conf.get().ok()?;
            Some((link, conf, now))
        });
        let (link, mut conf, now) = match live {
            Some(live) => live,
            None => {
                if let Some(stale) = nl.link(spec.name)? {
                    tracing::warn!(device = spec.name, kind = ?stale.kind, "not a live WireGuard device: made again");
                    nl.delete_link(stale.index)?;
                }
                make(nl, spec)?;
                warn_if_strict_rp_filter(spec.name);
                let (link, mut conf) = device_link(nl, spec.name)?;
                let now = conf.get()?;
                (link, conf, now)
            }
        };
        if now.private_key != Some(spec.private_key) || now.listen_port != spec.port {
            conf.set_device(&spec.private_key, spec.port)
                .with_context(|| {
                    format!(
                        "Backend.{} {} on {}: is another process using UDP port {}?",
                        spec.port_field, spec.port, spec.name, spec.port
                    )
                })?;
        }
        if link.mtu != spec.mtu {
            nl.apply(&[Change::set_mtu(link.index, spec.mtu)])?;
        }
        for subnet in &spec.subnets {
            ensure_address(nl, &link, *subnet)?;
        }
        Ok(link.index)
    }

    fn tunnel_peers(&mut self, device: &str) -> Result<Vec<PeerState>> {
        let (_, mut conf) = device_link(&mut self.nl, device)?;
        Ok(conf.get()?.peers.iter().map(peer_state).collect())
    }

    fn apply_tunnel(&mut self, device: &str, ops: &[PeerOp]) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let (_, mut conf) = device_link(&mut self.nl, device)?;
        conf.set_peers(ops)
    }
}

/// A pod's traffic to another node's address reaches it without NAT, and
/// the reply comes back through the tunnel: strict reverse-path
/// filtering (1) on the device drops it, loose (2) or none (0) does not.
fn warn_if_strict_rp_filter(device: &str) {
    let read = |scope: &str| {
        podnet_linux::sysctl::read(&format!("net/ipv4/conf/{scope}/rp_filter"))
            .ok()
            .and_then(|v| v.trim().parse::<u8>().ok())
            .unwrap_or(0)
    };
    if read("all").max(read(device)) == 1 {
        tracing::warn!(
            device,
            "rp_filter is strict (1) here: replies from other nodes to this node's pods are \
             dropped; set net.ipv4.conf.all.rp_filter and net.ipv4.conf.{device}.rp_filter to 2"
        );
    }
}
