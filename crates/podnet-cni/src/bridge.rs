//! The datapath of one pod: the node bridge, the veth pair and the pod's
//! side of it. Pure decisions (names, MAC, routes) come from the core.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nix::errno::Errno;
use podnet_core::cni::result::{Interface, IpConfig, Route};
use podnet_core::cni::{CniError, CniResult, Code, Env, NetConf};
use podnet_core::guard::{GROUP_FWD_MASK, Port, link_local};
use podnet_core::ipam::Allocation;
use podnet_core::names::{
    HOST_VETH_PREFIX, bridge_mac, format_mac, host_veth_name, is_host_veth_name, pod_mac,
};
use podnet_linux::failpoint;
use podnet_linux::netlink::{Change, Link, Netlink, NetlinkError, PROTO_BOOT, RouteSpec, VethSpec};
use podnet_linux::netns::Netns;
use podnet_linux::nft::guard::{self, GuardError};
use podnet_linux::sysctl;

use crate::ipam::Lease;

/// Index of the pod's interface in the result's `interfaces`.
const POD_INTERFACE: usize = 2;

pub fn kernel(e: impl std::fmt::Display) -> CniError {
    CniError::new(Code::Kernel, e.to_string())
}

/// The routes a pod gets: a default route per family via its gateway, then
/// IPAM's extra routes (via the same-family gateway unless they name one).
pub fn pod_routes(default_gateway: bool, lease: &Lease) -> Result<Vec<Route>, CniError> {
    let allocs = &lease.allocs;
    let gateway_for = |ip: IpAddr| {
        allocs
            .iter()
            .find(|a| a.gateway.is_ipv4() == ip.is_ipv4())
            .map(|a| a.gateway)
    };
    let mut routes = Vec::new();
    if default_gateway {
        for a in allocs {
            let any = if a.gateway.is_ipv4() {
                IpNet::V4(Default::default())
            } else {
                IpNet::V6(Default::default())
            };
            routes.push(Route {
                dst: any,
                gw: Some(a.gateway),
            });
        }
    }
    for (i, r) in lease.routes.iter().enumerate() {
        let gw = r.gw.or_else(|| gateway_for(r.dst.addr())).ok_or_else(|| {
            CniError::config(format!(
                "ipam.routes[{i}] ({}) has no gateway and the pod has no address of its family",
                r.dst
            ))
        })?;
        if !routes.iter().any(|x| x.dst == r.dst) {
            routes.push(Route {
                dst: r.dst,
                gw: Some(gw),
            });
        }
    }
    Ok(routes)
}

/// Creates (or adopts) the bridge.
fn ensure_bridge(
    host: &mut Netlink,
    conf: &NetConf,
    allocs: &[Allocation],
) -> Result<Link, CniError> {
    let name = &conf.bridge;
    let bridge = match host.link(name).map_err(kernel)? {
        Some(link) => link,
        None => {
            let first_gw = allocs
                .first()
                .map(|a| a.gateway.to_string())
                .unwrap_or_default();
            match host.create_bridge(name, bridge_mac(name, &first_gw), None) {
                // Another ADD created it a moment ago: adopt it.
                Err(e) if e.errno() == Some(Errno::EEXIST) => {}
                other => other.map_err(kernel)?,
            }
            host.link(name)
                .map_err(kernel)?
                .ok_or_else(|| kernel(format!("bridge {name} vanished after creation")))?
        }
    };
    if bridge.kind.as_deref() != Some("bridge") {
        return Err(CniError::config(format!(
            "bridge \"{name}\" exists but is a {} device, not a bridge",
            bridge.kind.as_deref().unwrap_or("plain")
        )));
    }
    Ok(bridge)
}

/// A gateway routes between its pods and the rest of the node.
fn enable_forwarding(allocs: &[Allocation]) -> Result<(), CniError> {
    let keys = [
        (true, "net/ipv4/ip_forward"),
        (false, "net/ipv6/conf/all/forwarding"),
    ];
    for (v4, key) in keys {
        if allocs.iter().any(|a| a.gateway.is_ipv4() == v4)
            && sysctl::read(key).map_err(kernel)? != "1"
        {
            sysctl::write(key, "1").map_err(kernel)?;
        }
    }
    Ok(())
}

/// Creates the pod's veth pair, its peer born inside the pod netns. It needs
/// no address, so ADD runs it while IPAM writes to disk. The host end is
/// put on the bridge and brought up by [`attach`], beside the pod side's
/// configuration: enslaving it here would lengthen the path both wait on.
pub fn create_veth(
    host: &mut Netlink,
    conf: &NetConf,
    env: &Env,
    netns: &Netns,
    mtu: u32,
) -> Result<Veth, CniError> {
    // A MAC of our choosing (the runtime's, or one derived from the
    // attachment) means the pod's link need not be read back.
    let pod_mac = conf
        .runtime
        .mac
        .unwrap_or_else(|| pod_mac(&env.container_id, &env.ifname));
    let host_name = host_veth_name(&env.container_id, &env.ifname);
    let spec = VethSpec {
        host_name: &host_name,
        peer_name: &env.ifname,
        peer_netns: netns,
        mtu,
        peer_mac: Some(pod_mac),
    };
    let mut created = host.create_veth(&spec);
    // A host end with our derived name is a leftover of this very
    // attachment (an ADD retried after a crash): replace it.
    if created.as_ref().err().and_then(NetlinkError::errno) == Some(Errno::EEXIST)
        && let Some(stale) = host.link(&host_name).map_err(kernel)?
    {
        host.delete_link(stale.index).map_err(kernel)?;
        created = host.create_veth(&spec);
    }
    created.map_err(|e| match e.errno() {
        Some(Errno::EEXIST) => CniError::new(
            Code::Kernel,
            format!(
                "cannot create veth: interface {} already exists in netns {}",
                env.ifname, env.netns
            ),
        ),
        _ => kernel(e),
    })?;
    failpoint::hit("add-after-veth");
    let host = host
        .link(&host_name)
        .map_err(kernel)?
        .ok_or_else(|| kernel(format!("veth {host_name} vanished after creation")))?;
    Ok(Veth { host, pod_mac, mtu })
}

/// A freshly created veth pair.
pub struct Veth {
    pub host: Link,
    pub pod_mac: [u8; 6],
    pub mtu: u32,
}

/// Wires the rest once IPAM has answered: the bridge and its gateway
/// addresses, the host end's port settings, and the pod's addresses,
/// routes and sysctls. On error the caller calls [`detach`].
pub fn attach(
    host: &mut Netlink,
    conf: &NetConf,
    env: &Env,
    netns: &Netns,
    lease: &Lease,
    veth: Veth,
) -> Result<CniResult, CniError> {
    let allocs = &lease.allocs;
    let routes = pod_routes(conf.is_default_gateway, lease)?;
    let pod_index = veth
        .host
        .peer
        .ok_or_else(|| kernel("the kernel did not report the veth's peer"))?;
    // The pod side and the node side are different namespaces with
    // nothing in common: configure them at the same time.
    let bridge = std::thread::scope(|s| {
        let pod = s.spawn(|| {
            configure_pod(
                netns,
                &env.ifname,
                pod_index,
                &veth.pod_mac,
                allocs,
                &routes,
            )
        });
        let bridge = node_side(host, conf, allocs, &veth);
        pod.join()
            .unwrap_or_else(|_| Err(kernel("pod configuration thread panicked")))?;
        bridge
    })?;
    settle(host, &veth.host, &bridge)?;
    failpoint::hit("add-after-settle");
    let iface = |name: &str, mac: &[u8], mtu: u32, sandbox: Option<String>| Interface {
        name: name.to_owned(),
        mac: format_mac(mac),
        mtu: Some(mtu),
        sandbox,
    };
    Ok(CniResult {
        cni_version: conf.version.to_string(),
        interfaces: vec![
            iface(&bridge.name, &bridge.mac, bridge.mtu, None),
            iface(&veth.host.name, &veth.host.mac, veth.host.mtu, None),
            iface(
                &env.ifname,
                &veth.pod_mac,
                veth.mtu,
                Some(env.netns.clone()),
            ),
        ],
        ips: allocs
            .iter()
            .map(|a| IpConfig {
                address: a.address,
                gateway: Some(a.gateway),
                interface: Some(POD_INTERFACE),
            })
            .collect(),
        routes,
        dns: lease.dns.clone(),
    })
}

/// On the node, in one batch: the bridge's gateways, and the host end as
/// an up port of it, hairpinned if asked. Returns the bridge.
fn node_side(
    host: &mut Netlink,
    conf: &NetConf,
    allocs: &[Allocation],
    veth: &Veth,
) -> Result<Link, CniError> {
    let mut bridge = ensure_bridge(host, conf, allocs)?;
    // The bridge takes no router advertisement or redirect: on a node
    // without IPv6 forwarding it would otherwise accept them, from any pod.
    set_ipv6(
        &bridge.name,
        &[("accept_ra", "0"), ("accept_redirects", "0")],
    )?;
    // A port has no use for IPv6 of its own: the bridge routes.
    set_ipv6(&veth.host.name, &[("disable_ipv6", "1")])?;
    let mut batch = Vec::new();
    if conf.is_gateway {
        for a in allocs {
            let gw = IpNet::new(a.gateway, a.address.prefix_len()).map_err(kernel)?;
            batch.push(Change::add_address(bridge.index, gw));
        }
        enable_forwarding(allocs)?;
    }
    if !bridge.up {
        batch.push(Change::set_up(bridge.index));
    }
    // The group addresses the bridge would take in for the node without a
    // bridge hook (learning their source) are forwarded instead, through
    // the guard's prerouting chain.
    batch.push(Change::set_group_fwd_mask(bridge.index, GROUP_FWD_MASK));
    // Admitted before it is a port (one nfnetlink transaction, ~15 us):
    // the guard drops what a podnet port sends until its elements are in.
    // Its permissions recorded on the port in the same batch as it is
    // enslaved, for podnetd to re-admit it should the table be lost.
    let port = if conf.anti_spoofing {
        Port {
            ifindex: veth.host.index,
            name: veth.host.name.clone(),
            mac: veth.pod_mac,
            addrs: allocs.iter().map(|a| a.address.addr()).collect(),
            guarded: true,
        }
    } else {
        Port::unguarded(veth.host.index, &veth.host.name)
    };
    admit(&port)?;
    if let Some(alias) = port.alias() {
        batch.push(Change::set_alias(port.ifindex, &alias));
    }
    if veth.host.master != Some(bridge.index) {
        batch.push(Change::set_master(veth.host.index, bridge.index));
        batch.push(Change::set_up(veth.host.index));
    }
    // A new port starts with hairpin off.
    if conf.hairpin_mode {
        batch.push(Change::set_hairpin(veth.host.index, true));
    }
    host.apply(&batch).map_err(kernel)?;
    failpoint::hit("add-after-node-batch");
    // A bridge without its own MTU takes its smallest port's.
    bridge.mtu = bridge.mtu.min(veth.mtu);
    Ok(bridge)
}

/// Sets IPv6 sysctls of interface `name` in the current namespace where
/// they differ; nothing where the namespace has no IPv6. Returns whether
/// it has.
fn set_ipv6(name: &str, settings: &[(&str, &str)]) -> Result<bool, CniError> {
    let conf = format!("net/ipv6/conf/{name}");
    for (key, value) in settings {
        let key = format!("{conf}/{key}");
        match sysctl::read(&key) {
            Ok(v) if v == *value => {}
            Ok(_) => sysctl::write(&key, value).map_err(kernel)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(kernel(e)),
        }
    }
    Ok(true)
}

/// Admits `port` to the guard (an unguarded one as such, so that the
/// guard, which drops what it does not admit from a podnet port, lets it
/// pass). Without a table (no podnetd made it:
/// standalone use), makes it with `nft`; where that cannot be done, the
/// runtime is asked to try again, as podnetd remakes a lost table within
/// a resync.
fn admit(port: &Port) -> Result<(), CniError> {
    match guard::admit(port) {
        // No table: made here where `nft` allows, so that one made later
        // by a guarded ADD does not drop this port. Where it cannot be,
        // nothing checks the port; podnetd, making the table, re-admits
        // it from its record.
        Err(GuardError::Missing) if !port.guarded => {
            if guard::write_table().is_ok() {
                guard::admit(port).map_err(kernel)?;
            }
            Ok(())
        }
        Err(GuardError::Missing) => {
            guard::write_table().map_err(|e| {
                CniError::new(
                    Code::TryAgainLater,
                    format!(
                        "{}; and it could not be made here: {e}",
                        GuardError::Missing
                    ),
                )
            })?;
            guard::admit(port).map_err(kernel)
        }
        other => other.map_err(kernel),
    }
}

/// Makes the new port forward before ADD returns. The kernel acts on a
/// carrier change in its link-watch work, which may run up to a second
/// later; until then the port is disabled, and a bridge whose first port
/// this is has no carrier and drops what it sends (the gateway's ARP
/// replies included). Reading a link makes the kernel process that link's
/// pending change at once: the port first, which gives the bridge its
/// carrier, then (first ADD on a node only) the bridge.
fn settle(host: &mut Netlink, port: &Link, bridge: &Link) -> Result<(), CniError> {
    const CAP: Duration = Duration::from_secs(3);
    host.link_by_index(port.index).map_err(kernel)?;
    let started = Instant::now();
    let mut running = bridge.running;
    while !running && started.elapsed() < CAP {
        running = host
            .link_by_index(bridge.index)
            .map_err(kernel)?
            .is_some_and(|l| l.running);
        if !running {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    if !running {
        tracing::warn!(bridge = %bridge.name, "bridge has no carrier after {CAP:?}; continuing");
    }
    Ok(())
}

/// Inside the pod, in one batch: addresses, link up, routes; and
/// arp_notify, so that neighbours learn a reused IP's new MAC at once.
/// Where the pod has IPv6, it ignores router advertisements and
/// redirects (its routes are ours) and has the link-local address the
/// guard admits, set here rather than derived by the kernel.
fn configure_pod(
    netns: &Netns,
    ifname: &str,
    index: u32,
    mac: &[u8; 6],
    allocs: &[Allocation],
    routes: &[Route],
) -> Result<(), CniError> {
    const IPV6: [(&str, &str); 3] = [
        ("accept_ra", "0"),
        ("accept_redirects", "0"),
        ("addr_gen_mode", "1"),
    ];
    // One visit to the pod's namespace: set the sysctls and open the
    // socket that keeps talking to it afterwards.
    let (mut pod, ipv6) = netns
        .run(|| {
            sysctl::write(&format!("net/ipv4/conf/{ifname}/arp_notify"), "1").map_err(kernel)?;
            let disabled = sysctl::read(&format!("net/ipv6/conf/{ifname}/disable_ipv6"));
            let ipv6 = disabled.is_ok_and(|v| v == "0") && set_ipv6(ifname, &IPV6)?;
            Ok::<_, CniError>((Netlink::open().map_err(kernel)?, ipv6))
        })
        .map_err(kernel)??;
    let mut batch: Vec<Change> = allocs
        .iter()
        .map(|a| Change::add_address(index, a.address))
        .collect();
    if ipv6 {
        let ll = IpNet::new(IpAddr::V6(link_local(mac)), 64).map_err(kernel)?;
        batch.push(Change::add_address(index, ll));
    }
    batch.push(Change::set_up(index));
    batch.extend(routes.iter().map(|r| {
        Change::replace_route(&RouteSpec {
            dst: r.dst,
            gw: r.gw,
            oif: Some(index),
            protocol: PROTO_BOOT,
            onlink: false,
        })
    }));
    pod.apply(&batch).map_err(kernel)?;
    failpoint::hit("add-after-pod-batch");
    Ok(())
}

/// Removes the pod's veth pair. Deleting the host end takes the pod end
/// with it, and the kernel has done both when this returns. Idempotent.
/// The port's anti-spoofing elements stay, inert (their interface index is
/// never reused), for GC or podnetd to prune: deleting set elements makes
/// the kernel wait for an RCU grace period, which would double DEL's time.
pub fn detach(env: &Env) -> Result<(), CniError> {
    let mut host = Netlink::open().map_err(kernel)?;
    let name = host_veth_name(&env.container_id, &env.ifname);
    if let Some(link) = host.link(&name).map_err(kernel)? {
        host.delete_link(link.index).map_err(kernel)?;
    }
    Ok(())
}

/// Prunes the guard's elements and hooks of ports whose link no longer
/// exists.
fn forget_gone_ports(host: &mut Netlink) -> Result<(), CniError> {
    guard::prune(|| {
        let links = host.links()?;
        Ok::<_, NetlinkError>(links.into_iter().map(|l| (l.index, l.name)).collect())
    })
    .map_err(kernel)?;
    Ok(())
}

/// CHECK: the pod's interface, addresses and routes match `prev`.
pub fn verify(conf: &NetConf, env: &Env, netns: &Netns, prev: &CniResult) -> Result<(), CniError> {
    let mismatch = |msg: String| CniError::new(Code::CheckFailed, msg);
    let mut host = Netlink::open().map_err(kernel)?;
    let bridge = host
        .link(&conf.bridge)
        .map_err(kernel)?
        .ok_or_else(|| mismatch(format!("bridge {} does not exist", conf.bridge)))?;
    let host_name = host_veth_name(&env.container_id, &env.ifname);
    let host_link = host
        .link(&host_name)
        .map_err(kernel)?
        .ok_or_else(|| mismatch(format!("host veth {host_name} does not exist")))?;
    if host_link.master != Some(bridge.index) {
        return Err(mismatch(format!(
            "host veth {host_name} is not attached to bridge {}",
            conf.bridge
        )));
    }

    let (idx, want) = prev
        .pod_interface()
        .ok_or_else(|| CniError::config("prevResult has no interface with a sandbox"))?;
    if want.name != env.ifname {
        return Err(mismatch(format!(
            "prevResult names pod interface {}, but CNI_IFNAME is {}",
            want.name, env.ifname
        )));
    }
    let mut pod = Netlink::open_in(netns).map_err(kernel)?;
    let link = pod
        .link(&env.ifname)
        .map_err(kernel)?
        .ok_or_else(|| mismatch(format!("interface {} is missing in the pod", env.ifname)))?;
    if !want.mac.is_empty() && !want.mac.eq_ignore_ascii_case(&format_mac(&link.mac)) {
        return Err(mismatch(format!(
            "interface {} has MAC {}, prevResult says {}",
            env.ifname,
            format_mac(&link.mac),
            want.mac
        )));
    }
    let have = pod.addresses(link.index).map_err(kernel)?;
    for ip in prev
        .ips
        .iter()
        .filter(|ip| ip.interface.is_none_or(|i| i == idx))
    {
        if !have.contains(&ip.address) {
            return Err(mismatch(format!(
                "address {} is missing on {} in the pod",
                ip.address, env.ifname
            )));
        }
    }
    let routes = pod.routes().map_err(kernel)?;
    for r in &prev.routes {
        let found = routes
            .iter()
            .any(|k| k.dst == r.dst && (r.gw.is_none() || k.gw == r.gw));
        if !found {
            return Err(mismatch(format!(
                "route {} via {} is missing in the pod",
                r.dst,
                r.gw.map(|g| g.to_string()).unwrap_or_else(|| "-".into())
            )));
        }
    }
    Ok(())
}

/// GC: deletes podnet host veths that belong to none of `keep` (host
/// veth names): those on this network's bridge, and those on no bridge at
/// all, which an ADD killed before enslaving its veth left behind. Returns
/// the names deleted. Links that are not podnet veths, or sit on another
/// bridge, are never touched. (A podnet veth on no bridge could also be
/// another podnet network's ADD in flight, for the millisecond before it
/// enslaves it; that ADD then fails and is retried.)
pub fn sweep(conf: &NetConf, keep: &[String]) -> Result<Vec<String>, CniError> {
    let mut host = Netlink::open().map_err(kernel)?;
    let bridge = host.link(&conf.bridge).map_err(kernel)?.map(|b| b.index);
    let mut gone = Vec::new();
    for link in host.links().map_err(kernel)? {
        // On no bridge, only a name of exactly our form is ours.
        let ours = link.kind.as_deref() == Some("veth")
            && match link.master {
                None => is_host_veth_name(&link.name),
                master => master == bridge && link.name.starts_with(HOST_VETH_PREFIX),
            };
        if ours && !keep.contains(&link.name) {
            host.delete_link(link.index).map_err(kernel)?;
            gone.push(link.name);
        }
    }
    forget_gone_ports(&mut host)?;
    Ok(gone)
}
