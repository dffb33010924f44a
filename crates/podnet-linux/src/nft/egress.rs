//! The agent's table, `inet podnet`: egress masquerade for the whole
//! cluster, and no connection tracking for the overlay's own UDP. Written
//! whole in one transaction whenever its plan changes or it drifted.

use std::net::IpAddr;

use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::Expression;
use nftables::helper;
use nftables::schema::{Chain, NfListObject, Rule, Set, SetType, SetTypeValue, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::sets::{FAMILY_INET, NfSets};
use super::{NftError, POSTROUTING as CHAIN, SRCNAT, payload, prefix};

pub use super::registry::AGENT_TABLE;

/// What the agent's table holds, in brief: its rules and its node set
/// sizes; `None` if it does not exist. A table flushed, deleted or cut
/// since it was written reads differently, and is written again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub rules: usize,
    pub nodes: [usize; 2],
}

pub fn egress_fingerprint() -> Result<Option<Fingerprint>, NftError> {
    let err = |e: crate::netlink::NetlinkError| NftError(e.to_string());
    let mut sets = NfSets::open().map_err(err)?;
    let Some(rules) = sets.rule_count(FAMILY_INET, AGENT_TABLE).map_err(err)? else {
        return Ok(None);
    };
    let mut nodes = [0; 2];
    for (n, set) in nodes.iter_mut().zip(["nodes4", "nodes6"]) {
        *n = sets.keys(FAMILY_INET, AGENT_TABLE, set).map_err(err)?.len();
    }
    Ok(Some(Fingerprint { rules, nodes }))
}

/// Replaces the agent's table in one transaction: pod traffic from a
/// cluster CIDR is masqueraded unless it goes to a cluster CIDR or to a
/// node (the `nodes4`/`nodes6` sets). The overlay's own UDP (`overlay_port`)
/// skips connection tracking: nothing ever NATs it, and tracking it would
/// cost every packet a lookup. Pod-to-pod traffic stays tracked, because a
/// pod's reply to a Service's DNATed connection is pod-to-pod too, and only
/// conntrack can turn its source back into the Service address.
/// An empty `cluster` removes the table.
pub fn replace_egress_table(
    cluster: &[IpNet],
    nodes: &[IpAddr],
    overlay_port: Option<u16>,
) -> Result<(), NftError> {
    let mut batch = Batch::new();
    let table = || Table {
        family: NfFamily::INet,
        name: AGENT_TABLE.into(),
        ..Table::default()
    };
    // add-then-delete makes the delete safe when the table does not exist.
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    if !cluster.is_empty() {
        batch.add(NfListObject::Table(table()));
        batch.add(NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: AGENT_TABLE.into(),
            name: CHAIN.into(),
            _type: Some(NfChainType::NAT),
            hook: Some(NfHook::Postrouting),
            prio: Some(SRCNAT),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        }));
        for (v4, set, kind) in [
            (true, "nodes4", SetType::Ipv4Addr),
            (false, "nodes6", SetType::Ipv6Addr),
        ] {
            let elems: Vec<Expression> = nodes
                .iter()
                .filter(|ip| ip.is_ipv4() == v4)
                .map(|ip| Expression::String(ip.to_string().into()))
                .collect();
            batch.add(NfListObject::Set(Box::new(Set {
                family: NfFamily::INet,
                table: AGENT_TABLE.into(),
                name: set.into(),
                set_type: SetTypeValue::Single(kind),
                elem: (!elems.is_empty()).then(|| elems.into()),
                ..Set::default()
            })));
        }
        for net in cluster {
            batch.add(NfListObject::Rule(egress_rule(net)));
        }
        // Overlay packets are sent by the node (output) and received by it
        // (prerouting).
        if let Some(port) = overlay_port {
            for (chain, hook) in [
                (RAW_PREROUTING, NfHook::Prerouting),
                (RAW_OUTPUT, NfHook::Output),
            ] {
                batch.add(NfListObject::Chain(Chain {
                    family: NfFamily::INet,
                    table: AGENT_TABLE.into(),
                    name: chain.into(),
                    _type: Some(NfChainType::Filter),
                    hook: Some(hook),
                    prio: Some(RAW),
                    policy: Some(NfChainPolicy::Accept),
                    ..Chain::default()
                }));
                batch.add(NfListObject::Rule(overlay_notrack_rule(chain, port)));
            }
        }
    }
    // The crate writes the notrack statement as a bare string; nft wants
    // an object. Patch it in the JSON before applying.
    let mut json =
        serde_json::to_value(batch.to_nftables()).map_err(|e| NftError(e.to_string()))?;
    fix_notrack(&mut json);
    helper::apply_ruleset_raw(&json.to_string(), None::<&str>, std::iter::empty::<&str>())?;
    Ok(())
}

fn fix_notrack(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s == "notrack" => {
            *v = serde_json::json!({ "notrack": null });
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(fix_notrack),
        serde_json::Value::Object(map) => map.values_mut().for_each(fix_notrack),
        _ => {}
    }
}

const RAW_PREROUTING: &str = "raw-prerouting";
const RAW_OUTPUT: &str = "raw-output";
/// The raw priority: before conntrack looks at a packet.
const RAW: i32 = -300;

/// `notrack` for the overlay's UDP packets.
fn overlay_notrack_rule(chain: &'static str, port: u16) -> Rule<'static> {
    let statements = vec![
        Statement::Match(Match {
            left: payload("udp", "dport"),
            right: Expression::Number(u32::from(port)),
            op: Operator::EQ,
        }),
        Statement::Notrack,
    ];
    Rule {
        family: NfFamily::INet,
        table: AGENT_TABLE.into(),
        chain: chain.into(),
        expr: statements.into(),
        comment: Some("podnet: overlay packets are never NATed, not tracked".into()),
        ..Rule::default()
    }
}

fn egress_rule(net: &IpNet) -> Rule<'static> {
    let (proto, set) = if net.addr().is_ipv4() {
        ("ip", "@nodes4")
    } else {
        ("ip6", "@nodes6")
    };
    let statements = vec![
        Statement::Match(Match {
            left: payload(proto, "saddr"),
            right: prefix(net),
            op: Operator::EQ,
        }),
        Statement::Match(Match {
            left: payload(proto, "daddr"),
            right: prefix(net),
            op: Operator::NEQ,
        }),
        Statement::Match(Match {
            left: payload(proto, "daddr"),
            right: Expression::String(set.into()),
            op: Operator::NEQ,
        }),
        Statement::Masquerade(None),
    ];
    Rule {
        family: NfFamily::INet,
        table: AGENT_TABLE.into(),
        chain: CHAIN.into(),
        expr: statements.into(),
        comment: Some("podnet egress".into()),
        ..Rule::default()
    }
}
