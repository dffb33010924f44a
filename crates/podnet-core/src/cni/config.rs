//! The network configuration on stdin, parsed and validated into the exact
//! plan the plugin follows. Every rejection names the offending field.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use super::error::{CniError, Code};
use super::result::{CniResult, Route};
use super::version::CniVersion;
use crate::ipam::{Attachment, Pool, RangeConf};
use crate::names::parse_mac;
use crate::subnet_file::DEFAULT_SUBNET_FILE;

/// The spec lets a runtime send large configs, but not unbounded ones.
pub const MAX_CONFIG_BYTES: usize = 8 << 20;
pub const DEFAULT_BRIDGE: &str = "podnet0";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/podnet/ipam";
/// Smallest IPv4 MTU a link may have, and the largest any link may have.
const MTU_RANGE: std::ops::RangeInclusive<i64> = 68..=65535;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    name: String,
    #[serde(rename = "type", default)]
    plugin_type: String,
    bridge: Option<String>,
    is_gateway: Option<bool>,
    is_default_gateway: Option<bool>,
    hairpin_mode: Option<bool>,
    ip_masq: Option<bool>,
    anti_spoofing: Option<bool>,
    uninstalling: Option<bool>,
    mtu: Option<i64>,
    subnet_file: Option<String>,
    log_file: Option<String>,
    policy: Option<bool>,
    policy_socket: Option<String>,
    ipam: Option<Value>,
    dns: Option<Value>,
    #[serde(default)]
    runtime_config: RawRuntimeConfig,
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<RawAttachment>>,
    /// The name an earlier draft of the spec used; runtimes send both.
    #[serde(rename = "cni.dev/attachments")]
    attachments: Option<Vec<RawAttachment>>,
}

#[derive(Debug, Deserialize)]
struct RawAttachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    #[serde(rename = "type")]
    ipam_type: Option<String>,
    subnet: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
    ranges: Option<Vec<Vec<RangeConf>>>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    data_dir: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawRoute {
    dst: String,
    gw: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRuntimeConfig {
    #[serde(default)]
    ips: Vec<String>,
    mac: Option<String>,
}

/// Which allocator serves this network.
#[derive(Debug, Clone, PartialEq)]
pub enum IpamKind {
    /// podnet's own crash-safe allocator.
    Builtin,
    /// An IPAM plugin executed from `CNI_PATH`, with the `ipam` section as-is.
    Delegated { plugin: String, raw: Value },
}

#[derive(Debug, Clone, PartialEq)]
pub struct IpamConf {
    pub kind: IpamKind,
    /// The configured pool; `None` means "use the node's subnet file".
    pub pool: Option<Pool>,
    pub routes: Vec<Route>,
    /// Where this network's IPAM state lives: `<dataDir>/<network name>`.
    pub state_dir: PathBuf,
}

/// Capabilities passed in `runtimeConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    pub ips: Vec<IpAddr>,
    pub mac: Option<[u8; 6]>,
}

/// A validated network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub version: CniVersion,
    pub name: String,
    pub plugin_type: String,
    pub bridge: String,
    pub is_gateway: bool,
    pub is_default_gateway: bool,
    pub hairpin_mode: bool,
    pub ip_masq: bool,
    /// Drop what a pod sends from an address or MAC not its own.
    pub anti_spoofing: bool,
    /// podnet is being removed from the node: ADD answers "try again
    /// later", DEL works (see `conflist::uninstalling`).
    pub uninstalling: bool,
    pub mtu: Option<u32>,
    pub subnet_file: PathBuf,
    pub log_file: Option<PathBuf>,
    /// NetworkPolicy: the socket where ADD hands each pod to podnetd
    /// (`"policy": true`); `None`: no policy, ADD as without podnetd.
    pub policy: Option<PathBuf>,
    pub ipam: IpamConf,
    pub dns: Option<Value>,
    pub runtime: RuntimeConfig,
    pub prev_result: Option<CniResult>,
    /// GC: the attachments the runtime still knows; everything else of
    /// ours may go. `None` when the runtime sent no list.
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// The `cniVersion` to answer errors in: the config's own if it is one we
/// speak, else the newest.
pub fn error_version(raw: &[u8]) -> CniVersion {
    serde_json::from_slice::<Value>(raw)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str()?.parse().ok())
        .unwrap_or(CniVersion::V1_1_0)
}

impl NetConf {
    pub fn parse(raw: &[u8]) -> Result<Self, CniError> {
        if raw.len() > MAX_CONFIG_BYTES {
            return Err(CniError::new(
                Code::Decode,
                format!(
                    "network config is {} bytes; the limit is {MAX_CONFIG_BYTES}",
                    raw.len()
                ),
            ));
        }
        // serde_json refuses nesting deeper than 128, so hostile input is
        // rejected quickly and without exhausting the stack.
        let value: Value = serde_json::from_slice(raw).map_err(|e| {
            CniError::new(
                Code::Decode,
                format!("network config is not valid JSON: {e}"),
            )
        })?;
        let version = match value.get("cniVersion") {
            Some(Value::String(v)) => v.parse::<CniVersion>()?,
            Some(_) => return Err(CniError::config("cniVersion must be a string")),
            None => return Err(CniError::config("cniVersion is missing")),
        };
        let raw: RawConf = typed(value, "")?;
        Self::validate(version, raw)
    }

    fn validate(version: CniVersion, raw: RawConf) -> Result<Self, CniError> {
        validate_name(&raw.name)?;
        let bridge = raw.bridge.unwrap_or_else(|| DEFAULT_BRIDGE.to_owned());
        super::env::validate_ifname(&bridge)
            .map_err(|e| CniError::config(e.msg.replacen("CNI_IFNAME", "bridge", 1)))?;
        let mtu = match raw.mtu {
            None => None,
            Some(m) if MTU_RANGE.contains(&m) => Some(m as u32),
            Some(m) => {
                return Err(CniError::config(format!(
                    "mtu {m} is out of range {}..={}",
                    MTU_RANGE.start(),
                    MTU_RANGE.end()
                )));
            }
        };
        let is_default_gateway = raw.is_default_gateway.unwrap_or(true);
        let prev_result = raw
            .prev_result
            .map(|v| typed::<CniResult>(v, "prevResult"))
            .transpose()?;
        let valid_attachments = raw.valid_attachments.or(raw.attachments).map(|list| {
            list.into_iter()
                .map(|a| Attachment {
                    container_id: a.container_id,
                    ifname: a.ifname,
                })
                .collect()
        });
        Ok(NetConf {
            version,
            valid_attachments,
            ipam: validate_ipam(raw.ipam, &raw.name)?,
            runtime: validate_runtime(raw.runtime_config)?,
            name: raw.name,
            plugin_type: raw.plugin_type,
            bridge,
            // A default gateway on the bridge implies the bridge is a gateway.
            is_gateway: raw.is_gateway.unwrap_or(true) || is_default_gateway,
            is_default_gateway,
            hairpin_mode: raw.hairpin_mode.unwrap_or(true),
            ip_masq: raw.ip_masq.unwrap_or(false),
            anti_spoofing: raw.anti_spoofing.unwrap_or(true),
            uninstalling: raw.uninstalling.unwrap_or(false),
            mtu,
            subnet_file: PathBuf::from(raw.subnet_file.as_deref().unwrap_or(DEFAULT_SUBNET_FILE)),
            log_file: raw.log_file.map(PathBuf::from),
            policy: match (raw.policy.unwrap_or(false), raw.policy_socket) {
                (true, socket) => Some(PathBuf::from(
                    socket
                        .as_deref()
                        .unwrap_or(crate::policy::node::DEFAULT_SOCKET),
                )),
                (false, Some(_)) => {
                    return Err(CniError::config(
                        "policySocket is set but policy is not: set \"policy\": true",
                    ));
                }
                (false, None) => None,
            },
            dns: raw.dns,
            prev_result,
        })
    }
}

/// Deserialises `value`, naming the failing field (`prefix.path`) on error.
fn typed<T: serde::de::DeserializeOwned>(value: Value, prefix: &str) -> Result<T, CniError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = match (prefix.is_empty(), path == ".") {
            (true, _) => path,
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}.{path}"),
        };
        CniError::config(format!("{field}: {}", e.into_inner()))
    })
}

/// The name becomes a directory under dataDir, so it must be a plain name.
fn validate_name(name: &str) -> Result<(), CniError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(CniError::config(format!(
            "name \"{name}\" is invalid: use letters, digits, '-', '_' and '.'"
        )))
    }
}

fn validate_ipam(raw: Option<Value>, network: &str) -> Result<IpamConf, CniError> {
    let value = raw.unwrap_or(Value::Object(Default::default()));
    let ipam: RawIpam = typed(value.clone(), "ipam")?;
    let kind = match ipam.ipam_type.as_deref() {
        None | Some("") | Some("podnet") => IpamKind::Builtin,
        Some(other) => IpamKind::Delegated {
            plugin: other.to_owned(),
            raw: value,
        },
    };
    let ranges = match (&ipam.subnet, ipam.ranges) {
        (Some(_), Some(_)) => {
            return Err(CniError::config(
                "ipam: set either subnet (with rangeStart/rangeEnd/gateway) or ranges, not both",
            ));
        }
        (Some(subnet), None) => Some(vec![vec![RangeConf {
            subnet: subnet.clone(),
            range_start: ipam.range_start,
            range_end: ipam.range_end,
            gateway: ipam.gateway,
        }]]),
        (None, ranges) => ranges,
    };
    let pool = match (&kind, ranges) {
        (IpamKind::Builtin, Some(r)) => {
            let shorthand = ipam.subnet.is_some();
            Some(Pool::from_conf(&r, |i, j| match shorthand {
                true => "ipam".to_owned(),
                false => format!("ipam.ranges[{i}][{j}]"),
            })?)
        }
        _ => None,
    };
    let routes = ipam
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let dst: IpNet = r.dst.parse().map_err(|_| {
                CniError::config(format!(
                    "ipam.routes[{i}].dst \"{}\" is not a valid CIDR",
                    r.dst
                ))
            })?;
            let gw =
                r.gw.as_deref()
                    .map(|g| {
                        g.parse::<IpAddr>().map_err(|_| {
                            CniError::config(format!(
                                "ipam.routes[{i}].gw \"{g}\" is not an IP address"
                            ))
                        })
                    })
                    .transpose()?;
            if gw.is_some_and(|g| g.is_ipv4() != dst.addr().is_ipv4()) {
                return Err(CniError::config(format!(
                    "ipam.routes[{i}] mixes address families"
                )));
            }
            Ok(Route {
                dst: dst.trunc(),
                gw,
            })
        })
        .collect::<Result<_, _>>()?;
    let data_dir = PathBuf::from(ipam.data_dir.as_deref().unwrap_or(DEFAULT_DATA_DIR));
    Ok(IpamConf {
        kind,
        pool,
        routes,
        state_dir: data_dir.join(network),
    })
}

fn validate_runtime(raw: RawRuntimeConfig) -> Result<RuntimeConfig, CniError> {
    let ips = raw
        .ips
        .iter()
        .map(|s| {
            // The `ips` capability may carry a prefix length; only the
            // address matters, the prefix comes from the range.
            let addr = s.split('/').next().unwrap_or(s);
            addr.parse::<IpAddr>().map_err(|_| {
                CniError::config(format!("runtimeConfig.ips: \"{s}\" is not an IP address"))
            })
        })
        .collect::<Result<_, _>>()?;
    let mac = raw
        .mac
        .map(|m| {
            parse_mac(&m).filter(|b| b[0] & 1 == 0).ok_or_else(|| {
                CniError::config(format!(
                    "runtimeConfig.mac \"{m}\" is not a unicast MAC address"
                ))
            })
        })
        .transpose()?;
    Ok(RuntimeConfig { ips, mac })
}

#[cfg(test)]
mod tests;
