//! Applying the desired state: the backend's entries, then podnetd's
//! routes (tagged with its own route protocol) through nexthop objects.
//! It never touches anything else, and never flushes: it replaces what
//! differs and deletes only its own.

use std::collections::BTreeSet;

use anyhow::Result;
use ipnet::IpNet;
use podnet_core::cluster::backend::Backend;
use podnet_core::cluster::desired::{Datapath, PeerRoute, ROUTE_PROTOCOL, family_index};
use podnet_core::cluster::nexthops::{
    Hop, InstalledHop, InstalledRoute, RoutePlan, is_our_nexthop_id, plan_routes,
};
use podnet_linux::netlink::{Change, Netlink, Nexthop, Route};
use podnet_linux::nft::registry;

use crate::backend::{self, Overlay};
use crate::kernel::{Kernel, RouteOp, Routes};

const MAIN_TABLE: u32 = 254;

/// The links next hops leave by, per family index: the backend's overlay
/// devices (overlay hops) and the underlay links (direct hops).
#[derive(Debug, Clone, Copy, Default)]
pub struct HopLinks {
    pub overlay: Overlay,
    pub underlay: [Option<u32>; 2],
}

impl HopLinks {
    fn of(&self, hop: &Hop) -> Option<u32> {
        let f = family_index(hop.via.is_ipv4());
        if hop.overlay {
            self.overlay[f]
        } else {
            self.underlay[f]
        }
    }

    fn nexthop(&self, id: u32, hop: &Hop) -> Option<Nexthop> {
        Some(Nexthop {
            id,
            gw: hop.via,
            oif: self.of(hop)?,
            onlink: hop.overlay,
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
    let overlay_index: Vec<u32> = links.overlay.iter().flatten().copied().collect();
    let mut repairs = Vec::new();
    let hops: Vec<InstalledHop> = nexthops
        .into_iter()
        .filter(|n| n.protocol == ROUTE_PROTOCOL && is_our_nexthop_id(n.id))
        .map(|n| {
            let hop = Hop {
                via: n.gw,
                overlay: overlay_index.contains(&n.oif),
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
pub fn reconcile<K: Kernel>(
    k: &mut K,
    backend: &Backend,
    links: &HopLinks,
    want: &Datapath,
) -> Result<Changes> {
    let mut changes = Changes::default();
    // The backend's entries first: an overlay route is only useful once
    // its next hop resolves.
    let entries = K::apply_of(backend).and_then(|b| b.reconcile_entries(k, &links.overlay, want));
    changes.entries = *entries.as_ref().unwrap_or(&0);

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

/// `podnetd --cleanup`: removes every route and nexthop object carrying
/// our protocol, every backend's devices (with their entries), the tables
/// the registry gives it (the pods' only once no pod remains) and the
/// subnet file. Nothing else is touched.
pub fn cleanup(run_dir: &std::path::Path) -> Result<()> {
    if podnet_linux::presence::agent_running(run_dir)? == Some(true) {
        anyhow::bail!(
            "a podnetd still serves this node (it holds {}); stop it first",
            run_dir.join(podnet_linux::presence::LOCK_FILE).display()
        );
    }
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
    backend::cleanup(&mut nl)?;
    let pods_remain = registry::pods_remain(&mut nl)?;
    for t in registry::remove(registry::removable(true, pods_remain))? {
        tracing::info!(table = %format!("{} {}", t.family_name, t.name), "removed");
    }
    if pods_remain {
        tracing::info!("podnet pods remain: their anti-spoofing and ipMasq tables stay");
    }
    let policy_files = crate::policy::RUN_FILES.iter().copied();
    for file in ["subnet.json", podnet_linux::presence::LOCK_FILE]
        .into_iter()
        .chain(policy_files)
    {
        match std::fs::remove_file(run_dir.join(file)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    tracing::info!(
        routes = ours.len(),
        "cleaned up everything podnetd owned on this node"
    );
    Ok(())
}
