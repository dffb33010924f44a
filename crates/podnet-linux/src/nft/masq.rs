//! The plugin's `ipMasq` rules, in table `inet podnet-cni`: the plugin
//! touches no other table, and within its own deletes only rules carrying
//! the tag of the attachment it is removing.

use std::net::IpAddr;

use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::Expression;
use nftables::helper::{self, NftablesError};
use nftables::schema::{Chain, NfListObject, NfObject, Rule, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::registry::{POSTROUTING as CHAIN, SRCNAT};
use super::{NftError, payload, prefix};

pub use super::registry::CNI_TABLE;
/// nftables' limit on a rule comment.
const MAX_COMMENT: usize = 128;

/// Masquerade traffic from `source` unless it goes to `exclude` (its own
/// pod subnet), tagged so it can be found and removed later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasqRule {
    pub source: IpAddr,
    pub exclude: IpNet,
    pub tag: String,
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
