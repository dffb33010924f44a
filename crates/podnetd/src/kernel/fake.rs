//! An in-memory kernel for the agent's tests, with the semantics the
//! agent relies on: a route replace takes over whatever route has that
//! destination (anyone's), a route delete matches the route protocol, and
//! deleting a nexthop object takes its routes along.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use ipnet::IpNet;
use podnet_core::cluster::desired::{MasqPlan, ROUTE_PROTOCOL};
use podnet_linux::netlink::{Entry, Nexthop, Route};

use podnet_linux::netlink::VxlanSpec;

use podnet_core::guard::{Carry, Element, ElementPlan, LAYOUT, Links, Port, PortLink, carry};
use podnet_linux::nft::guard::TableState;

use super::{Egress, Gateways, Guard, RouteOp, Routes};
use crate::backend::vxlan::{Devices, EntryOp, Neighbours};
use crate::backend::wireguard::{DeviceSpec, PeerOp, PeerState, Tunnels};

pub const MAIN_TABLE: u32 = 254;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct FakeKernel {
    pub nexthops: BTreeMap<u32, Nexthop>,
    pub routes: BTreeMap<IpNet, Route>,
    /// Per (device, fdb?): neighbours keyed by address, FDB by MAC.
    pub entries: BTreeMap<(u32, bool), Vec<Entry>>,
    /// The egress table: `None` until first written, or once "flushed".
    pub egress: Option<Option<MasqPlan>>,
    /// Devices by name, with their index and node-subnet address.
    pub devices: BTreeMap<String, (u32, IpNet)>,
    /// WireGuard devices' peers, by device name.
    pub tunnel_peers: BTreeMap<String, Vec<PeerState>>,
    devices_made: u32,
    /// The anti-spoofing table, if made: its layout and per-port elements.
    pub guard: Option<(u32, Vec<Element>)>,
    /// Its drop counters.
    pub guard_drops: Vec<(String, u64)>,
    /// Addresses on the node's bridges: (bridge index, address).
    pub bridge_addresses: Vec<(u32, IpNet)>,
    /// The node's links: index and alias (named [`link_name`]).
    pub links: BTreeMap<u32, Option<String>>,
    /// Every route and entry op applied so far: churn shows here. (The
    /// egress table is written whole, once at every start.)
    pub ops: usize,
}

impl FakeKernel {
    /// A route of someone else's, as `ip route add` would make.
    pub fn foreign_route(&mut self, dst: &str, protocol: u8) {
        let dst: IpNet = dst.parse().expect("a CIDR");
        self.routes.insert(
            dst,
            Route {
                dst,
                gw: Some("192.168.1.1".parse().expect("an address")),
                oif: Some(2),
                table: MAIN_TABLE,
                protocol,
                nexthop: None,
            },
        );
    }

    /// Our routes as (destination, next hop's gateway).
    pub fn our_routes(&self) -> BTreeMap<String, String> {
        self.routes
            .values()
            .filter(|r| r.protocol == ROUTE_PROTOCOL)
            .map(|r| {
                let via = r
                    .nexthop
                    .and_then(|id| self.nexthops.get(&id))
                    .map_or("?".to_owned(), |n| n.gw.to_string());
                (r.dst.to_string(), via)
            })
            .collect()
    }
}

impl Routes for FakeKernel {
    fn nexthops(&mut self) -> Result<Vec<Nexthop>> {
        Ok(self.nexthops.values().cloned().collect())
    }

    fn routes(&mut self) -> Result<Vec<Route>> {
        Ok(self.routes.values().cloned().collect())
    }

    fn apply_routes(&mut self, ops: &[RouteOp]) -> Result<()> {
        let mut first = None;
        for op in ops {
            self.ops += 1;
            match op {
                RouteOp::Nexthop(n) => {
                    self.nexthops.insert(n.id, n.clone());
                }
                RouteOp::Route { dst, nexthop } => {
                    if !self.nexthops.contains_key(nexthop) {
                        first.get_or_insert(format!("route {dst}: no nexthop {nexthop}"));
                        continue;
                    }
                    self.routes.insert(
                        *dst,
                        Route {
                            dst: *dst,
                            gw: None,
                            oif: None,
                            table: MAIN_TABLE,
                            protocol: ROUTE_PROTOCOL,
                            nexthop: Some(*nexthop),
                        },
                    );
                }
                RouteOp::DeleteRoute(dst) => {
                    if self
                        .routes
                        .get(dst)
                        .is_some_and(|r| r.protocol == ROUTE_PROTOCOL)
                    {
                        self.routes.remove(dst);
                    }
                }
                RouteOp::DeleteNexthop(id) => {
                    self.nexthops.remove(id);
                    self.routes.retain(|_, r| r.nexthop != Some(*id));
                }
            }
        }
        match first {
            Some(e) => bail!(e),
            None => Ok(()),
        }
    }
}

impl Neighbours for FakeKernel {
    fn entries(&mut self, dev: u32, fdb: bool) -> Result<Vec<Entry>> {
        Ok(self.entries.get(&(dev, fdb)).cloned().unwrap_or_default())
    }

    fn apply_entries(&mut self, ops: &[EntryOp]) -> Result<()> {
        for op in ops {
            self.ops += 1;
            let list = self.entries.entry((op.dev, op.fdb)).or_default();
            let same = |e: &Entry| match op.fdb {
                true => e.mac == op.entry.mac,
                false => e.ip == op.entry.ip,
            };
            list.retain(|e| !same(e));
            if !op.delete {
                list.push(op.entry.clone());
            }
            list.sort();
        }
        Ok(())
    }
}

impl Egress for FakeKernel {
    fn replace_egress(&mut self, plan: Option<&MasqPlan>) -> Result<()> {
        self.egress = Some(plan.cloned());
        Ok(())
    }

    fn egress_intact(&mut self) -> Result<bool> {
        Ok(self.egress.is_some())
    }
}

/// Device indexes count up from 10 and are never reused, as the kernel's.
pub const FIRST_DEVICE: u32 = 10;

impl Devices for FakeKernel {
    fn ensure_vxlan(&mut self, spec: &VxlanSpec<'_>, subnet: IpNet) -> Result<u32> {
        Ok(self.ensure_device(spec.name, subnet))
    }
}

impl Tunnels for FakeKernel {
    fn ensure_tunnel(&mut self, spec: &DeviceSpec<'_>) -> Result<u32> {
        Ok(self.ensure_device(spec.name, spec.subnets[0]))
    }

    fn tunnel_peers(&mut self, device: &str) -> Result<Vec<PeerState>> {
        Ok(self.tunnel_peers.get(device).cloned().unwrap_or_default())
    }

    fn apply_tunnel(&mut self, device: &str, ops: &[PeerOp]) -> Result<()> {
        let peers = self.tunnel_peers.entry(device.to_owned()).or_default();
        for op in ops {
            self.ops += 1;
            let key = match op {
                PeerOp::Set(p) => p.key,
                PeerOp::Remove(key) => *key,
            };
            peers.retain(|p| p.key != key);
            if let PeerOp::Set(p) = op {
                peers.push(p.clone());
            }
        }
        Ok(())
    }
}

impl FakeKernel {
    fn ensure_device(&mut self, name: &str, subnet: IpNet) -> u32 {
        if let Some((index, _)) = self.devices.get(name) {
            return *index;
        }
        let index = FIRST_DEVICE + self.devices_made;
        self.devices_made += 1;
        self.devices.insert(name.to_owned(), (index, subnet));
        index
    }
}

impl FakeKernel {
    /// Deletes a device as `ip link del` would, with its entries and the
    /// nexthop objects (and so routes) through it.
    pub fn delete_device(&mut self, name: &str) {
        let Some((index, _)) = self.devices.remove(name) else {
            return;
        };
        self.tunnel_peers.remove(name);
        self.entries.retain(|(dev, _), _| *dev != index);
        let gone: Vec<u32> = self
            .nexthops
            .values()
            .filter(|n| n.oif == index)
            .map(|n| n.id)
            .collect();
        for id in gone {
            self.nexthops.remove(&id);
            self.routes.retain(|_, r| r.nexthop != Some(id));
        }
    }
}

/// The set of entries on a device, for assertions.
pub fn entry_set(k: &FakeKernel, dev: u32, fdb: bool) -> BTreeSet<Entry> {
    k.entries
        .get(&(dev, fdb))
        .map(|v| v.iter().cloned().collect())
        .unwrap_or_default()
}

/// A fake link's name.
pub fn link_name(index: u32) -> String {
    format!("pn{index}")
}

impl Guard for FakeKernel {
    fn guard_table(&mut self) -> Result<TableState> {
        Ok(match &self.guard {
            None => TableState::Missing,
            Some((LAYOUT, _)) => TableState::Current,
            Some((layout, _)) => TableState::Outdated(Some(*layout)),
        })
    }

    fn write_guard_table(&mut self) -> Result<Carry> {
        let mut elements = self.guard.take().map(|(_, e)| e).unwrap_or_default();
        let names: Vec<(u32, String)> = self.links.keys().map(|i| (*i, link_name(*i))).collect();
        let links: Vec<PortLink<'_>> = names
            .iter()
            .map(|(i, name)| PortLink {
                ifindex: *i,
                name,
                enslaved: true,
                alias: self.links[i].as_deref(),
            })
            .collect();
        let carried = carry(&elements, &links);
        elements.extend(carried.elements.iter().cloned());
        self.guard = Some((LAYOUT, elements));
        Ok(carried)
    }

    fn guard_elements(&mut self) -> Result<Vec<Element>> {
        Ok(self
            .guard
            .as_ref()
            .map(|(_, e)| e.clone())
            .unwrap_or_default())
    }

    fn ports(&mut self) -> Result<(Links, Vec<Port>)> {
        let ports = self
            .links
            .iter()
            .filter_map(|(i, alias)| Port::from_alias(*i, &link_name(*i), alias.as_deref()?))
            .collect();
        Ok((
            self.links.keys().map(|i| (*i, link_name(*i))).collect(),
            ports,
        ))
    }

    fn apply_guard(&mut self, plan: &ElementPlan) -> Result<()> {
        let Some((_, elements)) = &mut self.guard else {
            bail!("no anti-spoofing table");
        };
        elements.retain(|e| !plan.delete.contains(e));
        elements.extend(plan.add.iter().cloned());
        Ok(())
    }

    fn record_port(&mut self, port: &Port) -> Result<()> {
        self.links.insert(port.ifindex, port.alias());
        Ok(())
    }

    fn guard_drops(&mut self) -> Result<Vec<(String, u64)>> {
        Ok(self.guard_drops.clone())
    }
}

impl Gateways for FakeKernel {
    fn bridge_addresses(&mut self) -> Result<Vec<(u32, IpNet)>> {
        Ok(self.bridge_addresses.clone())
    }

    fn delete_address(&mut self, index: u32, addr: IpNet) -> Result<()> {
        self.bridge_addresses.retain(|a| *a != (index, addr));
        Ok(())
    }
}
