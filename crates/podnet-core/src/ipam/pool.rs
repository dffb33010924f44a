//! The address pool: range sets validated from host-local style config.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::addr::{first_host, last_host, to_u128};

/// One range as written in config (`ipam.ranges[i][j]`, or the top-level
/// `subnet`/`rangeStart`/`rangeEnd`/`gateway` shorthand).
/// A pool config that does not validate; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PoolError(pub String);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeConf {
    pub subnet: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// A validated range: `start..=end` inside `subnet`, with its gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: IpAddr,
}

impl Range {
    /// Addresses this range can hand out: `start..=end`, but its gateway.
    pub fn size(&self) -> u128 {
        let all = to_u128(self.end).saturating_sub(to_u128(self.start)) + 1;
        all - u128::from(self.contains(self.gateway))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let n = to_u128(ip);
        same_family(ip, self.start) && to_u128(self.start) <= n && n <= to_u128(self.end)
    }

    /// Validates one range; `field` names it in errors, e.g. `ipam.ranges[0][1]`.
    pub fn from_conf(conf: &RangeConf, field: &str) -> Result<Self, PoolError> {
        let subnet: IpNet = conf.subnet.parse().map_err(|_| {
            PoolError(format!(
                "{field}.subnet \"{}\" is not a valid CIDR",
                conf.subnet
            ))
        })?;
        if subnet != subnet.trunc() {
            return Err(PoolError(format!(
                "{field}.subnet \"{subnet}\" has host bits set (did you mean \"{}\"?)",
                subnet.trunc()
            )));
        }
        let max_prefix = if subnet.addr().is_ipv4() { 30 } else { 126 };
        if subnet.prefix_len() > max_prefix {
            return Err(PoolError(format!(
                "{field}.subnet \"{subnet}\" is too small: the longest prefix is /{max_prefix}"
            )));
        }
        let hosts = (first_host(&subnet), last_host(&subnet));
        let addr_in = |name: &str, raw: &Option<String>, default: IpAddr| {
            let Some(raw) = raw else { return Ok(default) };
            let ip: IpAddr = raw
                .parse()
                .map_err(|_| PoolError(format!("{field}.{name} \"{raw}\" is not an IP address")))?;
            let n = to_u128(ip);
            if !same_family(ip, subnet.addr()) || n < to_u128(hosts.0) || n > to_u128(hosts.1) {
                return Err(PoolError(format!(
                    "{field}.{name} {ip} is outside the usable addresses of subnet {subnet}"
                )));
            }
            Ok(ip)
        };
        let gateway = addr_in("gateway", &conf.gateway, hosts.0)?;
        let start = addr_in("rangeStart", &conf.range_start, hosts.0)?;
        let end = addr_in("rangeEnd", &conf.range_end, hosts.1)?;
        if to_u128(start) > to_u128(end) {
            return Err(PoolError(format!(
                "{field}.rangeStart {start} is after {field}.rangeEnd {end}"
            )));
        }
        Ok(Range {
            subnet,
            start,
            end,
            gateway,
        })
    }

    fn overlaps(&self, other: &Range) -> bool {
        same_family(self.start, other.start)
            && to_u128(self.start) <= to_u128(other.end)
            && to_u128(other.start) <= to_u128(self.end)
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// Ranges a pod takes one address from; all of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet {
    pub ranges: Vec<Range>,
}

impl RangeSet {
    /// A stable name for this set, used to remember its round-robin cursor.
    pub fn key(&self) -> String {
        let names: Vec<String> = self
            .ranges
            .iter()
            .map(|r| format!("{}-{}", r.start, r.end))
            .collect();
        names.join(",")
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    pub fn is_ipv4(&self) -> bool {
        self.ranges.first().is_some_and(|r| r.start.is_ipv4())
    }

    /// Whether `ip` must never be handed out: a gateway of any range.
    pub fn is_reserved(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.gateway == ip)
    }
}

/// The whole pool: one address per range set (dual-stack has two sets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub sets: Vec<RangeSet>,
}

impl Pool {
    /// Validates `ranges` (already normalised from the shorthand form);
    /// `field` names range `[i][j]` in error messages.
    pub fn from_conf(
        ranges: &[Vec<RangeConf>],
        field: impl Fn(usize, usize) -> String,
    ) -> Result<Self, PoolError> {
        if ranges.is_empty() {
            return Err(PoolError("ipam has no ranges".into()));
        }
        let mut sets: Vec<RangeSet> = Vec::new();
        for (i, set) in ranges.iter().enumerate() {
            if set.is_empty() {
                return Err(PoolError(format!("{} is an empty range set", field(i, 0))));
            }
            let mut out = Vec::new();
            for (j, conf) in set.iter().enumerate() {
                let name = field(i, j);
                let range = Range::from_conf(conf, &name)?;
                if let Some(first) = out.first().map(|r: &Range| r.start)
                    && !same_family(first, range.start)
                {
                    return Err(PoolError(format!(
                        "{name} mixes address families within one range set"
                    )));
                }
                let all = sets.iter().flat_map(|s| s.ranges.iter()).chain(out.iter());
                if let Some(other) = all.clone().find(|r| r.overlaps(&range)) {
                    return Err(PoolError(format!(
                        "{name} ({}-{}) overlaps range {}-{}",
                        range.start, range.end, other.start, other.end
                    )));
                }
                out.push(range);
            }
            sets.push(RangeSet { ranges: out });
        }
        Ok(Pool { sets })
    }

    pub fn gateways(&self) -> impl Iterator<Item = (IpAddr, IpNet)> + '_ {
        self.sets
            .iter()
            .flat_map(|s| s.ranges.iter())
            .map(|r| (r.gateway, r.subnet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(subnet: &str, start: Option<&str>, end: Option<&str>, gw: Option<&str>) -> RangeConf {
        RangeConf {
            subnet: subnet.into(),
            range_start: start.map(Into::into),
            range_end: end.map(Into::into),
            gateway: gw.map(Into::into),
        }
    }

    fn ranges_field(i: usize, j: usize) -> String {
        format!("ipam.ranges[{i}][{j}]")
    }

    #[test]
    fn defaults_skip_network_and_broadcast() {
        let r = Range::from_conf(&conf("10.244.1.0/24", None, None, None), "ipam").unwrap();
        assert_eq!(r.start.to_string(), "10.244.1.1");
        assert_eq!(r.end.to_string(), "10.244.1.254");
        assert_eq!(r.gateway.to_string(), "10.244.1.1");
    }

    #[test]
    fn invalid_ranges_are_code_7_and_name_the_field() {
        let cases = [
            (conf("10.244.1.0/33", None, None, None), "subnet"),
            (conf("banana", None, None, None), "subnet"),
            (conf("10.244.1.5/24", None, None, None), "host bits"),
            (
                conf("10.244.1.0/24", None, None, Some("10.244.2.1")),
                "gateway",
            ),
            (
                conf(
                    "10.244.1.0/24",
                    Some("10.244.1.9"),
                    Some("10.244.1.3"),
                    None,
                ),
                "rangeStart",
            ),
            (
                conf("10.244.1.0/24", Some("10.244.0.9"), None, None),
                "rangeStart",
            ),
            (
                conf("10.244.1.0/24", None, Some("10.244.1.255"), None),
                "rangeEnd",
            ),
            (
                conf("10.244.1.0/24", None, Some("fd00::1"), None),
                "rangeEnd",
            ),
            (conf("10.244.1.0/31", None, None, None), "too small"),
        ];
        for (c, needle) in cases {
            let e = Range::from_conf(&c, "ipam").unwrap_err();
            assert!(e.0.contains(needle), "{e} lacks {needle}");
        }
    }

    #[test]
    fn overlapping_and_mixed_sets_are_rejected() {
        let overlap = vec![
            vec![conf("10.1.0.0/24", None, None, None)],
            vec![conf("10.1.0.0/25", None, None, None)],
        ];
        assert!(
            Pool::from_conf(&overlap, ranges_field)
                .unwrap_err()
                .0
                .contains("overlaps")
        );
        let mixed = vec![vec![
            conf("10.1.0.0/24", None, None, None),
            conf("fd00::/64", None, None, None),
        ]];
        assert!(
            Pool::from_conf(&mixed, ranges_field)
                .unwrap_err()
                .0
                .contains("families")
        );
    }

    #[test]
    fn dual_stack_pool() {
        let p = Pool::from_conf(
            &[
                vec![conf("10.1.0.0/24", None, None, None)],
                vec![conf("fd00:1::/64", None, None, None)],
            ],
            ranges_field,
        )
        .unwrap();
        assert_eq!(p.sets.len(), 2);
        assert!(p.sets[0].is_ipv4() && !p.sets[1].is_ipv4());
        assert_eq!(p.gateways().count(), 2);
    }

    #[test]
    fn a_range_hands_out_all_but_its_gateway() {
        let r = Range::from_conf(&conf("10.244.1.0/24", None, None, None), "r").unwrap();
        assert_eq!(r.size(), 253, "{r:?}");
        let r = Range::from_conf(
            &conf(
                "10.9.0.0/24",
                Some("10.9.0.100"),
                Some("10.9.0.109"),
                Some("10.9.0.1"),
            ),
            "r",
        )
        .unwrap();
        assert_eq!(r.size(), 10);
    }
}
