//! wireguard: a device per entry of `DEVICES` the mode wants, and on each
//! one peer per node. The device is the kernel's where it has WireGuard;
//! otherwise a userspace `wireguard-go`, which podnetd starts (and starts
//! again should it die), or adopts: after a restart of podnetd, or when it
//! runs beside podnetd (the DaemonSet's own container for it). Peers are
//! configured through one trait, [`Configure`], with two thin sides from
//! the wireguard-uapi crate: generic netlink for the kernel's device, the
//! UAPI socket for wireguard-go's. The private key lives in `--state-dir`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ipnet::IpNet;
use nix::errno::Errno;
use podnet_core::cluster::backend::Decide;
use podnet_core::cluster::backend::wireguard::{
    DEVICES, Key, Peer, Peers, Wireguard, format_key, parse_key, public_key,
};
use podnet_core::cluster::desired::{Datapath, family_index};
use podnet_core::cluster::lease::LeaseAttrs;
use podnet_linux::netlink::{Change, Link, Netlink};
use wireguard_uapi::{DeviceInterface, WgSocket, get, linux, xplatform};

use super::{Apply, Node, Overlay, ensure_address};
use crate::kernel::Host;

/// This node's private key, in `--state-dir`.
pub const KEY_FILE: &str = "wireguard.key";
/// Where wireguard-go opens its UAPI sockets (fixed when it is built).
pub const SOCKET_DIR: &str = "/var/run/wireguard";
/// The wireguard-go podnetd may start: a path, or `off` when it runs
/// beside podnetd instead (default: `wireguard-go` from `PATH`).
pub const USERSPACE_ENV: &str = "PODNET_WIREGUARD_GO";
/// How long a started wireguard-go has to open its socket.
const START_CAP: Duration = Duration::from_secs(5);

/// A device as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec<'a> {
    pub name: &'a str,
    pub private_key: Key,
    pub port: u16,
    /// Its net-conf field, for an error about the port.
    pub port_field: &'static str,
    pub mtu: u32,
    /// The node subnets whose network address the device holds.
    pub subnets: Vec<IpNet>,
}

/// A peer as a device holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    pub key: Key,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub keepalive: u16,
    pub psk: Option<Key>,
}

/// One change to a device's peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOp {
    /// Add the peer, or make it this (its allowed IPs replaced).
    Set(PeerState),
    Remove(Key),
}

/// The WireGuard devices as the agent sees them.
pub trait Tunnels {
    /// Makes, adopts or repairs `spec`'s device (its key, port, MTU,
    /// addresses, up); returns its index.
    fn ensure_tunnel(&mut self, spec: &DeviceSpec<'_>) -> Result<u32>;
    fn tunnel_peers(&mut self, device: &str) -> Result<Vec<PeerState>>;
    fn apply_tunnel(&mut self, device: &str, ops: &[PeerOp]) -> Result<()>;
}

impl<K: Tunnels> Apply<K> for Wireguard {
    fn identity(&self, node: &Node) -> Result<Option<String>> {
        let key = load_or_make_key(&node.state_dir)?;
        Ok(Some(format_key(&public_of(&key))))
    }

    fn ensure_devices(
        &self,
        k: &mut K,
        me: &LeaseAttrs,
        node: &Node,
        subnets: &[IpNet],
    ) -> Result<Overlay> {
        let path = key_path(&node.state_dir);
        let private_key = read_key(&path)?.ok_or_else(|| {
            anyhow!(
                "{} is gone: restart podnetd to make and announce a new key",
                path.display()
            )
        })?;
        let announced = [true, false].into_iter().find_map(|v4| public_key(me, v4));
        if announced != Some(public_of(&private_key)) {
            bail!(
                "the key in {} is not the one this node's lease announces: restart podnetd to announce it",
                path.display()
            );
        }
        let mut overlay = Overlay::default();
        for (device, name) in DEVICES.iter().enumerate() {
            let own: Vec<IpNet> = subnets
                .iter()
                .filter(|s| self.device_of(s.addr().is_ipv4()) == device)
                .copied()
                .collect();
            let Some(overhead) = own.iter().map(|s| self.overhead(s.addr().is_ipv4())).max() else {
                continue;
            };
            let spec = DeviceSpec {
                name,
                private_key,
                port: self.port_of(device),
                port_field: if device == 1 {
                    "ListenPortV6"
                } else {
                    "ListenPort"
                },
                mtu: node.mtu.saturating_sub(overhead),
                subnets: own.clone(),
            };
            let index = k.ensure_tunnel(&spec)?;
            for s in own {
                overlay[family_index(s.addr().is_ipv4())] = Some(index);
            }
        }
        Ok(overlay)
    }

    fn reconcile_entries(&self, k: &mut K, overlay: &Overlay, want: &Datapath) -> Result<usize> {
        let none = Peers::default();
        let want = want.objects::<Peers>().unwrap_or(&none);
        let (mut changed, mut first_error) = (0, None);
        for (device, name) in DEVICES.iter().enumerate() {
            let present = [true, false]
                .into_iter()
                .any(|v4| self.device_of(v4) == device && overlay[family_index(v4)].is_some());
            if !present {
                continue;
            }
            let result = k.tunnel_peers(name).and_then(|have| {
                let ops = plan(&want.devices[device], self, &have);
                k.apply_tunnel(name, &ops).map(|()| ops.len())
            });
            match result {
                Ok(n) => changed += n,
                Err(e) => {
                    first_error.get_or_insert(e.context(format!("peers of {name}")));
                }
            }
        }
        first_error.map_or(Ok(changed), Err)
    }

    fn unwatched(&self) -> bool {
        true
    }
}

/// What to change on a device so that it holds exactly the peers wanted,
/// each with the cluster's keepalive and pre-shared key.
pub fn plan(want: &BTreeMap<Key, Peer>, settings: &Wireguard, have: &[PeerState]) -> Vec<PeerOp> {
    let have: BTreeMap<Key, &PeerState> = have.iter().map(|p| (p.key, p)).collect();
    let mut ops: Vec<PeerOp> = want
        .iter()
        .map(|(key, p)| PeerState {
            key: *key,
            endpoint: Some(p.endpoint),
            allowed_ips: p.allowed_ips.iter().copied().collect(),
            keepalive: settings.keepalive(),
            psk: settings.psk(),
        })
        .filter(|p| have.get(&p.key) != Some(&p))
        .map(PeerOp::Set)
        .collect();
    ops.extend(
        have.keys()
            .filter(|k| !want.contains_key(*k))
            .map(|k| PeerOp::Remove(*k)),
    );
    ops
}

/// Where a device comes from, when it has to be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Kernel,
    Userspace(PathBuf),
}

/// The kernel's device if it has one, else wireguard-go if podnetd may
/// start one; else an error that says what is missing.
pub fn source(kernel: bool, userspace: Option<PathBuf>, device: &str) -> Result<Source> {
    match (kernel, userspace) {
        (true, _) => Ok(Source::Kernel),
        (false, Some(path)) => Ok(Source::Userspace(path)),
        (false, None) => bail!(
            "no WireGuard for {device}: this kernel has none (CONFIG_WIREGUARD, Linux 5.6 and \
             later), podnetd may start no wireguard-go ({USERSPACE_ENV}, else `wireguard-go` on \
             PATH), and none serves {SOCKET_DIR}/{device}.sock"
        ),
    }
}

/// The wireguard-go podnetd may start, from [`USERSPACE_ENV`] and `PATH`.
fn userspace_binary() -> Option<PathBuf> {
    match std::env::var_os(USERSPACE_ENV) {
        Some(v) if v == "off" => None,
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("wireguard-go"))
                .find(|p| p.is_file())
        }),
    }
}

fn key_path(state_dir: &Path) -> PathBuf {
    state_dir.join(KEY_FILE)
}

/// This node's private key: made once, kept 0600 across restarts and
/// reboots. A key another podnetd wrote first is the one kept.
fn load_or_make_key(state_dir: &Path) -> Result<Key> {
    let path = key_path(state_dir);
    if let Some(key) = read_key(&path)? {
        return Ok(key);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .with_context(|| format!("--state-dir {}", state_dir.display()))?;
    let text = format!("{}\n", format_key(&fresh_key()?));
    if podnet_linux::files::create_private_exclusive(&path, text.as_bytes())? {
        tracing::info!(path = %path.display(), "WireGuard key made");
    }
    read_key(&path)?.ok_or_else(|| anyhow!("{} vanished after it was written", path.display()))
}

/// The key in `path`, `None` if there is no file; a file that holds no
/// key is an error naming it.
fn read_key(path: &Path) -> Result<Option<Key>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_key(&text).map(Some).ok_or_else(|| {
            anyhow!(
                "{} is not a WireGuard private key (base64 of 32 bytes): remove it, and podnetd \
                 makes a new one",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!(e).context(path.display().to_string())),
    }
}

/// 32 random bytes, clamped as `wg genkey` clamps them.
fn fresh_key() -> Result<Key> {
    use std::io::Read;
    let mut key = Key::default();
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    key[0] &= 248;
    key[31] = (key[31] & 127) | 64;
    Ok(key)
}

fn public_of(private: &Key) -> Key {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*private)).to_bytes()
}

/// One device's configuration, whichever side holds it.
trait Configure {
    fn get(&mut self) -> Result<get::Device>;
    fn set_device(&mut self, private_key: &Key, port: u16) -> Result<()>;
    fn set_peers(&mut self, ops: &[PeerOp]) -> Result<()>;
}

/// The kernel's device, over generic netlink.
struct KernelDevice(String);

/// wireguard-go's device, over its UAPI socket.
struct UserspaceDevice(xplatform::Client<PathBuf>);

fn socket_path(device: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{device}.sock"))
}

impl Configure for KernelDevice {
    fn get(&mut self) -> Result<get::Device> {
        Ok(WgSocket::connect()?.get_device(DeviceInterface::from_name(self.0.as_str()))?)
    }

    fn set_device(&mut self, private_key: &Key, port: u16) -> Result<()> {
        let device = linux::set::Device::from_ifname(self.0.as_str())
            .private_key(private_key)
            .listen_port(port);
        Ok(WgSocket::connect()?.set_device(device)?)
    }

    fn set_peers(&mut self, ops: &[PeerOp]) -> Result<()> {
        let allowed: Vec<Vec<std::net::IpAddr>> = ops
            .iter()
            .map(|op| match op {
                PeerOp::Set(p) => p.allowed_ips.iter().map(IpNet::network).collect(),
                PeerOp::Remove(_) => Vec::new(),
            })
            .collect();
        let peers = ops
            .iter()
            .zip(&allowed)
            .map(|(op, addrs)| match op {
                PeerOp::Set(p) => {
                    let mut peer = linux::set::Peer::from_public_key(&p.key)
                        .flags(vec![linux::set::WgPeerF::ReplaceAllowedIps])
                        .persistent_keepalive_interval(p.keepalive)
                        .allowed_ips(
                            p.allowed_ips
                                .iter()
                                .zip(addrs)
                                .map(|(net, addr)| linux::set::AllowedIp {
                                    ipaddr: addr,
                                    cidr_mask: Some(net.prefix_len()),
                                })
                                .collect(),
                        );
                    if let Some(endpoint) = &p.endpoint {
                        peer = peer.endpoint(endpoint);
                    }
                    peer.preshared_key(p.psk.as_ref().unwrap_or(&ZERO_KEY))
                }
                PeerOp::Remove(key) => linux::set::Peer::from_public_key(key)
                    .flags(vec![linux::set::WgPeerF::RemoveMe]),
            })
            .collect();
        let device = linux::set::Device::from_ifname(self.0.as_str()).peers(peers);
        Ok(WgSocket::connect()?.set_device(device)?)
    }
}

/// "No pre-shared key", as both sides write it.
const ZERO_KEY: Key = [0; 32];

impl Configure for UserspaceDevice {
    fn get(&mut self) -> Result<get::Device> {
        Ok(self.0.get()?)
    }

    fn set_device(&mut self, private_key: &Key, port: u16) -> Result<()> {
        let device = xplatform::set::Device {
            private_key: Some(*private_key),
            listen_port: Some(port),
            ..Default::default()
        };
        Ok(self.0.set(device)?)
    }

    fn set_peers(&mut self, ops: &[PeerOp]) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let peers = ops
            .iter()
            .map(|op| match op {
                PeerOp::Set(p) => {
                    let mut peer = xplatform::set::Peer::from_public_key(p.key)
                        .replace_allowed_ips(true)
                        .persistent_keepalive_interval(p.keepalive)
                        .preshared_key(p.psk.unwrap_or(ZERO_KEY))
                        .allowed_ips(
                            p.allowed_ips
                                .iter()
                                .map(|net| xplatform::set::AllowedIp {
                                    ipaddr: net.network(),
                                    cidr_mask: net.prefix_len(),
                                })
                                .collect(),
                        );
                    if let Some(endpoint) = p.endpoint {
                        peer = peer.endpoint(endpoint);
                    }
                    peer
                }
                PeerOp::Remove(key) => xplatform::set::Peer::from_public_key(*key).remove(true),
            })
            .collect();
        let device = xplatform::set::Device {
            peers,
            ..Default::default()
        };
        Ok(self.0.set(device)?)
    }
}

/// The side that configures `link`, by its kind: the kernel's WireGuard
/// device, or a TUN device (wireguard-go's, if one answers on its socket).
fn configurator(link: &Link) -> Option<Box<dyn Configure>> {
    match link.kind.as_deref() {
        Some("wireguard") => Some(Box::new(KernelDevice(link.name.clone()))),
        Some("tun") => Some(Box::new(UserspaceDevice(xplatform::Client::create(
            socket_path(&link.name),
        )))),
        _ => None,
    }
}

fn device_link(nl: &mut Netlink, device: &str) -> Result<(Link, Box<dyn Configure>)> {
    let link = nl
        .link(device)?
        .ok_or_else(|| anyhow!("{device} is gone"))?;
    let conf = configurator(&link).ok_or_else(|| anyhow!("{device} is not a WireGuard device"))?;
    Ok((link, conf))
}

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

fn peer_state(p: &get::Peer) -> PeerState {
    let mut allowed_ips: Vec<IpNet> = p
        .allowed_ips
        .iter()
        .filter_map(|a| IpNet::new(a.ipaddr, a.cidr_mask).ok())
        .collect();
    allowed_ips.sort();
    PeerState {
        key: p.public_key,
        endpoint: p.endpoint,
        allowed_ips,
        keepalive: p.persistent_keepalive_interval,
        psk: (p.preshared_key != ZERO_KEY).then_some(p.preshared_key),
    }
}

/// Removes both devices with their peers; a wireguard-go exits once its
/// device is gone.
pub fn cleanup(nl: &mut Netlink) -> Result<()> {
    for name in DEVICES {
        if let Some(link) = nl.link(name)? {
            nl.delete_link(link.index)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
