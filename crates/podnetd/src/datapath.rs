//! Applying the desired state: podnetd's routes (tagged with its own route
//! protocol), its vxlan devices with their neighbour and FDB entries, and
//! its nftables table. It never touches anything else, and never flushes:
//! it replaces what differs and deletes only its own.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::{Result, anyhow};
use ipnet::IpNet;
use nix::errno::Errno;
use podnet_core::cluster::desired::{
    Datapath, Fdb, MasqPlan, Neighbour, PeerRoute, ROUTE_PROTOCOL, diff, family_index,
};
use podnet_core::cluster::nexthops::{Hop, InstalledHop, InstalledRoute, RoutePlan, plan_routes};
use podnet_core::names::{VXLAN4, VXLAN6, format_mac, parse_mac};
use podnet_linux::netlink::{Change, Entry, Link, Netlink, Nexthop, VxlanSpec};
use podnet_linux::nft;

const MAIN_TABLE: u32 = 254;

/// This node's vxlan devices, by family index (IPv4, IPv6).
pub type Devices = [Option<Link>; 2];

pub fn device_name(v4: bool) -> &'static str {
    if v4 { VXLAN4 } else { VXLAN6 }
}

/// Ensures one vxlan device: created if missing, recreated if it is not a
/// vxlan or has the wrong MAC, and given the node subnet's network address.
pub fn ensure_vxlan(nl: &mut Netlink, spec: &VxlanSpec<'_>, subnet: IpNet) -> Result<Link> {
    if let Some(link) = nl.link(spec.name)?
        && (link.kind.as_deref() != Some("vxlan") || link.mac != spec.mac)
    {
        nl.delete_link(link.index)?;
    }
    match nl.create_vxlan(spec) {
        Err(e) if e.errno() == Some(Errno::EEXIST) => {}
        other => other?,
    }
    let link = nl
        .link(spec.name)?
        .ok_or_else(|| anyhow!("{} vanished after creation", spec.name))?;
    let host = if subnet.addr().is_ipv4() { 32 } else { 128 };
    let addr = IpNet::new(subnet.network(), host)?;
    if !nl.addresses(link.index)?.contains(&addr) {
        nl.add_address(link.index, addr)?;
    }
    if !link.up {
        nl.set_up(link.index)?;
    }
    Ok(link)
}

/// The links next hops leave by, per family index: the vxlan devices
/// (overlay hops) and the underlay links (host-gw and direct hops).
pub struct HopLinks<'a> {
    pub vxlan: &'a Devices,
    pub underlay: [Option<u32>; 2],
}

impl HopLinks<'_> {
    fn of(&self, hop: &Hop) -> Option<u32> {
        let f = family_index(hop.via.is_ipv4());
        if hop.vxlan {
            self.vxlan[f].as_ref().map(|l| l.index)
        } else {
            self.underlay[f]
        }
    }

    fn nexthop(&self, id: u32, hop: &Hop) -> Option<Nexthop> {
        Some(Nexthop {
            id,
            gw: hop.via,
            oif: self.of(hop)?,
            onlink: hop.vxlan,
            protocol: ROUTE_PROTOCOL,
        })
    }
}

/// Plans the routes against the kernel's: our routes, our nexthop objects
/// and every nexthop ID in use. Objects of ours that drifted (another
/// device, onlink flipped) are replaced in place, keeping their routes.
fn plan(
    nl: &mut Netlink,
    links: &HopLinks<'_>,
    want: &Datapath,
) -> Result<(RoutePlan, Vec<Change>)> {
    let nexthops = nl.nexthops()?;
    let ids_in_use: BTreeSet<u32> = nexthops.iter().map(|n| n.id).collect();
    let vxlan_index: Vec<u32> = links.vxlan.iter().flatten().map(|l| l.index).collect();
    let mut repairs = Vec::new();
    let hops: Vec<InstalledHop> = nexthops
        .into_iter()
        .filter(|n| n.protocol == ROUTE_PROTOCOL)
        .map(|n| {
            let hop = Hop {
                via: n.gw,
                vxlan: vxlan_index.contains(&n.oif),
            };
            if let Some(fixed) = links.nexthop(n.id, &hop).filter(|f| *f != n) {
                repairs.push(Change::replace_nexthop(&fixed));
            }
            InstalledHop { id: n.id, hop }
        })
        .collect();
    let routes: Vec<InstalledRoute> = nl
        .routes()?
        .into_iter()
        .filter(|r| r.protocol == ROUTE_PROTOCOL && r.table == MAIN_TABLE)
        .map(|r| InstalledRoute {
            dst: r.dst,
            nexthop: r.nexthop,
        })
        .collect();
    // A route whose family has no device yet waits for it.
    let routable: BTreeSet<PeerRoute> = want
        .routes
        .iter()
        .filter(|r| links.of(&Hop::of(r)).is_some())
        .cloned()
        .collect();
    Ok((plan_routes(&routable, &routes, &hops, &ids_in_use), repairs))
}

/// What a reconcile changed, for the log.
#[derive(Default)]
pub struct Changes {
    pub routes: Option<RoutePlan>,
    pub entries: usize,
}

/// Makes the kernel match `want`, each kind of change in one batch.
pub fn reconcile(nl: &mut Netlink, links: &HopLinks<'_>, want: &Datapath) -> Result<Changes> {
    let mut changes = Changes::default();
    // Neighbours and FDB entries first: a vxlan route is only useful once
    // its next hop resolves.
    let mut batch = Vec::new();
    for v4 in [true, false] {
        let Some(dev) = &links.vxlan[family_index(v4)] else {
            continue;
        };
        let f = family_index(v4);
        let neigh: BTreeSet<Entry> = want.neighbours[f]
            .iter()
            .map(neigh_entry)
            .collect::<Result<_>>()?;
        let fdb: BTreeSet<Entry> = want.fdb[f].iter().map(fdb_entry).collect::<Result<_>>()?;
        for (is_fdb, wanted) in [(false, neigh), (true, fdb)] {
            let have = nl.entries(dev.index, is_fdb)?;
            // FDB entries are keyed by MAC, neighbours by address.
            let d = diff(&wanted, &have, |e: &Entry| {
                if is_fdb {
                    (None, Some(e.mac.clone()))
                } else {
                    (Some(e.ip), None)
                }
            });
            batch.extend(
                d.replace
                    .iter()
                    .map(|e| Change::replace_entry(dev.index, e, is_fdb)),
            );
            batch.extend(
                d.delete
                    .iter()
                    .map(|e| Change::delete_entry(dev.index, e, is_fdb)),
            );
        }
    }
    changes.entries = batch.len();
    nl.apply(&batch)?;

    let (plan, mut batch) = plan(nl, links, want)?;
    batch.extend(
        plan.add_hops
            .iter()
            .filter_map(|(id, hop)| links.nexthop(*id, hop))
            .map(|n| Change::replace_nexthop(&n)),
    );
    batch.extend(
        plan.routes
            .iter()
            .map(|(r, id)| Change::replace_route_via_nexthop(r.dst, *id, ROUTE_PROTOCOL)),
    );
    batch.extend(
        plan.delete_routes
            .iter()
            .map(|dst| Change::delete_route(*dst, ROUTE_PROTOCOL)),
    );
    batch.extend(
        plan.delete_hops
            .iter()
            .map(|id| Change::delete_nexthop(*id)),
    );
    nl.apply(&batch)?;
    changes.routes = Some(plan);
    Ok(changes)
}

fn mac_bytes(mac: &str) -> Result<Vec<u8>> {
    parse_mac(mac)
        .map(|m| m.to_vec())
        .ok_or_else(|| anyhow!("bad VTEP MAC {mac} in a lease"))
}

fn neigh_entry(n: &Neighbour) -> Result<Entry> {
    Ok(Entry {
        ip: n.ip,
        mac: mac_bytes(&n.mac)?,
    })
}

fn fdb_entry(f: &Fdb) -> Result<Entry> {
    Ok(Entry {
        ip: f.dst,
        mac: mac_bytes(&f.mac)?,
    })
}

pub fn mac_string(mac: &[u8; 6]) -> String {
    format_mac(mac)
}

/// Rewrites the egress table (or removes it when masquerade is off).
pub fn apply_masquerade(plan: Option<&MasqPlan>) -> Result<()> {
    match plan {
        Some(p) => {
            let nodes: Vec<IpAddr> = p.node_ips.iter().copied().collect();
            nft::replace_egress_table(&p.cluster_cidrs, &nodes, p.vxlan_port)?;
        }
        None => nft::replace_egress_table(&[], &[], None)?,
    }
    Ok(())
}

/// `podnetd --cleanup`: removes every route and nexthop object carrying
/// our protocol, the
/// vxlan devices (with their entries), the egress table and the subnet
/// file. Nothing else is touched.
pub fn cleanup(run_dir: &std::path::Path) -> Result<()> {
    let mut nl = Netlink::open()?;
    let ours: Vec<_> = nl
        .routes()?
        .into_iter()
        .filter(|r| r.protocol == ROUTE_PROTOCOL)
        .collect();
    let batch: Vec<Change> = ours
        .iter()
        .map(|r| Change::delete_route(r.dst, ROUTE_PROTOCOL))
        .collect();
    nl.apply(&batch)?;
    let hops: Vec<Change> = nl
        .nexthops()?
        .iter()
        .filter(|n| n.protocol == ROUTE_PROTOCOL)
        .map(|n| Change::delete_nexthop(n.id))
        .collect();
    nl.apply(&hops)?;
    for name in [VXLAN4, VXLAN6] {
        if let Some(link) = nl.link(name)? {
            nl.delete_link(link.index)?;
        }
    }
    apply_masquerade(None)?;
    match std::fs::remove_file(run_dir.join("subnet.json")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    tracing::info!(
        routes = ours.len(),
        "cleaned up everything podnetd owned on this node"
    );
    Ok(())
}
