//! Anti-spoofing on the node: table `bridge podnet-guard` (its sets and
//! keys are decided in `podnet_core::guard`).
//!
//! The table is written with `nft -f` as one transaction that creates it
//! or migrates it in place: the sets are declared (kept, with their
//! elements, if they exist), the chain flushed and its rules added, and
//! the layout recorded. Nothing in between is ever seen, so no pod is
//! unguarded while a node moves to a new layout. (Its rule for neighbour
//! advertisements reads the target as a raw payload, which nft's JSON, and
//! so the nftables crate, cannot express in a set lookup.)
//!
//! Elements go over nfnetlink: an ADD costs one transaction (~15 us).

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use podnet_core::guard::{
    self, ADDRS4, ADDRS6, Element, ElementPlan, LAYOUT, LAYOUT_SET, MACS, PASSTHROUGH,
    PASSTHROUGH_KEY, PORTS, Port, SETS, TABLE, TARGETS6,
};

use super::registry::{GUARD, GUARD_CHAIN};
use super::sets::{FAMILY_BRIDGE, NfSets, Op};
use crate::netlink::NetlinkError;

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("nftables table bridge {TABLE} is missing (podnetd makes it)")]
    Missing,
    #[error("cannot write nftables table bridge {TABLE}: {0}")]
    Write(String),
    #[error("cannot list links: {0}")]
    Links(String),
}

/// Elements per transaction when many change at once (re-admitting,
/// pruning): a failed transaction reports each of its messages, and the
/// replies must fit the socket's buffer.
const CHUNK: usize = 64;

/// The sets: (name, definition).
fn sets() -> [(&'static str, &'static str); 7] {
    [
        (PORTS, "type iface_index;"),
        (MACS, "type iface_index . ether_addr;"),
        (ADDRS4, "type iface_index . ether_addr . ipv4_addr;"),
        (ADDRS6, "type iface_index . ether_addr . ipv6_addr;"),
        (TARGETS6, "typeof iif . @th,64,128;"),
        (PASSTHROUGH, "type iface_type;"),
        (LAYOUT_SET, "type mark;"),
    ]
}

/// The guard chain's rules, in order. While the guard is off
/// (`passthrough` holds the pods' port type) everything passes. A port
/// not in `ports` (a link podnet did not attach) passes untouched. From a
/// guarded port, an IPv4 packet or ARP message must come from the pod's
/// MAC and one of its addresses (an ARP probe, from 0.0.0.0, claims
/// nothing); an IPv6 packet from the pod's MAC and one of its addresses,
/// or its link-local address or `::`; and a neighbour advertisement may
/// only name one of the pod's own addresses or a link-local one. Anything
/// else from a pod (another protocol, a VLAN tag) is dropped. The chain
/// runs before the bridge decides anything, so it covers traffic to pods
/// on the node, to the node, and beyond. Every packet pays it, so a pod's
/// own TCP or UDP is accepted by the second or third rule after one set
/// lookup: (port, MAC, source).
pub fn rules() -> Vec<String> {
    vec![
        format!("meta iiftype @{PASSTHROUGH} accept"),
        format!("ether type ip iif . ether saddr . ip saddr @{ADDRS4} accept"),
        format!(
            "ether type ip6 meta l4proto != ipv6-icmp iif . ether saddr . ip6 saddr @{ADDRS6} accept"
        ),
        format!("iif != @{PORTS} accept"),
        format!(
            "ether type arp iif . ether saddr . arp saddr ip @{ADDRS4} iif . arp saddr ether @{MACS} accept"
        ),
        format!("ether type arp arp saddr ip 0.0.0.0 iif . ether saddr @{MACS} accept"),
        format!(
            "icmpv6 type nd-neighbor-advert @th,64,10 != 0x3fa iif . @th,64,128 != @{TARGETS6} drop"
        ),
        format!("ether type ip6 iif . ether saddr . ip6 saddr @{ADDRS6} accept"),
        format!("ether type ip6 ip6 saddr {{ ::, fe80::/10 }} iif . ether saddr @{MACS} accept"),
        "drop".to_owned(),
    ]
}

/// The transaction that creates the table at `layout`, or migrates an
/// existing one to it, keeping every element.
pub fn transaction(layout: u32) -> String {
    let table = format!("{} {TABLE}", GUARD.family_name);
    let (_, hook, priority) = GUARD.hooks[0];
    let chain = GUARD_CHAIN;
    let mut out = format!("add table {table}\n");
    for (name, definition) in sets() {
        out += &format!("add set {table} {name} {{ {definition} }}\n");
    }
    out += &format!(
        "add chain {table} {chain} {{ type filter hook {hook} priority {priority}; policy accept; }}\n"
    );
    out += &format!("flush chain {table} {chain}\n");
    for rule in rules() {
        out += &format!("add rule {table} {chain} {rule}\n");
    }
    out += &format!("flush set {table} {LAYOUT_SET}\n");
    out += &format!("add element {table} {LAYOUT_SET} {{ {layout} }}\n");
    out
}

/// The table as the node has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableState {
    Missing,
    /// Another layout (`None`: from before layouts were recorded), or
    /// rules someone cut.
    Outdated(Option<u32>),
    Current,
}

pub fn state() -> Result<TableState, GuardError> {
    let mut sets = NfSets::open()?;
    let Some(rules) = sets.rule_count(FAMILY_BRIDGE, TABLE)? else {
        return Ok(TableState::Missing);
    };
    let layout = match sets.keys(FAMILY_BRIDGE, TABLE, LAYOUT_SET) {
        Err(e) if e.errno() == Some(Errno::ENOENT) => None,
        keys => guard::layout_of(&keys?),
    };
    Ok(if layout == Some(LAYOUT) && rules == self::rules().len() {
        TableState::Current
    } else {
        TableState::Outdated(layout)
    })
}

/// Creates the table, or migrates it to this layout, in one transaction.
pub fn write_table() -> Result<(), GuardError> {
    write_at(LAYOUT)
}

/// [`write_table`] at any layout: tests bump it to prove a migration.
pub fn write_at(layout: u32) -> Result<(), GuardError> {
    let fail = |e: String| GuardError::Write(e);
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(transaction(layout).as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

/// Admits `port`: from now on it may send as its pod and nothing else.
/// [`GuardError::Missing`] if the node has no table.
pub fn admit(port: &Port) -> Result<(), GuardError> {
    let elements = guard::elements(port);
    let changes: Vec<_> = elements
        .iter()
        .map(|(set, key)| (Op::Add, *set, key.as_slice()))
        .collect();
    match NfSets::open()?.apply(FAMILY_BRIDGE, TABLE, &changes) {
        Err(e) if e.errno() == Some(Errno::ENOENT) => Err(GuardError::Missing),
        other => Ok(other?),
    }
}

/// The per-port elements the table holds; `None` if there is no table.
pub fn elements() -> Result<Option<Vec<Element>>, GuardError> {
    let mut sets = NfSets::open()?;
    let mut listed = Vec::new();
    for set in SETS {
        match sets.keys(FAMILY_BRIDGE, TABLE, set) {
            Err(e) if e.errno() == Some(Errno::ENOENT) => return Ok(None),
            keys => listed.extend(keys?.into_iter().map(|k| (set, k))),
        }
    }
    Ok(Some(listed))
}

/// Applies a plan: additions, then deletions, in bounded transactions.
pub fn apply(plan: &ElementPlan) -> Result<(), GuardError> {
    let mut sets = NfSets::open()?;
    fn changes(op: Op, elements: &[Element]) -> Vec<(Op, &str, &[u8])> {
        elements
            .iter()
            .map(|(s, k)| (op, *s, k.as_slice()))
            .collect()
    }
    for (op, elements) in [(Op::Add, &plan.add), (Op::Delete, &plan.delete)] {
        for chunk in changes(op, elements).chunks(CHUNK) {
            sets.apply(FAMILY_BRIDGE, TABLE, chunk)?;
        }
    }
    Ok(())
}

/// Turns the guard off (everything passes) or on again: the supported
/// switch, which the agent's drift repair keeps as it finds it.
pub fn set_passthrough(on: bool) -> Result<(), GuardError> {
    let op = if on { Op::Add } else { Op::Delete };
    let change = [(op, PASSTHROUGH, &PASSTHROUGH_KEY[..])];
    match NfSets::open()?.apply(FAMILY_BRIDGE, TABLE, &change) {
        // Already off.
        Err(e) if !on && e.errno() == Some(Errno::ENOENT) => Ok(()),
        Err(e) if e.errno() == Some(Errno::ENOENT) => Err(GuardError::Missing),
        other => Ok(other?),
    }
}

/// Deletes the elements of every port whose interface is gone (the
/// plugin's GC). `live` lists the interface indexes that exist; it is
/// asked after the elements are listed, so a port being admitted right
/// now is always seen alive. No table, nothing to do. Another pruner
/// (podnetd) at the same time may delete an element first, which fails
/// this transaction: it is planned again from a fresh listing.
pub fn prune<E: std::fmt::Display>(
    mut live: impl FnMut() -> Result<HashSet<u32>, E>,
) -> Result<usize, GuardError> {
    let mut attempt = 0;
    loop {
        let Some(listed) = elements()? else {
            return Ok(0);
        };
        if listed.is_empty() {
            return Ok(0);
        }
        let live = live().map_err(|e| GuardError::Links(e.to_string()))?;
        let plan = ElementPlan {
            add: Vec::new(),
            ..guard::plan_elements(&listed, &live, &[])
        };
        match apply(&plan) {
            Ok(()) => return Ok(plan.delete.len()),
            Err(GuardError::Netlink(e)) if e.errno() == Some(Errno::ENOENT) && attempt < 3 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transaction_names_every_set_and_records_its_layout() {
        let text = transaction(7);
        for (name, _) in sets() {
            assert!(text.contains(&format!("add set bridge podnet-guard {name} ")));
        }
        assert!(text.contains("flush chain bridge podnet-guard prerouting\n"));
        assert!(text.ends_with("add element bridge podnet-guard layout { 7 }\n"));
        // The switch is looked up before anything can drop.
        assert_eq!(rules()[0], "meta iiftype @passthrough accept");
        assert_eq!(text.matches("add rule ").count(), rules().len());
    }
}
