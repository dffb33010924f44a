//! net-conf: the cluster configuration, in flannel's field names so that a
//! migrating user keeps their `net-conf.json`.

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

pub use super::backend::Backend;
pub use super::carve::FamilyConf;
use super::carve::subnet_count;

/// A validated cluster configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConf {
    pub ipv4: Option<FamilyConf>,
    pub ipv6: Option<FamilyConf>,
    pub backend: Backend,
    /// `Backend.MTU`: the pods' MTU, whatever the uplink's.
    pub mtu: Option<u32>,
    /// Seconds a lease lives without renewal: a node whose agent stops
    /// renewing leaves the cluster after this long.
    pub lease_ttl: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Raw {
    network: Option<String>,
    subnet_len: Option<u8>,
    subnet_min: Option<String>,
    subnet_max: Option<String>,
    #[serde(rename = "EnableIPv4")]
    enable_ipv4: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    #[serde(rename = "IPv6Network")]
    ipv6_network: Option<String>,
    #[serde(rename = "IPv6SubnetLen")]
    ipv6_subnet_len: Option<u8>,
    #[serde(rename = "IPv6SubnetMin")]
    ipv6_subnet_min: Option<String>,
    #[serde(rename = "IPv6SubnetMax")]
    ipv6_subnet_max: Option<String>,
    /// Read by the backend named in it (`cluster::backend`).
    backend: Option<Value>,
    /// podnet's own field: flannel keeps leases for 24 h.
    #[serde(rename = "LeaseTTL")]
    lease_ttl: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("net-conf: {0}")]
pub struct NetConfError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, NetConfError> {
    Err(NetConfError(msg.into()))
}

pub const DEFAULT_NETWORK: &str = "10.244.0.0/16";
pub const DEFAULT_LEASE_TTL: u64 = 24 * 3600;
/// Below this, renewal (every quarter TTL) would hammer the store.
const MIN_LEASE_TTL: u64 = 2;
/// Fewer subnets than this is not a cluster worth carving.
const MIN_SUBNETS: u128 = 4;

impl ClusterConf {
    pub fn parse(json: &str) -> Result<Self, NetConfError> {
        Self::parse_lenient(json).map(|(conf, _)| conf)
    }

    /// Parses, and names the fields it does not know (`Backend.Foo`): a
    /// newer podnet may have written them, so they are for a warning, not
    /// an error, and a rolling upgrade never splits the cluster.
    pub fn parse_lenient(json: &str) -> Result<(Self, Vec<String>), NetConfError> {
        let mut unknown = Vec::new();
        let raw: Raw = serde_ignored::deserialize(
            &mut serde_json::Deserializer::from_str(json),
            // "?" marks an Option on the way: not a field name.
            |path| unknown.push(path.to_string().replace(".?", "")),
        )
        .map_err(|e| NetConfError(e.to_string()))?;
        let conf = Self::validate(raw, &mut unknown)?;
        Ok((conf, unknown))
    }

    fn validate(raw: Raw, unknown: &mut Vec<String>) -> Result<Self, NetConfError> {
        let ipv4 = if raw.enable_ipv4.unwrap_or(true) {
            Some(family(
                "",
                raw.network.as_deref().unwrap_or(DEFAULT_NETWORK),
                raw.subnet_len.unwrap_or(24),
                raw.subnet_min.as_deref(),
                raw.subnet_max.as_deref(),
                true,
            )?)
        } else {
            None
        };
        let ipv6 = if raw.enable_ipv6.unwrap_or(false) {
            let Some(net) = raw.ipv6_network.as_deref() else {
                return err("EnableIPv6 is true but IPv6Network is not set");
            };
            Some(family(
                "IPv6",
                net,
                raw.ipv6_subnet_len.unwrap_or(64),
                raw.ipv6_subnet_min.as_deref(),
                raw.ipv6_subnet_max.as_deref(),
                false,
            )?)
        } else {
            None
        };
        if ipv4.is_none() && ipv6.is_none() {
            return err("both EnableIPv4 and EnableIPv6 are false: no network to carve");
        }
        let backend = Backend::parse(raw.backend.as_ref(), unknown)?;
        let mtu = match raw.backend.as_ref().and_then(|b| b.get("MTU")) {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(mtu @ 576..=65535) => Some(mtu as u32),
                _ => return err(format!("Backend.MTU {v} is outside 576..65535")),
            },
        };
        let lease_ttl = raw.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL);
        if lease_ttl < MIN_LEASE_TTL {
            return err(format!(
                "LeaseTTL {lease_ttl} is below {MIN_LEASE_TTL} seconds"
            ));
        }
        Ok(ClusterConf {
            ipv4,
            ipv6,
            lease_ttl,
            backend,
            mtu,
        })
    }

    pub fn families(&self) -> impl Iterator<Item = &FamilyConf> {
        self.ipv4.iter().chain(self.ipv6.iter())
    }

    pub fn cluster_cidrs(&self) -> Vec<IpNet> {
        self.families().map(|f| f.network).collect()
    }
}

/// Validates one family; `prefix` is "" or "IPv6" to name its fields.
fn family(
    prefix: &str,
    network: &str,
    subnet_len: u8,
    min: Option<&str>,
    max: Option<&str>,
    v4: bool,
) -> Result<FamilyConf, NetConfError> {
    let field = |name: &str| format!("{prefix}{name}");
    let net: IpNet = network
        .parse()
        .map_err(|_| NetConfError(format!("{} \"{network}\" is not a CIDR", field("Network"))))?;
    if net.addr().is_ipv4() != v4 {
        return err(format!(
            "{} \"{network}\" is of the wrong address family",
            field("Network")
        ));
    }
    if net != net.trunc() {
        return err(format!(
            "{} \"{network}\" has host bits set",
            field("Network")
        ));
    }
    let max_len = if v4 { 30 } else { 126 };
    if subnet_len <= net.prefix_len() || subnet_len > max_len {
        return err(format!(
            "{} {subnet_len} does not fit {}: it must be longer than /{} and at most /{max_len}",
            field("SubnetLen"),
            field("Network"),
            net.prefix_len()
        ));
    }
    let subnets: Vec<IpNet> = net
        .subnets(subnet_len)
        .map_err(|e| NetConfError(e.to_string()))?
        .take(2)
        .collect();
    let count = subnet_count(&net, subnet_len);
    let parse_bound =
        |name: &str, raw: Option<&str>, default: IpNet| -> Result<IpNet, NetConfError> {
            let Some(raw) = raw else { return Ok(default) };
            let ip: std::net::IpAddr =
                raw.split('/').next().unwrap_or(raw).parse().map_err(|_| {
                    NetConfError(format!("{} \"{raw}\" is not an address", field(name)))
                })?;
            let sub = IpNet::new(ip, subnet_len).map_err(|e| NetConfError(e.to_string()))?;
            if sub != sub.trunc() || !net.contains(&sub) {
                return err(format!(
                    "{} {raw} is not a /{subnet_len} subnet inside {net}",
                    field(name)
                ));
            }
            Ok(sub)
        };
    // flannel's defaults: skip the first subnet (often the network address
    // itself is special), end at the last one.
    let last = super::carve::nth_subnet(&net, subnet_len, count - 1)
        .ok_or_else(|| NetConfError(format!("{} is empty", field("Network"))))?;
    let min = parse_bound("SubnetMin", min, *subnets.get(1).unwrap_or(&subnets[0]))?;
    let max = parse_bound("SubnetMax", max, last)?;
    let usable = super::carve::index_of(&net, &max)
        .zip(super::carve::index_of(&net, &min))
        .map(|(hi, lo)| hi.saturating_sub(lo) + 1)
        .unwrap_or(0);
    if super::carve::index_of(&net, &min) > super::carve::index_of(&net, &max) {
        return err(format!(
            "{} {min} is after {} {max}",
            field("SubnetMin"),
            field("SubnetMax")
        ));
    }
    if usable < MIN_SUBNETS {
        return err(format!(
            "{} {net} with {} {subnet_len} leaves {usable} subnets between {} and {}; at least {MIN_SUBNETS} are needed",
            field("Network"),
            field("SubnetLen"),
            field("SubnetMin"),
            field("SubnetMax")
        ));
    }
    Ok(FamilyConf {
        network: net,
        subnet_len,
        subnet_min: min,
        subnet_max: max,
    })
}

/// The carving fields a net-conf sets (`SubnetLen`, `SubnetMin`, ...),
/// which mean nothing where the subnets come from elsewhere (Kubernetes'
/// podCIDRs): named so that the agent can say it ignores them.
pub fn carving_fields(json: &str) -> Vec<&'static str> {
    const CARVING: [&str; 6] = [
        "SubnetLen",
        "SubnetMin",
        "SubnetMax",
        "IPv6SubnetLen",
        "IPv6SubnetMin",
        "IPv6SubnetMax",
    ];
    let value: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    CARVING
        .into_iter()
        .filter(|f| value.get(f).is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::backend::host_gw::HostGw;
    use crate::cluster::backend::vxlan::Vxlan;

    #[test]
    fn flannel_defaults() {
        let c = ClusterConf::parse(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#)
            .unwrap();
        let v4 = c.ipv4.as_ref().unwrap();
        assert_eq!(v4.subnet_len, 24);
        assert_eq!(v4.subnet_min.to_string(), "10.244.1.0/24");
        assert_eq!(v4.subnet_max.to_string(), "10.244.255.0/24");
        assert_eq!(c.backend, Backend::new(HostGw::default()));
        assert!(c.ipv6.is_none());
        let empty = ClusterConf::parse("{}").unwrap();
        assert_eq!(empty.ipv4.unwrap().network.to_string(), DEFAULT_NETWORK);
        assert_eq!(empty.backend, Backend::new(Vxlan::default()));
        let v = empty.backend.settings::<Vxlan>().unwrap();
        assert_eq!((v.vni, v.port, v.direct_routing), (1, 8472, false));
        assert_eq!(empty.lease_ttl, DEFAULT_LEASE_TTL);
    }

    #[test]
    fn dual_stack_and_bounds() {
        let c = ClusterConf::parse(
            r#"{"Network":"10.10.0.0/16","SubnetLen":20,"SubnetMin":"10.10.16.0","SubnetMax":"10.10.240.0",
                "EnableIPv6":true,"IPv6Network":"fd00:10::/48","IPv6SubnetLen":64,
                "Backend":{"Type":"vxlan","VNI":42,"Port":4789,"MTU":1400,"DirectRouting":true}}"#,
        )
        .unwrap();
        assert_eq!(
            c.ipv4.as_ref().unwrap().subnet_min.to_string(),
            "10.10.16.0/20"
        );
        assert_eq!(
            c.ipv6.as_ref().unwrap().subnet_min.to_string(),
            "fd00:10:0:1::/64"
        );
        let v = c.backend.settings::<Vxlan>().unwrap();
        assert_eq!((v.vni, v.port, v.direct_routing), (42, 4789, true));
        assert_eq!(c.mtu, Some(1400));
        assert_eq!(c.cluster_cidrs().len(), 2);
    }

    #[test]
    fn unknown_fields_are_named_not_refused() {
        let (c, unknown) = ClusterConf::parse_lenient(
            r#"{"Netwrk":"10.0.0.0/8","Backend":{"Type":"host-gw","GBP":true}}"#,
        )
        .unwrap();
        assert_eq!(unknown, ["Netwrk", "Backend.GBP"]);
        assert_eq!(c.backend.type_name(), "host-gw");
        // A setting of another backend means nothing to this one.
        let (_, other) =
            ClusterConf::parse_lenient(r#"{"Backend":{"Type":"host-gw","VNI":3,"MTU":1400}}"#)
                .unwrap();
        assert_eq!(other, ["Backend.VNI"]);
        let (_, none) = ClusterConf::parse_lenient(r#"{"Network":"10.1.0.0/16"}"#).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let cases = [
            (r#"{"Network":"10.244.0.0/16","SubnetLen":16}"#, "SubnetLen"),
            (r#"{"Network":"10.244.0.0/16","SubnetLen":31}"#, "SubnetLen"),
            (
                r#"{"Network":"10.244.0.0/29","SubnetLen":30}"#,
                "at least 4",
            ),
            (
                r#"{"Network":"10.244.0.0/16","SubnetMin":"10.244.9.0","SubnetMax":"10.244.10.0"}"#,
                "at least 4",
            ),
            (
                r#"{"Network":"10.244.0.0/16","SubnetMin":"10.245.1.0"}"#,
                "SubnetMin",
            ),
            (
                r#"{"Network":"10.244.0.0/16","SubnetMin":"10.244.9.0","SubnetMax":"10.244.2.0"}"#,
                "SubnetMin",
            ),
            (r#"{"Network":"banana"}"#, "Network"),
            (r#"{"Network":"fd00::/16"}"#, "Network"),
            (r#"{"EnableIPv6":true}"#, "IPv6Network"),
            (
                r#"{"EnableIPv6":true,"IPv6Network":"fd00::/64","IPv6SubnetLen":64}"#,
                "IPv6SubnetLen",
            ),
            (r#"{"Backend":{"Type":"geneve"}}"#, "Backend.Type"),
            (r#"{"Backend":{"Type":"vxlan","VNI":0}}"#, "Backend.VNI"),
            (r#"{"Backend":{"Type":"vxlan","Port":"x"}}"#, "Backend"),
            (r#"{"Backend":{"Type":"host-gw","MTU":100}}"#, "Backend.MTU"),
            (r#"{"Backend":{"Type":7}}"#, "Backend.Type"),
            (r#"{"EnableIPv4":false}"#, "EnableIPv4"),
            (r#"{"LeaseTTL":1}"#, "LeaseTTL"),
        ];
        for (json, needle) in cases {
            let e = ClusterConf::parse(json).unwrap_err();
            assert!(e.0.contains(needle), "{json}: {e} lacks {needle}");
        }
    }

    #[test]
    fn carving_fields_are_named() {
        let raw = r#"{"Network":"10.244.0.0/16","SubnetLen":25,"SubnetMax":"10.244.9.0"}"#;
        assert_eq!(carving_fields(raw), ["SubnetLen", "SubnetMax"]);
        assert!(carving_fields(r#"{"Network":"10.244.0.0/16"}"#).is_empty());
    }
}
