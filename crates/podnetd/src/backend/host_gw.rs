//! host-gw owns nothing but its routes (`crate::datapath`).

use anyhow::Result;
use ipnet::IpNet;
use podnet_core::cluster::backend::host_gw::HostGw;
use podnet_core::cluster::desired::Datapath;
use podnet_core::cluster::lease::LeaseAttrs;

use super::{Apply, Node, Overlay};

impl<K> Apply<K> for HostGw {
    fn ensure_devices(&self, _: &mut K, _: &LeaseAttrs, _: &Node, _: &[IpNet]) -> Result<Overlay> {
        Ok(Overlay::default())
    }

    fn reconcile_entries(&self, _: &mut K, _: &Overlay, _: &Datapath) -> Result<usize> {
        Ok(0)
    }
}

pub fn cleanup(_: &mut podnet_linux::netlink::Netlink) -> Result<()> {
    Ok(())
}
