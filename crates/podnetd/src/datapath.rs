//! Applying the desired state: podnetd's routes (tagged with its own route
//! protocol), its vxlan devices with their neighbour and FDB entries, and
//! its nftables table. It never touches anything else, and never flushes:
//! it replaces what differs and deletes only its own.

use std::collections::BTreeSet;

use anyhow::{Result, anyhow};
use ipnet::IpNet;
use nix::errno::Errno;
use podnet_core::cluster::desired::{
    Datapath, Fdb, Neighbour, PeerRoute, ROUTE_PROTOCOL, diff, family_index,
};
use podnet_core::cluster::nexthops::{
    Hop, InstalledHop, InstalledRoute, RoutePlan, is_our_nexthop_id, plan_routes,
};
use podnet_core::names::{VXLAN4, VXLAN6, parse_mac};
use podnet_linux::netlink::{Change, Entry, Link, Netlink, Nexthop, Route, VxlanSpec};
use podnet_linux::nft;

use crate::kernel::{EntryOp, Kernel, RouteOp, Routes};

const MAIN_TABLE: u32 = 254;

/// This node's vxlan devices' indexes, by family index (IPv4, IPv6).
pub type Devices = [Option<u32>; 2];

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
#[derive(Debug, Clone, Copy, Default)]
pub struct HopLinks {
    pub vxlan: Devices,
    pub underlay: [Option<u32>; 2],
}

impl HopLinks {
    fn of(&self, hop: &Hop) -> Option<u32> {
        let f = family_index(hop.via.is_ipv4());
        if hop.vxlan {
            self.vxlan[f]
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
/// (our protocol and our ID range) and every nexthop ID in use. Objects
/// of ours that drifted (another device, onlink flipped) are replaced in
/// place, keeping their routes. A destination someone else routes is
/// left to them.
fn plan(
    k: &mut impl Routes,
    links: &HopLinks,
    want: &Datapath,
) -> Result<(RoutePlan, Vec<RouteOp>)> {
    let nexthops = k.nexthops()?;
    let ids_in_use: BTreeSet<u32> = nexthops.iter().map(|n| n.id).collect();
    let vxlan_index: Vec<u32> = links.vxlan.iter().flatten().copied().collect();
    let mut repairs = Vec::new();
    let hops: Vec<InstalledHop> = nexthops
        .into_iter()
        .filter(|n| n.protocol == ROUTE_PROTOCOL && is_our_nexthop_id(n.id))
        .map(|n| {
            let hop = Hop {
                via: n.gw,
                vxlan: vxlan_index.contains(&n.oif),
            };
            if let Some(fixed) = links.nexthop(n.id, &hop).filter(|f| *f != n) {
                repairs.push(RouteOp::Nexthop(fixed));
            }
            InstalledHop { id: n.id, hop }
        })
        .collect();
    let (ours, theirs): (Vec<Route>, Vec<Route>) = k
        .routes()?
        .into_iter()
        .filter(|r| r.table == MAIN_TABLE)
        .partition(|r| r.protocol == ROUTE_PROTOCOL);
    let foreign: BTreeSet<IpNet> = theirs.iter().map(|r| r.dst).collect();
    let routes: Vec<InstalledRoute> = ours
        .into_iter()
        .map(|r| InstalledRoute {
            dst: r.dst,
            nexthop: r.nexthop,
        })
        .collect();
    // A route whose family has no device yet waits for it.
    let routable: BTreeSet<PeerRoute> = want
        .routes
        .iter()
        .filter(|r| links.of(&Hop::of(r)).is_some() && !foreign.contains(&r.dst))
        .cloned()
        .collect();
    Ok((plan_routes(&routable, &routes, &hops, &ids_in_use), repairs))
}

/// What a reconcile changed, for the log.
#[derive(Default)]
pub struct Changes {
    pub routes: RoutePlan,
    pub entries: usize,
}

/// Makes the kernel match `want`, each kind of change in one batch. Every
/// batch is tried even if an earlier one failed; the first error is
/// returned after.
pub fn reconcile(k: &mut impl Kernel, links: &HopLinks, want: &Datapath) -> Result<Changes> {
    let mut changes = Changes::default();
    // Neighbours and FDB entries first: a vxlan route is only useful once
    // its next hop resolves.
    let mut ops = Vec::new();
    for v4 in [true, false] {
        let f = family_index(v4);
        let Some(dev) = links.vxlan[f] else {
            continue;
        };
        let neigh: BTreeSet<Entry> = want.neighbours[f].iter().filter_map(neigh_entry).collect();
        let fdb: BTreeSet<Entry> = want.fdb[f].iter().filter_map(fdb_entry).collect();
        for (is_fdb, wanted) in [(false, neigh), (true, fdb)] {
            let have = k.entries(dev, is_fdb)?;
            // FDB entries are keyed by MAC, neighbours by address.
            let d = diff(&wanted, &have, |e: &Entry| {
                if is_fdb {
                    (None, Some(e.mac.clone()))
                } else {
                    (Some(e.ip), None)
                }
            });
            let op = |entry: &Entry, delete| EntryOp {
                dev,
                fdb: is_fdb,
                entry: entry.clone(),
                delete,
            };
            ops.extend(d.replace.iter().map(|e| op(e, false)));
            ops.extend(d.delete.iter().map(|e| op(e, true)));
        }
    }
    changes.entries = ops.len();
    let entries = k.apply_entries(&ops);

    let (plan, mut ops) = plan(k, links, want)?;
    ops.extend(
        plan.add_hops
            .iter()
            .filter_map(|(id, hop)| links.nexthop(*id, hop))
            .map(RouteOp::Nexthop),
    );
    ops.extend(plan.routes.iter().map(|(r, id)| RouteOp::Route {
        dst: r.dst,
        nexthop: *id,
    }));
    ops.extend(
        plan.delete_routes
            .iter()
            .map(|dst| RouteOp::DeleteRoute(*dst)),
    );
    ops.extend(
        plan.delete_hops
            .iter()
            .map(|id| RouteOp::DeleteNexthop(*id)),
    );
    let routes = k.apply_routes(&ops);
    changes.routes = plan;
    entries.and(routes)?;
    Ok(changes)
}

/// An entry for a neighbour; a MAC that does not parse (a peer's bad
/// data) is skipped, never fatal to the others.
fn neigh_entry(n: &Neighbour) -> Option<Entry> {
    Some(Entry {
        ip: n.ip,
        mac: parse_mac(&n.mac)?.to_vec(),
    })
}

fn fdb_entry(f: &Fdb) -> Option<Entry> {
    Some(Entry {
        ip: f.dst,
        mac: parse_mac(&f.mac)?.to_vec(),
    })
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
    nft::replace_egress_table(&[], &[], None)?;
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
