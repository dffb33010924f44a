//! vxlan: one device per family with a pod subnet, and its permanent
//! neighbour and FDB entries, one of each per peer.

use std::collections::BTreeSet;

use anyhow::{Result, anyhow};
use ipnet::IpNet;
use nix::errno::Errno;
use podnet_core::cluster::backend::vxlan::{
    Entries, Fdb, Neighbour, OVERHEAD_V4, OVERHEAD_V6, Vxlan,
};
use podnet_core::cluster::desired::{Datapath, diff, family_index};
use podnet_core::cluster::lease::LeaseAttrs;
use podnet_core::names::{VXLAN4, VXLAN6, parse_mac, vtep_mac};
use podnet_linux::netlink::{Change, Entry, Link, Netlink, VxlanSpec};

use super::{Apply, Node, Overlay, ensure_address};
use crate::kernel::Host;

/// One change to a vxlan device's neighbour (`fdb: false`) or FDB entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryOp {
    pub dev: u32,
    pub fdb: bool,
    pub entry: Entry,
    pub delete: bool,
}

/// Permanent neighbour and FDB entries of the vxlan devices.
pub trait Neighbours {
    fn entries(&mut self, dev: u32, fdb: bool) -> Result<Vec<Entry>>;
    /// Tries every op; returns the first error after all were tried.
    fn apply_entries(&mut self, ops: &[EntryOp]) -> Result<()>;
}

/// The vxlan devices themselves.
pub trait Devices {
    /// Creates `spec` if missing, recreates it if it is not a vxlan or
    /// differs in MAC, VNI, port or local address, gives it the node
    /// subnet's network address and sets it up; returns its index.
    fn ensure_vxlan(&mut self, spec: &VxlanSpec<'_>, subnet: IpNet) -> Result<u32>;
}

pub fn device_name(v4: bool) -> &'static str {
    if v4 { VXLAN4 } else { VXLAN6 }
}

impl<K: Neighbours + Devices> Apply<K> for Vxlan {
    /// One device per family with a pod subnet, over that family's
    /// underlay address, sized for its encapsulation overhead.
    fn ensure_devices(
        &self,
        k: &mut K,
        me: &LeaseAttrs,
        node: &Node,
        subnets: &[IpNet],
    ) -> Result<Overlay> {
        let mut devices = Overlay::default();
        let Some(uplink) = node.links[0] else {
            return Ok(devices);
        };
        for subnet in subnets {
            let v4 = subnet.addr().is_ipv4();
            // Without an IPv6 underlay address, IPv6 pods stay local.
            let Some(local) = me.underlay(v4) else {
                continue;
            };
            let overhead = if v4 { OVERHEAD_V4 } else { OVERHEAD_V6 };
            let spec = VxlanSpec {
                name: device_name(v4),
                vni: self.vni,
                port: self.port,
                local,
                underlay: uplink,
                mac: vtep_mac(&local),
                mtu: node.mtu.saturating_sub(overhead),
            };
            devices[family_index(v4)] = Some(k.ensure_vxlan(&spec, *subnet)?);
        }
        Ok(devices)
    }

    fn reconcile_entries(&self, k: &mut K, overlay: &Overlay, want: &Datapath) -> Result<usize> {
        let none = Entries::default();
        let want = want.objects::<Entries>().unwrap_or(&none);
        let mut ops = Vec::new();
        for (f, dev) in overlay.iter().enumerate() {
            let Some(dev) = *dev else {
                continue;
            };
            let neigh: BTreeSet<Entry> =
                want.neighbours[f].iter().filter_map(neigh_entry).collect();
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
        k.apply_entries(&ops)?;
        Ok(ops.len())
    }
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

impl Neighbours for Host {
    fn entries(&mut self, dev: u32, fdb: bool) -> Result<Vec<Entry>> {
        Ok(self.nl.entries(dev, fdb)?)
    }

    fn apply_entries(&mut self, ops: &[EntryOp]) -> Result<()> {
        let batch: Vec<Change> = ops
            .iter()
            .map(|op| match op.delete {
                true => Change::delete_entry(op.dev, &op.entry, op.fdb),
                false => Change::replace_entry(op.dev, &op.entry, op.fdb),
            })
            .collect();
        Ok(self.nl.apply(&batch)?)
    }
}

impl Devices for Host {
    fn ensure_vxlan(&mut self, spec: &VxlanSpec<'_>, subnet: IpNet) -> Result<u32> {
        let nl = &mut self.nl;
        let found = nl.link(spec.name)?;
        if let Some(link) = &found
            && is_as_wanted(link, spec)
        {
            ensure_address(nl, link, subnet)?;
            return Ok(link.index);
        }
        if let Some(link) = found {
            nl.delete_link(link.index)?;
        }
        match nl.create_vxlan(spec) {
            Err(e) if e.errno() == Some(Errno::EEXIST) => {}
            other => other?,
        }
        let link = nl
            .link(spec.name)?
            .ok_or_else(|| anyhow!("{} vanished after creation", spec.name))?;
        tracing::info!(device = spec.name, index = link.index, "vxlan device made");
        ensure_address(nl, &link, subnet)?;
        Ok(link.index)
    }
}

/// A device of another kind, MAC, VNI, port or local address is made again.
fn is_as_wanted(link: &Link, spec: &VxlanSpec<'_>) -> bool {
    link.kind.as_deref() == Some("vxlan")
        && link.mac == spec.mac
        && link.vxlan.is_some_and(|v| v.matches(spec))
}

/// Removes both vxlan devices, with their entries.
pub fn cleanup(nl: &mut Netlink) -> Result<()> {
    for name in [VXLAN4, VXLAN6] {
        if let Some(link) = nl.link(name)? {
            nl.delete_link(link.index)?;
        }
    }
    Ok(())
}
