//! Carving node subnets out of a cluster CIDR.

use ipnet::IpNet;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ipam::addr::{from_u128, to_u128};

/// One address family's cluster CIDR and how it is carved (validated by
/// `netconf`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyConf {
    pub network: IpNet,
    pub subnet_len: u8,
    pub subnet_min: IpNet,
    pub subnet_max: IpNet,
}

fn bits(net: &IpNet) -> u8 {
    if net.addr().is_ipv4() { 32 } else { 128 }
}

/// How many /`len` subnets `net` holds (saturating for huge IPv6 spaces).
pub fn subnet_count(net: &IpNet, len: u8) -> u128 {
    let shift = u32::from(len.saturating_sub(net.prefix_len()));
    1u128.checked_shl(shift).unwrap_or(u128::MAX)
}

/// The `n`th /`len` subnet of `net`.
pub fn nth_subnet(net: &IpNet, len: u8, n: u128) -> Option<IpNet> {
    if n >= subnet_count(net, len) {
        return None;
    }
    let step = 1u128.checked_shl(u32::from(bits(net) - len))?;
    let base = to_u128(net.network());
    let addr = from_u128(net.network(), base.checked_add(n.checked_mul(step)?)?);
    IpNet::new(addr, len).ok()
}

/// The index of `sub` among `net`'s subnets of its length.
pub fn index_of(net: &IpNet, sub: &IpNet) -> Option<u128> {
    if !net.contains(sub) || sub.prefix_len() < net.prefix_len() {
        return None;
    }
    let step = 1u128.checked_shl(u32::from(bits(net) - sub.prefix_len()))?;
    Some((to_u128(sub.network()) - to_u128(net.network())) / step)
}

/// The first subnet between SubnetMin and SubnetMax that `taken` does not
/// hold, in order, so a busy cluster fills from the bottom.
pub fn first_free(fam: &FamilyConf, taken: &[IpNet]) -> Option<IpNet> {
    free_subnets(fam, taken, 1).pop()
}

/// Up to `n` subnets between SubnetMin and SubnetMax that overlap nothing
/// in `taken`, in order.
pub fn free_subnets(fam: &FamilyConf, taken: &[IpNet], n: usize) -> Vec<IpNet> {
    let (Some(lo), Some(hi)) = (
        index_of(&fam.network, &fam.subnet_min),
        index_of(&fam.network, &fam.subnet_max),
    ) else {
        return Vec::new();
    };
    // Same-length subnets are looked up; only others need an overlap test.
    let same: BTreeSet<&IpNet> = taken
        .iter()
        .filter(|t| t.prefix_len() == fam.subnet_len)
        .collect();
    let other: Vec<&IpNet> = taken
        .iter()
        .filter(|t| t.prefix_len() != fam.subnet_len)
        .collect();
    (lo..=hi)
        .filter_map(|i| nth_subnet(&fam.network, fam.subnet_len, i))
        .filter(|s| {
            !same.contains(s)
                && !other
                    .iter()
                    .any(|t| t.contains(&s.network()) || s.contains(&t.network()))
        })
        .take(n)
        .collect()
}

/// Whether `sub` is a subnet this family could lease.
pub fn is_leasable(fam: &FamilyConf, sub: &IpNet) -> bool {
    sub.prefix_len() == fam.subnet_len
        && *sub == sub.trunc()
        && index_of(&fam.network, sub)
            .zip(index_of(&fam.network, &fam.subnet_min))
            .zip(index_of(&fam.network, &fam.subnet_max))
            .is_some_and(|((i, lo), hi)| lo <= i && i <= hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fam(network: &str, len: u8, min: &str, max: &str) -> FamilyConf {
        FamilyConf {
            network: network.parse().unwrap(),
            subnet_len: len,
            subnet_min: min.parse().unwrap(),
            subnet_max: max.parse().unwrap(),
        }
    }

    /// flannel's defaults for 10.244.0.0/16.
    fn v4() -> FamilyConf {
        fam("10.244.0.0/16", 24, "10.244.1.0/24", "10.244.255.0/24")
    }

    #[test]
    fn carving_arithmetic() {
        let net: IpNet = "10.244.0.0/16".parse().unwrap();
        assert_eq!(subnet_count(&net, 24), 256);
        assert_eq!(
            nth_subnet(&net, 24, 3).unwrap().to_string(),
            "10.244.3.0/24"
        );
        assert_eq!(nth_subnet(&net, 24, 256), None);
        let sub: IpNet = "10.244.7.0/24".parse().unwrap();
        assert_eq!(index_of(&net, &sub), Some(7));
        let v6: IpNet = "fd00::/48".parse().unwrap();
        assert_eq!(
            nth_subnet(&v6, 64, 2).unwrap().to_string(),
            "fd00:0:0:2::/64"
        );
    }

    #[test]
    fn first_free_skips_taken_and_respects_bounds() {
        let fam = v4();
        assert_eq!(first_free(&fam, &[]).unwrap().to_string(), "10.244.1.0/24");
        let taken: Vec<IpNet> = ["10.244.1.0/24", "10.244.2.0/24"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            first_free(&fam, &taken).unwrap().to_string(),
            "10.244.3.0/24"
        );
        let all: Vec<IpNet> = (1..=255)
            .map(|i| format!("10.244.{i}.0/24").parse().unwrap())
            .collect();
        assert_eq!(first_free(&fam, &all), None);
        let some: Vec<String> = free_subnets(&fam, &taken, 3)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(some, ["10.244.3.0/24", "10.244.4.0/24", "10.244.5.0/24"]);
        let wide: Vec<IpNet> = vec!["10.244.0.0/22".parse().unwrap()];
        assert_eq!(
            first_free(&fam, &wide).unwrap().to_string(),
            "10.244.4.0/24",
            "a wider taken subnet covers its /24s"
        );
        assert!(is_leasable(&fam, &"10.244.9.0/24".parse().unwrap()));
        assert!(
            !is_leasable(&fam, &"10.244.0.0/24".parse().unwrap()),
            "below SubnetMin"
        );
        assert!(!is_leasable(&fam, &"10.244.9.0/25".parse().unwrap()));
    }

    proptest! {
        /// Handing out subnets one by one never repeats or overlaps one.
        #[test]
        fn sequential_leases_never_overlap(n in 1usize..60, freed in proptest::collection::vec(0usize..60, 0..10)) {
            let fam = fam("10.0.0.0/18", 24, "10.0.1.0/24", "10.0.63.0/24");
            let mut taken: Vec<IpNet> = Vec::new();
            for i in 0..n {
                if freed.contains(&i) && !taken.is_empty() {
                    taken.remove(i % taken.len());
                }
                let Some(s) = first_free(&fam, &taken) else { break };
                prop_assert!(is_leasable(&fam, &s));
                prop_assert!(taken.iter().all(|t| !t.contains(&s.network()) && !s.contains(&t.network())));
                taken.push(s);
            }
        }
    }
}
