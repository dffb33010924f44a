//! Masquerade rules in podnet's own nftables table, applied with `nft`.
//!
//! The plugin owns table `inet podnet-cni` and nothing else: it never
//! touches another table, and within its own it deletes only rules carrying
//! the tag of the attachment it is removing.

use std::borrow::Cow;
use std::net::IpAddr;

use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::{Expression, NamedExpression, Payload, PayloadField, Prefix};
use nftables::helper::{self, NftablesError};
use nftables::schema::{Chain, NfListObject, NfObject, Rule, Set, SetType, SetTypeValue, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::nfsets::{FAMILY_INET, NfSets};

pub const CNI_TABLE: &str = "podnet-cni";
/// The node agent's table: egress masquerade for the whole cluster.
pub const AGENT_TABLE: &str = "podnet";
const CHAIN: &str = "postrouting";
/// nftables' limit on a rule comment.
const MAX_COMMENT: usize = 128;
/// srcnat priority.
const SRCNAT: i32 = 100;

#[derive(Debug, thiserror::Error)]
#[error("nftables: {0}")]
pub struct NftError(String);

impl From<NftablesError> for NftError {
    fn from(e: NftablesError) -> Self {
        NftError(e.to_string())
    }
}

/// Masquerade traffic from `source` unless it goes to `exclude` (its own
/// pod subnet), tagged so it can be found and removed later.
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasqRule {
    pub source: IpAddr,
    pub exclude: IpNet,
    pub tag: String,
}

/// Replaces the agent's table in one transaction: pod traffic from a
/// cluster CIDR is masqueraded unless it goes to a cluster CIDR or to a
/// node (the `nodes4`/`nodes6` sets). The overlay's own UDP (`vxlan_port`)
/// skips connection tracking: nothing ever NATs it, and tracking it would
/// cost every packet a lookup. Pod-to-pod traffic stays tracked, because a
/// pod's reply to a Service's DNATed connection is pod-to-pod too, and only
/// conntrack can turn its source back into the Service address.
/// An empty `cluster` removes the table.
pub fn replace_egress_table(
    cluster: &[IpNet],
    nodes: &[IpAddr],
    vxlan_port: Option<u16>,
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
        if let Some(port) = vxlan_port {
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

fn payload(proto: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(proto),
            field: Cow::Borrowed(field),
        },
    )))
}

fn prefix(net: &IpNet) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(Expression::String(net.network().to_string().into())),
        len: u32::from(net.prefix_len()),
    }))
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

/// A rule tag that fits nftables' comment limit.
pub fn tag(network: &str, attachment: &str) -> String {
    let room = MAX_COMMENT.saturating_sub(attachment.len() + 1);
    let network: String = network.chars().take(room).collect();
    format!("{network}/{attachment}")
}

/// Installs `rules`, replacing any earlier rules with the same tags.
pub fn add_masquerade(rules: &[MasqRule]) -> Result<(), NftError> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(Table {
        family: NfFamily::INet,
        name: CNI_TABLE.into(),
        ..Table::default()
    }));
    batch.add(NfListObject::Chain(Chain {
        family: NfFamily::INet,
        table: CNI_TABLE.into(),
        name: CHAIN.into(),
        _type: Some(NfChainType::NAT),
        hook: Some(NfHook::Postrouting),
        prio: Some(SRCNAT),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }));
    for old in tagged_rules(|t| rules.iter().any(|r| r.tag == t))? {
        batch.delete(NfListObject::Rule(old));
    }
    for rule in rules {
        batch.add(NfListObject::Rule(masquerade_rule(rule)));
    }
    helper::apply_ruleset(&batch.to_nftables())?;
    Ok(())
}

/// Removes every rule tagged `tag`. A missing table is not an error.
pub fn remove_masquerade(tag: &str) -> Result<(), NftError> {
    remove_tagged(|t| t == tag)
}

/// Removes every rule of our chain whose tag satisfies `doomed`.
pub fn remove_tagged(doomed: impl Fn(&str) -> bool) -> Result<(), NftError> {
    let old = tagged_rules(doomed)?;
    if old.is_empty() {
        return Ok(());
    }
    let mut batch = Batch::new();
    for rule in old {
        batch.delete(NfListObject::Rule(rule));
    }
    helper::apply_ruleset(&batch.to_nftables())?;
    Ok(())
}

/// The rules of our chain whose comment satisfies `wanted`.
fn tagged_rules(wanted: impl Fn(&str) -> bool) -> Result<Vec<Rule<'static>>, NftError> {
    let args = ["list", "table", "inet", CNI_TABLE];
    let listed = match helper::get_current_ruleset_with_args(None::<&str>, &args) {
        Ok(listed) => listed,
        Err(NftablesError::NftFailed { stderr, .. }) if stderr.contains("No such file") => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e.into()),
    };
    Ok(listed
        .objects
        .iter()
        .filter_map(|o| match o {
            NfObject::ListObject(NfListObject::Rule(r))
                if r.chain == CHAIN && r.comment.as_deref().is_some_and(&wanted) =>
            {
                Some(Rule {
                    family: NfFamily::INet,
                    table: CNI_TABLE.into(),
                    chain: CHAIN.into(),
                    handle: r.handle,
                    ..Rule::default()
                })
            }
            _ => None,
        })
        .collect())
}

fn masquerade_rule(rule: &MasqRule) -> Rule<'static> {
    let proto = if rule.source.is_ipv4() { "ip" } else { "ip6" };
    let statements = vec![
        Statement::Match(Match {
            left: payload(proto, "saddr"),
            right: Expression::String(rule.source.to_string().into()),
            op: Operator::EQ,
        }),
        Statement::Match(Match {
            left: payload(proto, "daddr"),
            right: prefix(&rule.exclude),
            op: Operator::NEQ,
        }),
        Statement::Masquerade(None),
    ];
    Rule {
        family: NfFamily::INet,
        table: CNI_TABLE.into(),
        chain: CHAIN.into(),
        expr: statements.into(),
        comment: Some(rule.tag.clone().into()),
        ..Rule::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_fit_the_comment_limit() {
        let long = "n".repeat(300);
        let t = tag(&long, "pn0123456789ab");
        assert!(t.len() <= MAX_COMMENT);
        assert!(t.ends_with("/pn0123456789ab"));
    }

    #[test]
    fn rule_serialises_to_masquerade_json() {
        let rule = masquerade_rule(&MasqRule {
            source: "10.244.1.2".parse().unwrap(),
            exclude: "10.244.1.0/24".parse().unwrap(),
            tag: "net/pn1".into(),
        });
        let json = serde_json::to_value(&rule).unwrap();
        let text = json.to_string();
        assert!(text.contains("\"masquerade\""), "{text}");
        assert!(text.contains("\"!=\""), "{text}");
        assert_eq!(json["comment"], "net/pn1");
    }
}
