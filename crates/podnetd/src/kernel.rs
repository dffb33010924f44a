//! The kernel as the agent sees it: narrow traits, one per kind of state
//! it owns (routes, the egress table, and each backend's own), so that the agent's loop runs against in-memory fakes
//! in tests and against netlink and nftables on a node.

#[cfg(test)]
pub mod fake;

use std::collections::HashSet;

use anyhow::Result;
use ipnet::IpNet;
use podnet_core::cluster::desired::MasqPlan;
use podnet_core::guard::{Carry, Element, ElementPlan, Links, Port};
use podnet_linux::failpoint;
use podnet_linux::netlink::{Change, Netlink, Nexthop, Route};
use podnet_linux::nft;
use podnet_linux::nft::guard::{self, TableState};

use crate::backend::Backends;

/// One change to routes and nexthop objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOp {
    /// Create or replace a nexthop object.
    Nexthop(Nexthop),
    /// Create or replace a route (ours) through a nexthop object.
    Route {
        dst: IpNet,
        nexthop: u32,
    },
    DeleteRoute(IpNet),
    /// Deleting an object also deletes the routes that still use it.
    DeleteNexthop(u32),
}

/// Routes and nexthop objects of the main table.
pub trait Routes {
    fn nexthops(&mut self) -> Result<Vec<Nexthop>>;
    fn routes(&mut self) -> Result<Vec<Route>>;
    /// Tries every op; returns the first error after all were tried.
    fn apply_routes(&mut self, ops: &[RouteOp]) -> Result<()>;
}

/// The egress (masquerade) table, replaced whole.
pub trait Egress {
    /// `None` removes it.
    fn replace_egress(&mut self, plan: Option<&MasqPlan>) -> Result<()>;
    /// Whether the table is still as the last replace left it: false
    /// before the first, and once it was flushed, cut or deleted.
    fn egress_intact(&mut self) -> Result<bool>;
}

/// The anti-spoofing table: made or migrated, and its per-port elements
/// kept in line with the node's ports.
pub trait Guard {
    fn guard_table(&mut self) -> Result<TableState>;
    /// Creates the table, or migrates it to this layout, keeping every
    /// element, in one transaction that admits every podnet port it
    /// lacks. Returns what it carried.
    fn write_guard_table(&mut self) -> Result<Carry>;
    /// The per-port elements it holds (none without a table).
    fn guard_elements(&mut self) -> Result<Vec<Element>>;
    /// The node's links, and the ports recorded on them. Asked after the
    /// elements are listed, so a port admitted meanwhile is seen alive.
    fn ports(&mut self) -> Result<(Links, Vec<Port>)>;
    fn apply_guard(&mut self, plan: &ElementPlan) -> Result<()>;
    /// Records `port`'s guard on its link, as the plugin does at ADD.
    fn record_port(&mut self, port: &Port) -> Result<()>;
    /// Frames dropped so far, per reason.
    fn guard_drops(&mut self) -> Result<Vec<(String, u64)>>;
}

/// The gateway addresses on the node's bridges.
pub trait Gateways {
    /// Every address on a bridge: (bridge index, address).
    fn bridge_addresses(&mut self) -> Result<Vec<(u32, IpNet)>>;
    fn delete_address(&mut self, index: u32, addr: IpNet) -> Result<()>;
}

/// Every kind of state the agent owns; each backend's own traits come
/// with [`Backends`].
pub trait Kernel: Routes + Egress + Guard + Gateways + Backends {}
impl<K> Kernel for K where K: Routes + Egress + Guard + Gateways + Backends {}

/// The real kernel: rtnetlink for routes, entries, devices and addresses;
/// nftables for the egress and anti-spoofing tables.
pub struct Host {
    pub nl: Netlink,
    /// The route protocol that marks ours.
    pub protocol: u8,
    /// The egress table as last written (`Some(None)`: removed).
    pub egress: Option<Option<nft::egress::Fingerprint>>,
}

impl Routes for Host {
    fn nexthops(&mut self) -> Result<Vec<Nexthop>> {
        Ok(self.nl.nexthops()?)
    }

    fn routes(&mut self) -> Result<Vec<Route>> {
        Ok(self.nl.routes()?)
    }

    /// The nexthop objects go first, in their own batches: a route may
    /// only name a nexthop that exists.
    fn apply_routes(&mut self, ops: &[RouteOp]) -> Result<()> {
        let (hops, rest): (Vec<&RouteOp>, Vec<&RouteOp>) =
            ops.iter().partition(|op| matches!(op, RouteOp::Nexthop(_)));
        let hops = self.nl.apply(&self.batch(&hops));
        failpoint::hit("agent-between-nexthops-and-routes");
        // A crash test build stops halfway through the routes.
        let rest = self.batch(&rest);
        let (first, second) = rest.split_at(if failpoint::ENABLED {
            rest.len() / 2
        } else {
            0
        });
        let first = self.nl.apply(first);
        failpoint::hit("agent-mid-batch");
        let second = self.nl.apply(second);
        Ok(hops.and(first).and(second)?)
    }
}

impl Host {
    fn batch(&self, ops: &[&RouteOp]) -> Vec<Change> {
        ops.iter()
            .map(|op| match op {
                RouteOp::Nexthop(n) => Change::replace_nexthop(n),
                RouteOp::Route { dst, nexthop } => {
                    Change::replace_route_via_nexthop(*dst, *nexthop, self.protocol)
                }
                RouteOp::DeleteRoute(dst) => Change::delete_route(*dst, self.protocol),
                RouteOp::DeleteNexthop(id) => Change::delete_nexthop(*id),
            })
            .collect()
    }
}

impl Egress for Host {
    fn replace_egress(&mut self, plan: Option<&MasqPlan>) -> Result<()> {
        match plan {
            Some(p) => {
                let nodes: Vec<std::net::IpAddr> = p.node_ips.iter().copied().collect();
                nft::egress::replace_egress_table(&p.cluster_cidrs, &nodes, &p.overlay_ports)?;
            }
            None => nft::egress::replace_egress_table(&[], &[], &[])?,
        }
        // Applied, but not yet recorded as applied.
        failpoint::hit("agent-egress-update");
        self.egress = Some(nft::egress::egress_fingerprint()?);
        Ok(())
    }

    fn egress_intact(&mut self) -> Result<bool> {
        Ok(match self.egress {
            Some(written) => nft::egress::egress_fingerprint()? == written,
            None => false,
        })
    }
}

impl Guard for Host {
    fn guard_table(&mut self) -> Result<TableState> {
        Ok(guard::state()?)
    }

    fn write_guard_table(&mut self) -> Result<Carry> {
        Ok(guard::write_table()?)
    }

    fn guard_elements(&mut self) -> Result<Vec<Element>> {
        Ok(guard::elements()?.unwrap_or_default())
    }

    fn ports(&mut self) -> Result<(Links, Vec<Port>)> {
        let links = self.nl.links()?;
        let ports = links
            .iter()
            .filter_map(|l| Port::from_alias(l.index, &l.name, l.alias.as_deref()?))
            .collect();
        Ok((
            links.into_iter().map(|l| (l.index, l.name)).collect(),
            ports,
        ))
    }

    fn apply_guard(&mut self, plan: &ElementPlan) -> Result<()> {
        Ok(guard::apply(plan)?)
    }

    fn record_port(&mut self, port: &Port) -> Result<()> {
        let Some(alias) = port.alias() else {
            anyhow::bail!("port {}'s addresses do not fit its alias", port.ifindex);
        };
        Ok(self.nl.apply(&[Change::set_alias(port.ifindex, &alias)])?)
    }

    fn guard_drops(&mut self) -> Result<Vec<(String, u64)>> {
        Ok(guard::drops()?)
    }
}

impl Gateways for Host {
    fn bridge_addresses(&mut self) -> Result<Vec<(u32, IpNet)>> {
        let bridges: HashSet<u32> = self
            .nl
            .links()?
            .into_iter()
            .filter(|l| l.kind.as_deref() == Some("bridge"))
            .map(|l| l.index)
            .collect();
        Ok(self
            .nl
            .all_addresses()?
            .into_iter()
            .filter(|(i, _)| bridges.contains(i))
            .collect())
    }

    fn delete_address(&mut self, index: u32, addr: IpNet) -> Result<()> {
        Ok(self.nl.delete_address(index, addr)?)
    }
}
