//! Start-up, the imperative part: read the net-conf, check every
//! prerequisite, find this node's underlay, acquire the lease, write the
//! subnet file, make the guard table, take the presence lock (from then
//! on the plugin attaches pods) and install the conflist. What it learns
//! becomes the agent's [`Setup`]; the backend's devices are made by the
//! agent's first reconcile, and kept by every one after.

use std::sync::Arc;

use anyhow::{Context, Result};
use podnet_core::cluster::desired::{pod_mtu, subnet_file};
use podnet_core::cluster::lease::LeaseAttrs;
use podnet_core::cluster::netconf::ClusterConf;
use podnet_linux::netlink::Netlink;
use podnet_linux::presence::{self, Presence};
use podnet_store::Store;
use serde_json::Value;

use crate::agent::{Agent, NodeFile, Setup};
use crate::backend::{Backends, Node};
use crate::backoff::until_available;
use crate::kernel::Host;
use crate::{Args, host};

/// The cluster's net-conf: the stored one, after offering ours. Fields
/// this podnet does not know are named once, not refused: a newer podnet
/// may have written them.
async fn net_conf(args: &Args, store: &impl Store) -> Result<ClusterConf> {
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
    let stored = until_available("store", || store.net_conf(proposed.as_deref())).await?;
    if proposed.as_deref().is_some_and(|p| p != stored) {
        tracing::warn!("the store already holds a different net-conf; using the stored one");
    }
    let (conf, unknown) = ClusterConf::parse_lenient(&stored)?;
    if !unknown.is_empty() {
        tracing::warn!(fields = ?unknown, "net-conf has fields this podnet does not know; ignoring them");
    }
    let carving = podnet_core::cluster::netconf::carving_fields(&stored);
    if args.store == "kube" && !carving.is_empty() {
        tracing::warn!(
            fields = ?carving,
            "ignored with --store kube: each node's subnets are its Node's spec.podCIDRs"
        );
    }
    Ok(conf)
}

/// How other nodes reach this one, in flannel's lease shape, with the
/// backend's public identity (WireGuard's public key) if it has one.
fn lease_attrs(
    conf: &ClusterConf,
    args: &Args,
    public_ip: std::net::IpAddr,
    identity: Option<&str>,
) -> LeaseAttrs {
    let backend = conf.backend.decide();
    let data = |ip: Option<std::net::IpAddr>, v4: bool, on: bool| match ip {
        Some(ip) if on => backend.lease_data(v4, ip, identity),
        _ => Value::Null,
    };
    LeaseAttrs {
        public_ip,
        public_ipv6: args.public_ipv6,
        backend_type: backend.type_name().to_owned(),
        backend_data: data(Some(public_ip), true, conf.ipv4.is_some()),
        backend_v6_data: data(args.public_ipv6, false, conf.ipv6.is_some()),
    }
}

pub async fn start<S: Store + 'static>(
    args: &Args,
    store: Arc<S>,
) -> Result<(Agent<S, Host>, Presence)> {
    let conf = net_conf(args, store.as_ref()).await?;
    // Every prerequisite before anything is written: a node that cannot
    // run pods must not look as if it could.
    host::enable_forwarding(conf.ipv6.is_some())?;
    let conflist = match &args.cni_conflist {
        Some(src) => Some(host::read_conflist(src)?),
        None => None,
    };
    let mut nl = Netlink::open()?;
    let (public_ip, uplink) = host::public_ip(args, &mut nl)?;
    host::check_no_overlap(&conf.cluster_cidrs(), public_ip)?;
    if let Some(v6) = args.public_ipv6 {
        host::check_no_overlap(&conf.cluster_cidrs(), v6)?;
    }
    let name = host::name(args)?;
    let underlay = [
        Some(uplink.index),
        match args.public_ipv6 {
            Some(v6) => Some(host::link_holding(
                &nl.all_addresses()?,
                v6,
                "--public-ipv6",
            )?),
            None => None,
        },
    ];
    let node = Node {
        links: underlay,
        mtu: uplink.mtu,
        state_dir: args.state_dir.clone(),
    };
    let identity = Host::apply_of(&conf.backend)?.identity(&node)?;
    let attrs = lease_attrs(&conf, args, public_ip, identity.as_deref());
    let ttl = std::time::Duration::from_secs(conf.lease_ttl);
    let lease = until_available("store", || store.acquire(&name, &attrs, &conf, ttl)).await?;
    if conf.ipv6.is_some()
        && args.public_ipv6.is_none()
        && !conf.backend.decide().overlay_ports().is_empty()
    {
        tracing::warn!("no --public-ipv6: IPv6 pods are not reachable from other nodes");
    }
    let segments = nl
        .addresses(uplink.index)?
        .into_iter()
        .map(|a| a.trunc())
        .collect();
    let mtu = pod_mtu(&conf, uplink.mtu);
    let content = subnet_file(&conf, &lease, mtu);
    let file = NodeFile {
        run_dir: args.run_dir.clone(),
        content: content.clone(),
    };
    tracing::info!(
        node = %name,
        ip = %public_ip,
        subnets = ?lease.subnets,
        backend = conf.backend.type_name(),
        mtu,
        "lease acquired"
    );
    let setup = Setup {
        name,
        attrs,
        conf,
        segments,
        node,
        masquerade: args.masquerade,
        subnet_file: Some(file),
        ipam_dir: Some(args.ipam_dir.clone()),
    };
    let kernel = Host {
        nl,
        protocol: podnet_core::cluster::desired::ROUTE_PROTOCOL,
        egress: None,
    };
    let mut agent = Agent::new(store, kernel, setup, lease);
    // Before pods can be made here: the plugin then never needs `nft`.
    // Should it fail, routes still matter more: the agent's resync tries
    // again, and an ADD meanwhile answers "try again later".
    agent.keep_guard();
    // From here the plugin attaches pods, until podnetd exits.
    host::make_run_dir(&args.run_dir)?;
    let presence = presence::hold(&args.run_dir)
        .with_context(|| format!("--run-dir {}", args.run_dir.display()))?;
    host::write_subnet_file(&args.run_dir, &content)?;
    if let Some(raw) = &conflist {
        host::install_conflist(raw, &args.cni_conf_dir, &args.cni_conflist_name)?;
    }
    Ok((agent, presence))
}
