//! The agent's loop: lease, subnet file, then watch the leases and
//! reconcile. Restarts, repeated runs and drift repair are one code path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use podnet_core::cluster::desired::{MasqPlan, host_gw_routes, masq_plan, subnet_file};
use podnet_core::cluster::lease::Lease;
use podnet_core::cluster::netconf::ClusterConf;
use podnet_linux::netlink::Netlink;
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
        let me = NodeInfo {
            name: node::name(&args)?,
            public_ip,
            vtep_mac: None,
        };
        let ttl = Duration::from_secs(args.lease_ttl);
        let lease = store.acquire(&me, &conf, ttl)?;
        let mtu = conf.backend.mtu.unwrap_or(uplink.mtu);
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
            applied_masq: None,
            renewed: Instant::now(),
        })
    }

    pub fn run(&mut self, stop: &AtomicBool, resync: Duration) -> Result<()> {
        let mut revision = 0;
        while !stop.load(Ordering::SeqCst) {
            match self.store.watch(revision, resync) {
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
        let desired = host_gw_routes(&self.me.name, leases, now());
        let diff = datapath::reconcile_routes(&mut self.nl, &desired)?;
        for r in &diff.replace {
            tracing::info!(dst = %r.dst, via = %r.via, "route installed");
        }
        for dst in &diff.delete {
            tracing::info!(%dst, "route removed");
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
