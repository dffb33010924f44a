//! Applying the desired state: podnetd's routes (tagged with its own route
//! protocol) and its nftables table. It never touches anything else, and
//! never flushes: it replaces what differs and deletes only its own.

use anyhow::Result;
use podnet_core::cluster::desired::{MasqPlan, PeerRoute, ROUTE_PROTOCOL, RouteDiff, diff_routes};
use podnet_linux::netlink::{Netlink, RouteSpec};
use podnet_linux::nft;
use std::collections::BTreeSet;

/// The routes in the main table that carry our tag.
pub fn our_routes(nl: &mut Netlink) -> Result<Vec<PeerRoute>> {
    Ok(nl
        .routes()?
        .into_iter()
        .filter(|r| r.protocol == ROUTE_PROTOCOL && r.table == 254)
        .filter_map(|r| {
            Some(PeerRoute {
                dst: r.dst,
                via: r.gw?,
            })
        })
        .collect())
}

/// Makes our routes equal `desired`; returns what it changed.
pub fn reconcile_routes(nl: &mut Netlink, desired: &BTreeSet<PeerRoute>) -> Result<RouteDiff> {
    let diff = diff_routes(desired, &our_routes(nl)?);
    for r in &diff.replace {
        nl.replace_route(&RouteSpec {
            dst: r.dst,
            gw: Some(r.via),
            oif: None,
            protocol: ROUTE_PROTOCOL,
        })?;
    }
    for dst in &diff.delete {
        nl.delete_route(*dst, ROUTE_PROTOCOL)?;
    }
    Ok(diff)
}

/// Rewrites the egress table (or removes it when masquerade is off).
pub fn apply_masquerade(plan: Option<&MasqPlan>) -> Result<()> {
    match plan {
        Some(p) => {
            let nodes: Vec<_> = p.node_ips.iter().copied().collect();
            nft::replace_egress_table(&p.cluster_cidrs, &nodes)?;
        }
        None => nft::replace_egress_table(&[], &[])?,
    }
    Ok(())
}
