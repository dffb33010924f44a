//! The agent's table, `inet podnet`: egress masquerade for the whole
//! cluster; the overlay's own UDP untracked, and accepted only from
//! nodes. Written whole in one transaction whenever its plan changes or
//! it drifted.

use std::net::IpAddr;

use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::Expression;
use nftables::helper;
use nftables::schema::{
    Chain, Element, FlushObject, NfCmd, NfListObject, Rule, Set, SetType, SetTypeValue, Table,
};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::nfnl::{FAMILY_INET, Nfnl};
use super::registry::{
    FILTER, OVERLAY_INPUT, POSTROUTING as CHAIN, RAW, RAW_OUTPUT, RAW_PREROUTING, SRCNAT,
};
use super::{NftError, payload, prefix};

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
    let mut sets = Nfnl::open().map_err(err)?;
    let Some(rules) = sets.rule_count(FAMILY_INET, AGENT_TABLE).map_err(err)? else {
        return Ok(None);
    };
    let mut nodes = [0; 2];
    for (n, set) in nodes.iter_mut().zip(NODES) {
        *n = sets.keys(FAMILY_INET, AGENT_TABLE, set).map_err(err)?.len();
    }
    Ok(Some(Fingerprint { rules, nodes }))
}

/// The node address sets, IPv4 and IPv6.
const NODES: [&str; 2] = ["nodes4", "nodes6"];

/// Brings the agent's table to this plan in one transaction: pod traffic
/// from a cluster CIDR is masqueraded unless it goes to a cluster CIDR or
/// to a node (the node sets). The overlay's own UDP (`overlay_ports`)
/// skips connection tracking: nothing ever NATs it, and tracking it would
/// cost every packet a lookup. It is accepted only from the nodes that
/// hold leases: a pod (whose traffic to a node keeps its own source) or
/// anyone else could otherwise hand the node a frame to decapsulate, with
/// any source, past the pods' guard. Pod-to-pod traffic stays tracked, because a
/// pod's reply to a Service's DNATed connection is pod-to-pod too, and only
/// conntrack can turn its source back into the Service address.
///
/// The table is never deleted to change it: its chains and sets are
/// declared (kept if they exist), flushed and refilled, all at once. An
/// empty `cluster` removes it.
pub fn replace_egress_table(
    cluster: &[IpNet],
    nodes: &[IpAddr],
    overlay_ports: &[u16],
) -> Result<(), NftError> {
    let mut batch = Batch::new();
    let table = Table {
        family: NfFamily::INet,
        name: AGENT_TABLE.into(),
        ..Table::default()
    };
    batch.add(NfListObject::Table(table.clone()));
    if cluster.is_empty() {
        batch.delete(NfListObject::Table(table));
        return apply(batch);
    }
    let chain = |name: &'static str, kind, hook, prio| Chain {
        family: NfFamily::INet,
        table: AGENT_TABLE.into(),
        name: name.into(),
        _type: Some(kind),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    };
    let post = chain(CHAIN, NfChainType::NAT, NfHook::Postrouting, SRCNAT);
    batch.add(NfListObject::Chain(post.clone()));
    batch.add_cmd(NfCmd::Flush(FlushObject::Chain(post)));
    for (v4, (name, kind)) in [true, false].into_iter().zip(
        NODES
            .into_iter()
            .zip([SetType::Ipv4Addr, SetType::Ipv6Addr]),
    ) {
        let set = Set {
            family: NfFamily::INet,
            table: AGENT_TABLE.into(),
            name: name.into(),
            set_type: SetTypeValue::Single(kind),
            ..Set::default()
        };
        batch.add(NfListObject::Set(Box::new(set.clone())));
        batch.add_cmd(NfCmd::Flush(FlushObject::Set(Box::new(set))));
        let elems: Vec<Expression> = nodes
            .iter()
            .filter(|ip| ip.is_ipv4() == v4)
            .map(|ip| Expression::String(ip.to_string().into()))
            .collect();
        if !elems.is_empty() {
            batch.add(NfListObject::Element(Element {
                family: NfFamily::INet,
                table: AGENT_TABLE.into(),
                name: name.into(),
                elem: elems.into(),
            }));
        }
    }
    for net in cluster {
        batch.add(NfListObject::Rule(egress_rule(net)));
    }
    // Overlay packets are sent by the node (output) and received by it
    // (prerouting, then input). Without an overlay the chains go (add,
    // then delete: safe whether or not they exist).
    for (name, hook, priority) in [
        (RAW_PREROUTING, NfHook::Prerouting, RAW),
        (RAW_OUTPUT, NfHook::Output, RAW),
        (OVERLAY_INPUT, NfHook::Input, FILTER),
    ] {
        let overlay = chain(name, NfChainType::Filter, hook, priority);
        batch.add(NfListObject::Chain(overlay.clone()));
        if overlay_ports.is_empty() {
            batch.delete(NfListObject::Chain(overlay));
            continue;
        }
        batch.add_cmd(NfCmd::Flush(FlushObject::Chain(overlay)));
        for &port in overlay_ports {
            if name == OVERLAY_INPUT {
                for v4 in [true, false] {
                    batch.add(NfListObject::Rule(overlay_from_nodes_rule(v4, port)));
                }
            } else {
                batch.add(NfListObject::Rule(overlay_notrack_rule(name, port)));
            }
        }
    }
    apply(batch)
}

/// Applies a batch as one transaction. The crate writes the notrack
/// statement as a bare string; nft wants an object: patched in the JSON.
fn apply(batch: Batch<'_>) -> Result<(), NftError> {
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

/// Drops the overlay's UDP unless it comes from a node of the family's
/// node set.
fn overlay_from_nodes_rule(v4: bool, port: u16) -> Rule<'static> {
    let (proto, set) = if v4 {
        ("ip", NODES[0])
    } else {
        ("ip6", NODES[1])
    };
    let statements = vec![
        Statement::Match(Match {
            left: payload("udp", "dport"),
            right: Expression::Number(u32::from(port)),
            op: Operator::EQ,
        }),
        Statement::Match(Match {
            left: payload(proto, "saddr"),
            right: Expression::String(format!("@{set}").into()),
            op: Operator::NEQ,
        }),
        Statement::Drop(None),
    ];
    Rule {
        family: NfFamily::INet,
        table: AGENT_TABLE.into(),
        chain: OVERLAY_INPUT.into(),
        expr: statements.into(),
        comment: Some("podnet: the overlay is spoken by nodes only".into()),
        ..Rule::default()
    }
}

fn egress_rule(net: &IpNet) -> Rule<'static> {
    let (proto, set) = if net.addr().is_ipv4() {
        ("ip", NODES[0])
    } else {
        ("ip6", NODES[1])
    };
    let set = format!("@{set}");
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
