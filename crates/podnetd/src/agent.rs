//! The agent's loop: lease, subnet file, then watch the leases and
//! reconcile. Restarts, repeated runs and drift repair are one code path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ipnet::IpNet;
use podnet_core::cluster::desired::{
    MasqPlan, Me, VXLAN_OVERHEAD_V4, VXLAN_OVERHEAD_V6, desired, family_index, masq_plan, pod_mtu,
    subnet_file,
};
use podnet_core::cluster::lease::Lease;
use podnet_core::cluster::netconf::{BackendType, ClusterConf};
use podnet_core::names::vtep_mac;
use podnet_linux::netlink::{Link, Netlink, VxlanSpec};
use podnet_store::{NodeInfo, Store, now};

use crate::{Args, datapath, node};

pub struct Agent {
    args: Args,
    store: Box<dyn Store>,
    me: NodeInfo,
    conf: ClusterConf,
    lease: Lease,
    ttl: Duration,
    nl: Netlink,
    /// The underlay segments this node sits on (for DirectRouting).
    segments: Vec<IpNet>,
    devices: datapath::Devices,
    /// The links holding this node's underlay addresses, per family.
    underlay: [Option<u32>; 2],
    /// What the egress table was last set to, so it is rewritten only on
    /// change (and always once at start).
    applied_masq: Option<Option<MasqPlan>>,
    renewed: Instant,
}

impl Agent {
    pub fn start(args: Args) -> Result<Self> {
        let store = podnet_store::open(&args.store)?;
        let proposed = match &args.net_conf {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("--net-conf {}", path.display()))?,
            ),
            None => None,
        };
        if let Some(p) = &proposed {
            // Refuse a bad file before it can become the cluster's config.
            ClusterConf::parse(p)?;
        }
        let stored = store.net_conf(proposed.as_deref())?;
        if proposed.as_deref().is_some_and(|p| p != stored) {
            tracing::warn!("the store already holds a different net-conf; using the stored one");
        }
        let conf = ClusterConf::parse(&stored)?;

        let mut nl = Netlink::open()?;
        let (public_ip, uplink) = node::public_ip(&args, &mut nl)?;
        node::check_no_overlap(&conf.cluster_cidrs(), public_ip)?;
        if let Some(v6) = args.public_ipv6 {
            node::check_no_overlap(&conf.cluster_cidrs(), v6)?;
        }
        let vxlan = conf.backend.kind == BackendType::Vxlan;
        let me = NodeInfo {
            name: node::name(&args)?,
            public_ip,
            public_ipv6: args.public_ipv6,
            vtep_mac: (vxlan && conf.ipv4.is_some())
                .then(|| datapath::mac_string(&vtep_mac(&public_ip))),
            vtep_mac6: args
                .public_ipv6
                .filter(|_| vxlan && conf.ipv6.is_some())
                .map(|ip| datapath::mac_string(&vtep_mac(&ip))),
        };
        let ttl = Duration::from_secs(conf.lease_ttl);
        let lease = store.acquire(&me, &conf, ttl)?;
        let devices = if vxlan {
            vxlan_devices(&mut nl, &conf, &me, &lease, &uplink)?
        } else {
            Default::default()
        };
        let underlay = [
            Some(uplink.index),
            match args.public_ipv6 {
                Some(v6) => Some(node::link_holding(
                    &nl.all_addresses()?,
                    v6,
                    "--public-ipv6",
                )?),
                None => None,
            },
        ];
        let segments: Vec<IpNet> = nl
            .addresses(uplink.index)?
            .into_iter()
            .map(|a| a.trunc())
            .collect();
        let mtu = pod_mtu(&conf, uplink.mtu);
        node::write_subnet_file(&args.run_dir, &subnet_file(&conf, &lease, mtu))?;
        node::enable_forwarding(conf.ipv6.is_some())?;
        tracing::info!(
            node = %me.name,
            ip = %public_ip,
            subnets = ?lease.subnets,
            backend = conf.backend.kind.as_str(),
            mtu,
            "lease acquired"
        );
        Ok(Agent {
            args,
            store,
            me,
            conf,
            lease,
            ttl,
            nl,
            segments,
            devices,
            underlay,
            applied_masq: None,
            renewed: Instant::now(),
        })
    }

    pub fn run(&mut self, stop: &AtomicBool, resync: Duration) -> Result<()> {
        let mut revision = podnet_store::NO_REVISION;
        // Wake often enough both to resync (drift repair) and to renew.
        let wait = resync.min(self.ttl / 4);
        while !stop.load(Ordering::SeqCst) {
            match self.store.watch(revision, wait) {
                Ok((rev, leases)) => {
                    revision = rev;
                    if let Err(e) = self.reconcile(&leases) {
                        tracing::warn!("reconcile failed (will retry): {e:#}");
                    }
                }
                Err(e) => tracing::warn!("store: {e} (will retry)"),
            }
            if self.renewed.elapsed() >= self.ttl / 4 {
                self.renew();
            }
        }
        Ok(())
    }

    fn renew(&mut self) {
        let renewed = self
            .store
            .renew(&self.me, self.ttl)
            // The lease was taken from us (say, released by an operator):
            // acquire one again rather than route for a subnet we lost.
            .or_else(|_| self.store.acquire(&self.me, &self.conf, self.ttl));
        match renewed {
            Ok(lease) => {
                if lease.subnets != self.lease.subnets {
                    tracing::warn!(old = ?self.lease.subnets, new = ?lease.subnets, "subnet changed");
                }
                self.lease = lease;
                self.renewed = Instant::now();
            }
            Err(e) => tracing::warn!("lease renewal failed (will retry): {e}"),
        }
    }

    fn reconcile(&mut self, leases: &[Lease]) -> Result<()> {
        let me = Me {
            name: &self.me.name,
            segments: &self.segments,
        };
        let started = Instant::now();
        let want = desired(&me, &self.conf, leases, now());
        let links = datapath::HopLinks {
            vxlan: &self.devices,
            underlay: self.underlay,
        };
        let changes = datapath::reconcile(&mut self.nl, &links, &want)?;
        if let Some(p) = changes.routes.as_ref().filter(|p| !p.is_empty()) {
            // One line per route reads well for a few peers, not thousands.
            if p.routes.len() + p.delete_routes.len() <= 16 {
                for (r, id) in &p.routes {
                    tracing::info!(dst = %r.dst, via = %r.via, vxlan = r.vxlan, nexthop = id, "route installed");
                }
                for dst in &p.delete_routes {
                    tracing::info!(%dst, "route removed");
                }
            }
            tracing::info!(
                installed = p.routes.len(),
                removed = p.delete_routes.len(),
                peers = want.routes.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "routes reconciled"
            );
        }
        if changes.entries > 0 {
            tracing::info!(
                changed = changes.entries,
                "vxlan neighbour/fdb entries updated"
            );
        }
        let plan = self.args.masquerade.then(|| masq_plan(&self.conf, leases));
        if self.applied_masq.as_ref() != Some(&plan) {
            datapath::apply_masquerade(plan.as_ref())?;
            tracing::info!(nodes = ?plan.as_ref().map(|p| p.node_ips.len()), "egress masquerade updated");
            self.applied_masq = Some(plan);
        }
        Ok(())
    }
}

/// One vxlan device per family with a pod subnet, over that family's
/// underlay address, sized for its encapsulation overhead.
fn vxlan_devices(
    nl: &mut Netlink,
    conf: &ClusterConf,
    me: &NodeInfo,
    lease: &Lease,
    uplink: &Link,
) -> Result<datapath::Devices> {
    let mut devices: datapath::Devices = Default::default();
    for subnet in &lease.subnets {
        let v4 = subnet.addr().is_ipv4();
        let (local, mac, overhead) = match (v4, me.public_ipv6) {
            (true, _) => (me.public_ip, &me.vtep_mac, VXLAN_OVERHEAD_V4),
            (false, Some(v6)) => (v6, &me.vtep_mac6, VXLAN_OVERHEAD_V6),
            (false, None) => {
                tracing::warn!("no --public-ipv6: IPv6 pods are not reachable from other nodes");
                continue;
            }
        };
        let mac = mac
            .as_deref()
            .and_then(podnet_core::names::parse_mac)
            .unwrap_or_else(|| vtep_mac(&local));
        let spec = VxlanSpec {
            name: datapath::device_name(v4),
            vni: conf.backend.vni,
            port: conf.backend.port,
            local,
            underlay: uplink.index,
            mac,
            mtu: uplink.mtu.saturating_sub(overhead),
        };
        devices[family_index(v4)] = Some(datapath::ensure_vxlan(nl, &spec, *subnet)?);
    }
    Ok(devices)
}
