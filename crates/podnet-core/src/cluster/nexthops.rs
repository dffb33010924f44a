//! Peer routes go through nexthop objects, one per distinct next hop.
//!
//! The kernel hashes a route's shared data by device, not gateway: a few
//! thousand host-gw routes with one device and distinct gateways all land
//! in one hash chain, and each insert walks it (quadratic in the number of
//! peers). A route that names its own nexthop object hashes by that ID.
//!
//! This module decides, from what the kernel holds, which objects to
//! create, which routes to point where, and what to delete. IDs are taken
//! from the kernel's state, never from memory, so a restarted agent adopts
//! what it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::desired::{PeerRoute, ROUTE_PROTOCOL};

/// podnetd's nexthop IDs start here (112 << 24, after its route
/// protocol), clear of the small IDs other tools count up from.
pub const NEXTHOP_ID_BASE: u32 = (ROUTE_PROTOCOL as u32) << 24;

/// Whether a nexthop ID is in podnetd's range: an object outside it is
/// never ours, whatever its protocol says.
pub fn is_our_nexthop_id(id: u32) -> bool {
    id >> 24 == u32::from(ROUTE_PROTOCOL)
}

/// Where a peer route sends its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hop {
    pub via: IpAddr,
    /// Onlink through the overlay device, else via the underlay.
    pub overlay: bool,
}

impl Hop {
    pub fn of(route: &PeerRoute) -> Hop {
        Hop {
            via: route.via,
            overlay: route.overlay,
        }
    }
}

/// One of our nexthop objects, as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledHop {
    pub id: u32,
    pub hop: Hop,
}

/// One of our routes, as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledRoute {
    pub dst: IpNet,
    /// None for a route straight via a gateway (an older podnetd's).
    pub nexthop: Option<u32>,
}

/// The changes, in the order they must be applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePlan {
    /// Nexthop objects to create before any route points at them.
    pub add_hops: Vec<(u32, Hop)>,
    /// Routes to install or re-point, with their nexthop ID.
    pub routes: Vec<(PeerRoute, u32)>,
    /// Our routes that are no longer wanted.
    pub delete_routes: Vec<IpNet>,
    /// Our objects no route uses any more. Deleted last: deleting an
    /// object takes the routes that still use it along.
    pub delete_hops: Vec<u32>,
}

impl RoutePlan {
    pub fn is_empty(&self) -> bool {
        self.add_hops.is_empty()
            && self.routes.is_empty()
            && self.delete_routes.is_empty()
            && self.delete_hops.is_empty()
    }
}

/// Plans `want` against the kernel: `routes` and `hops` are ours; `ids_in_use`
/// is every nexthop ID in the namespace, anyone's.
pub fn plan_routes(
    want: &BTreeSet<PeerRoute>,
    routes: &[InstalledRoute],
    hops: &[InstalledHop],
    ids_in_use: &BTreeSet<u32>,
) -> RoutePlan {
    let mut plan = RoutePlan::default();
    // Adopt what is there; of two objects for one hop, keep the lower ID.
    let mut by_hop: BTreeMap<Hop, u32> = BTreeMap::new();
    for h in hops {
        let id = by_hop.entry(h.hop).or_insert(h.id);
        *id = (*id).min(h.id);
    }
    let mut taken: BTreeSet<u32> = ids_in_use.iter().copied().collect();
    taken.extend(hops.iter().map(|h| h.id));
    let installed: BTreeMap<IpNet, Option<u32>> =
        routes.iter().map(|r| (r.dst, r.nexthop)).collect();
    let mut used = BTreeSet::new();
    let mut next = NEXTHOP_ID_BASE;
    for route in want {
        let hop = Hop::of(route);
        let id = match by_hop.get(&hop) {
            Some(id) => *id,
            None => {
                let Some(id) = (next..NEXTHOP_ID_BASE + (1 << 24)).find(|id| !taken.contains(id))
                else {
                    continue; // 2^24 IDs in use: no kernel holds that many
                };
                next = id;
                taken.insert(id);
                by_hop.insert(hop, id);
                plan.add_hops.push((id, hop));
                id
            }
        };
        used.insert(id);
        if installed.get(&route.dst) != Some(&Some(id)) {
            plan.routes.push((route.clone(), id));
        }
    }
    let wanted: BTreeSet<IpNet> = want.iter().map(|r| r.dst).collect();
    plan.delete_routes = installed
        .keys()
        .filter(|dst| !wanted.contains(dst))
        .copied()
        .collect();
    plan.delete_hops = hops
        .iter()
        .map(|h| h.id)
        .filter(|id| !used.contains(id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn route(dst: &str, via: &str) -> PeerRoute {
        PeerRoute {
            dst: dst.parse().unwrap(),
            via: via.parse().unwrap(),
            overlay: false,
        }
    }

    fn hop(id: u32, via: &str) -> InstalledHop {
        InstalledHop {
            id,
            hop: Hop {
                via: via.parse().unwrap(),
                overlay: false,
            },
        }
    }

    fn installed(dst: &str, nexthop: Option<u32>) -> InstalledRoute {
        InstalledRoute {
            dst: dst.parse().unwrap(),
            nexthop,
        }
    }

    const B: u32 = NEXTHOP_ID_BASE;

    #[test]
    fn a_fresh_node_gets_one_object_per_hop_skipping_foreign_ids() {
        let want = [
            route("10.0.2.0/24", "192.168.1.2"),
            route("10.0.3.0/24", "192.168.1.3"),
        ]
        .into();
        let plan = plan_routes(&want, &[], &[], &[B].into());
        assert_eq!(
            plan.add_hops.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![B + 1, B + 2]
        );
        assert_eq!(
            plan.routes.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
            vec![B + 1, B + 2]
        );
        assert!(plan.delete_routes.is_empty() && plan.delete_hops.is_empty());
    }

    #[test]
    fn a_restart_adopts_what_matches_and_changes_nothing() {
        let want = [route("10.0.2.0/24", "192.168.1.2")].into();
        let plan = plan_routes(
            &want,
            &[installed("10.0.2.0/24", Some(B + 7))],
            &[hop(B + 7, "192.168.1.2")],
            &[B + 7].into(),
        );
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn a_moved_peer_gets_a_new_object_and_the_old_one_goes_last() {
        let want = [route("10.0.2.0/24", "192.168.1.9")].into();
        let plan = plan_routes(
            &want,
            &[installed("10.0.2.0/24", Some(B))],
            &[hop(B, "192.168.1.2")],
            &[B].into(),
        );
        assert_eq!(plan.add_hops, vec![(B + 1, hop(0, "192.168.1.9").hop)]);
        assert_eq!(
            plan.routes,
            vec![(route("10.0.2.0/24", "192.168.1.9"), B + 1)]
        );
        assert_eq!(plan.delete_hops, vec![B]);
    }

    #[test]
    fn departed_routes_go_and_gateway_routes_are_repointed() {
        let want = [route("10.0.2.0/24", "192.168.1.2")].into();
        let plan = plan_routes(
            &want,
            &[
                installed("10.0.2.0/24", None),
                installed("10.0.4.0/24", Some(B + 1)),
            ],
            &[hop(B + 1, "192.168.1.4")],
            &[B + 1].into(),
        );
        assert_eq!(plan.routes, vec![(route("10.0.2.0/24", "192.168.1.2"), B)]);
        assert_eq!(plan.delete_routes, vec!["10.0.4.0/24".parse().unwrap()]);
        assert_eq!(plan.delete_hops, vec![B + 1]);
    }

    #[test]
    fn duplicate_objects_for_one_hop_collapse_onto_the_lowest() {
        let want = [route("10.0.2.0/24", "192.168.1.2")].into();
        let plan = plan_routes(
            &want,
            &[installed("10.0.2.0/24", Some(B + 5))],
            &[hop(B + 5, "192.168.1.2"), hop(B + 3, "192.168.1.2")],
            &[B + 3, B + 5].into(),
        );
        assert_eq!(
            plan.routes,
            vec![(route("10.0.2.0/24", "192.168.1.2"), B + 3)]
        );
        assert_eq!(plan.delete_hops, vec![B + 5]);
    }

    proptest! {
        /// Applying a plan to a simulated kernel converges in one step:
        /// every wanted route points at an object for its hop, IDs are
        /// unique and never a foreign one, and planning again is a no-op.
        #[test]
        fn plans_converge(
            want in proptest::collection::btree_map(0u8..40, 0u8..8, 0..30),
            have in proptest::collection::btree_map(0u8..40, 0u8..8, 0..30),
            foreign in proptest::collection::btree_set(B..B + 20, 0..10),
        ) {
            let dst = |d: u8| format!("10.0.{d}.0/24");
            let via = |v: u8| format!("192.168.1.{v}");
            let want: BTreeSet<PeerRoute> =
                want.iter().map(|(d, v)| route(&dst(*d), &via(*v))).collect();
            // The kernel: our objects at IDs that are not foreign, routes on them.
            let mut hops: BTreeMap<u32, Hop> = BTreeMap::new();
            let mut routes: BTreeMap<IpNet, u32> = BTreeMap::new();
            let mut id = B;
            for (d, v) in &have {
                while foreign.contains(&id) { id += 1; }
                hops.insert(id, hop(id, &via(*v)).hop);
                routes.insert(dst(*d).parse().unwrap(), id);
                id += 1;
            }
            let snapshot = |hops: &BTreeMap<u32, Hop>, routes: &BTreeMap<IpNet, u32>| {
                let h: Vec<InstalledHop> = hops.iter().map(|(id, hop)| InstalledHop { id: *id, hop: *hop }).collect();
                let r: Vec<InstalledRoute> = routes.iter().map(|(d, id)| InstalledRoute { dst: *d, nexthop: Some(*id) }).collect();
                let mut ids: BTreeSet<u32> = foreign.clone();
                ids.extend(hops.keys());
                (h, r, ids)
            };
            let (h, r, ids) = snapshot(&hops, &routes);
            let plan = plan_routes(&want, &r, &h, &ids);
            for (id, hop) in &plan.add_hops {
                prop_assert!(!ids.contains(id), "reused ID {id}");
                hops.insert(*id, *hop);
            }
            for (route, id) in &plan.routes { routes.insert(route.dst, *id); }
            for dst in &plan.delete_routes { routes.remove(dst); }
            for id in &plan.delete_hops {
                hops.remove(id);
                prop_assert!(!routes.values().any(|r| r == id), "deleted an object in use");
            }
            for route in &want {
                let id = routes[&route.dst];
                prop_assert_eq!(hops[&id], Hop::of(route));
            }
            prop_assert_eq!(routes.len(), want.len());
            let (h, r, ids) = snapshot(&hops, &routes);
            prop_assert!(plan_routes(&want, &r, &h, &ids).is_empty());
        }
    }
}
