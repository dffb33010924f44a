//! Anti-spoofing on the node: table `bridge podnet-guard` (its sets and
//! keys are decided in `podnet_core::guard`).
//!
//! The table is written with `nft -f` as one transaction that creates it
//! or migrates it in place: the sets and counters are declared (kept, with
//! their elements, if they exist), the chains flushed and refilled, the
//! layout recorded. Nothing in between is ever seen, so no pod is
//! unguarded while a node moves to a new layout. (Its neighbour discovery
//! rules read the target and options as raw payload, which nft's JSON,
//! and so the nftables crate, cannot express in a set lookup.)
//!
//! Elements go over nfnetlink: an ADD costs one transaction (~15 us).

use nix::errno::Errno;
use podnet_core::guard::{
    self, ADDRS4, ADDRS6, Carry, DROP_REASONS, Element, ElementPlan, LAYOUT, LAYOUT_SET, LLA,
    Links, MACS, ND_FRAGMENT, NEIGHBOUR_DISCOVERY, OTHER_PROTOCOL, PASSTHROUGH, PASSTHROUGH_KEY,
    Port, PortLink, ROUTER_MESSAGE, SETS, SPOOFED_ARP, SPOOFED_SOURCE, TABLE, TARGETS6, UNGUARDED,
};

use podnet_core::names::HOST_VETH_PREFIX;

use super::nfnl::{Change, FAMILY_BRIDGE, Nfnl, Op};
use super::registry::{GUARD, GUARD_ARP, GUARD_ICMP6, GUARD_RULES};
use crate::netlink::{Netlink, NetlinkError};

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
fn sets() -> [(&'static str, &'static str); 8] {
    [
        (UNGUARDED, "type iface_index;"),
        (MACS, "type iface_index . ether_addr;"),
        (ADDRS4, "type iface_index . ether_addr . ipv4_addr;"),
        (ADDRS6, "type iface_index . ether_addr . ipv6_addr;"),
        (TARGETS6, "typeof iif . @th,64,128;"),
        (LLA, "typeof iif . @th,192,64;"),
        (PASSTHROUGH, "type iface_type;"),
        (LAYOUT_SET, "type mark;"),
    ]
}

/// `counter name <reason> drop`.
fn drop(reason: &str) -> String {
    format!("counter name {reason} drop")
}

/// The rules of each regular chain, in order. Every frame a port sends
/// passes here before the bridge learns from it or passes it on. While
/// the guard is off (`passthrough` holds the ports' type) everything
/// passes. The pod's own IPv4 and IPv6 (not ICMPv6) is accepted by the
/// second or third rule after one lookup of (port, MAC, source), so its
/// TCP and UDP pay little. A port not named as podnet's host veths are
/// passes untouched; one attached with anti-spoofing off too. Every
/// other port is podnet's and guarded, so what its sets do not admit is
/// dropped (a port whose elements are lost fails closed). ARP and ICMPv6
/// have chains of their own; anything else is dropped, each drop counted
/// under its reason.
pub fn rules() -> Vec<(&'static str, Vec<String>)> {
    let own4 = format!("iif . ether saddr . ip saddr @{ADDRS4}");
    let own6 = format!("iif . ether saddr . ip6 saddr @{ADDRS6}");
    let own_mac = format!("iif . ether saddr @{MACS}");
    let guard = vec![
        format!("meta iiftype @{PASSTHROUGH} accept"),
        format!("ether type ip {own4} accept"),
        format!("ether type ip6 meta l4proto != ipv6-icmp {own6} accept"),
        format!("iifname != \"{HOST_VETH_PREFIX}*\" accept"),
        format!("iif @{UNGUARDED} accept"),
        format!("ether type arp jump {GUARD_ARP}"),
        format!("ether type ip6 meta l4proto ipv6-icmp jump {GUARD_ICMP6}"),
        format!("ether type {{ ip, ip6 }} {}", drop(SPOOFED_SOURCE)),
        drop(OTHER_PROTOCOL),
    ];
    // An ARP message's sender is the pod (MAC and address); a probe, from
    // 0.0.0.0, claims no address but still the pod's MAC.
    let arp_shape = "arp htype 1 arp ptype ip arp hlen 6 arp plen 4";
    let sender_mac = format!("iif . arp saddr ether @{MACS}");
    let arp = vec![
        format!("{arp_shape} iif . ether saddr . arp saddr ip @{ADDRS4} {sender_mac} accept"),
        format!("{arp_shape} arp saddr ip 0.0.0.0 {own_mac} {sender_mac} accept"),
        drop(SPOOFED_ARP),
    ];
    // Neighbour discovery (types 133-137) as a standard stack sends it:
    // no extension header or fragment, a length that leaves room for at
    // most one option, and that option, if any, the pod's MAC (`lla`
    // holds it as a source, type 1, and a target, type 2, link-layer
    // address option). A target (NA, and a DAD NS from ::) is one of the
    // pod's own addresses. A DAD NS may carry RFC 7527's nonce instead.
    let nd = |kind: &str, rest: &str| format!("ip6 nexthdr ipv6-icmp icmpv6 type {kind} {rest}");
    let target = format!("iif . @th,64,128 @{TARGETS6}");
    let option = |at: u32, kind: u8| format!("@th,{at},8 {kind} iif . @th,{at},64 @{LLA}");
    let icmp6 = vec![
        // A first fragment must show a type that is not neighbour
        // discovery; later ones follow their first.
        format!("frag frag-off 0 icmpv6 type != 133-137 {own6} accept"),
        format!("frag frag-off 0 {}", drop(ND_FRAGMENT)),
        format!(
            "icmpv6 type {{ nd-router-advert, nd-redirect }} {}",
            drop(ROUTER_MESSAGE)
        ),
        nd(
            "nd-neighbor-solicit",
            &format!("ip6 length 24 {own6} accept"),
        ),
        nd(
            "nd-neighbor-solicit",
            &format!("ip6 length 32 {} {own6} accept", option(192, 1)),
        ),
        nd(
            "nd-neighbor-solicit",
            &format!("ip6 saddr :: ip6 length 24 {target} {own_mac} accept"),
        ),
        nd(
            "nd-neighbor-solicit",
            &format!("ip6 saddr :: ip6 length 32 @th,192,16 0x0e01 {target} {own_mac} accept"),
        ),
        nd(
            "nd-neighbor-advert",
            &format!("ip6 length 24 {target} {own6} accept"),
        ),
        nd(
            "nd-neighbor-advert",
            &format!("ip6 length 32 {target} {} {own6} accept", option(192, 2)),
        ),
        nd("nd-router-solicit", &format!("ip6 length 8 {own6} accept")),
        nd(
            "nd-router-solicit",
            &format!("ip6 length 16 {} {own6} accept", option(64, 1)),
        ),
        format!("icmpv6 type 133-137 {}", drop(NEIGHBOUR_DISCOVERY)),
        // `::` only joins the groups DAD needs.
        format!(
            "ip6 saddr :: icmpv6 type {{ mld-listener-report, mld2-listener-report }} {own_mac} accept"
        ),
        format!("{own6} accept"),
        drop(SPOOFED_SOURCE),
    ];
    vec![(GUARD_RULES, guard), (GUARD_ARP, arp), (GUARD_ICMP6, icmp6)]
}

/// The base chains, each hooked with its one rule: a jump to the rules.
fn base_chains() -> impl Iterator<Item = (&'static str, &'static str, i32)> {
    GUARD.hooks.iter().copied()
}

/// Rules the table holds when current: the regular chains' and each base
/// chain's jump.
fn rule_count() -> usize {
    rules().iter().map(|(_, r)| r.len()).sum::<usize>() + base_chains().count()
}

/// The transaction that creates the table at `layout`, or migrates an
/// existing one to it, keeping every element and adding `carried`.
pub fn transaction(layout: u32, carried: &[Element]) -> String {
    let table = format!("{} {TABLE}", GUARD.family_name);
    let mut out = format!("add table {table}\n");
    for (name, definition) in sets() {
        out += &format!("add set {table} {name} {{ {definition} }}\n");
    }
    for (set, key) in carried {
        if let Some(element) = guard::element_text(set, key) {
            out += &format!("add element {table} {set} {{ {element} }}\n");
        }
    }
    for reason in DROP_REASONS {
        out += &format!("add counter {table} {reason}\n");
    }
    let chains = rules();
    for (chain, _) in &chains {
        out += &format!("add chain {table} {chain}\nflush chain {table} {chain}\n");
    }
    for (chain, rules) in &chains {
        for rule in rules {
            out += &format!("add rule {table} {chain} {rule}\n");
        }
    }
    for (chain, hook, priority) in base_chains() {
        out += &format!(
            "add chain {table} {chain} {{ type filter hook {hook} priority {priority}; policy accept; }}\n"
        );
        out += &format!("flush chain {table} {chain}\n");
        out += &format!("add rule {table} {chain} jump {GUARD_RULES}\n");
    }
    // Layout 1's set of guarded ports (every podnet port is guarded now),
    // deleted once no rule uses it.
    out += &format!("add set {table} ports {{ type iface_index; }}\ndelete set {table} ports\n");
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
    let mut nl = Nfnl::open()?;
    let Some(rules) = nl.rule_count(FAMILY_BRIDGE, TABLE)? else {
        return Ok(TableState::Missing);
    };
    let layout = match nl.keys(FAMILY_BRIDGE, TABLE, LAYOUT_SET) {
        Err(e) if e.errno() == Some(Errno::ENOENT) => None,
        keys => guard::layout_of(&keys?),
    };
    Ok(if layout == Some(LAYOUT) && rules == rule_count() {
        TableState::Current
    } else {
        TableState::Outdated(layout)
    })
}

/// Creates the table, or migrates it to this layout, in one transaction
/// that also admits every podnet port it lacks ([`guard::carry`]): none
/// is dropped, or passed, for an instant. Returns what it carried.
pub fn write_table() -> Result<Carry, GuardError> {
    write_at(LAYOUT)
}

/// [`write_table`] at any layout: tests bump it to prove a migration.
pub fn write_at(layout: u32) -> Result<Carry, GuardError> {
    let listed = elements()?.unwrap_or_default();
    let links = Netlink::open()?
        .links()
        .map_err(|e| GuardError::Links(e.to_string()))?;
    let links: Vec<PortLink<'_>> = links
        .iter()
        .map(|l| PortLink {
            ifindex: l.index,
            name: &l.name,
            enslaved: l.master.is_some(),
            alias: l.alias.as_deref(),
        })
        .collect();
    let carried = guard::carry(&listed, &links);
    run_nft(&transaction(layout, &carried.elements))?;
    Ok(carried)
}

/// Runs one `nft -f` transaction.
fn run_nft(transaction: &str) -> Result<(), GuardError> {
    super::run_file(transaction).map_err(GuardError::Write)
}

/// Admits `port`: from now on it may send as its pod and nothing else,
/// or, unguarded, anything. [`GuardError::Missing`] if the node has no
/// table.
pub fn admit(port: &Port) -> Result<(), GuardError> {
    let elements = guard::elements(port);
    let changes: Vec<Change<'_>> = elements
        .iter()
        .map(|(set, key)| (Op::Add, *set, key.as_slice()))
        .collect();
    match Nfnl::open()?.apply(FAMILY_BRIDGE, TABLE, &changes) {
        Err(e) if e.errno() == Some(Errno::ENOENT) => Err(GuardError::Missing),
        other => Ok(other?),
    }
}

/// The per-port elements the table holds; `None` if there is no table.
pub fn elements() -> Result<Option<Vec<Element>>, GuardError> {
    let mut nl = Nfnl::open()?;
    let mut listed = Vec::new();
    for set in SETS {
        match nl.keys(FAMILY_BRIDGE, TABLE, set) {
            Err(e) if e.errno() == Some(Errno::ENOENT) => return Ok(None),
            keys => listed.extend(keys?.into_iter().map(|k| (set, k))),
        }
    }
    Ok(Some(listed))
}

/// Applies a plan: additions, then deletions, in bounded transactions.
pub fn apply(plan: &ElementPlan) -> Result<(), GuardError> {
    let mut nl = Nfnl::open()?;
    fn changes(op: Op, elements: &[Element]) -> Vec<Change<'_>> {
        elements
            .iter()
            .map(|(s, k)| (op, *s, k.as_slice()))
            .collect()
    }
    for (op, elements) in [(Op::Add, &plan.add), (Op::Delete, &plan.delete)] {
        for chunk in changes(op, elements).chunks(CHUNK) {
            nl.apply(FAMILY_BRIDGE, TABLE, chunk)?;
        }
    }
    Ok(())
}

/// Turns the guard off (everything passes) or on again: the supported
/// switch, which the agent's drift repair keeps as it finds it.
pub fn set_passthrough(on: bool) -> Result<(), GuardError> {
    let op = if on { Op::Add } else { Op::Delete };
    let change = [(op, PASSTHROUGH, &PASSTHROUGH_KEY[..])];
    match Nfnl::open()?.apply(FAMILY_BRIDGE, TABLE, &change) {
        // Already off.
        Err(e) if !on && e.errno() == Some(Errno::ENOENT) => Ok(()),
        Err(e) if e.errno() == Some(Errno::ENOENT) => Err(GuardError::Missing),
        other => Ok(other?),
    }
}

/// Frames dropped so far, per reason (none without a table).
pub fn drops() -> Result<Vec<(String, u64)>, GuardError> {
    Ok(Nfnl::open()?.counters(FAMILY_BRIDGE, TABLE)?)
}

/// Deletes the elements of every port whose interface is gone
/// (the plugin's GC). `live` gives the node's links; it is asked after
/// the table is listed, so a port being admitted right now is always seen
/// alive. No table, nothing to do. Another pruner (podnetd) at the same
/// time may delete something first, which fails this transaction: it is
/// planned again from a fresh listing. Returns the elements deleted.
pub fn prune<E: std::fmt::Display>(
    mut live: impl FnMut() -> Result<Links, E>,
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
    fn the_transaction_names_every_set_and_counter_and_records_its_layout() {
        let text = transaction(7, &[]);
        for (name, _) in sets() {
            assert!(text.contains(&format!("add set bridge podnet-guard {name} ")));
        }
        for reason in DROP_REASONS {
            assert!(text.contains(&format!("add counter bridge podnet-guard {reason}\n")));
            assert!(
                text.contains(&drop(reason)),
                "{reason} is counted somewhere"
            );
        }
        for (chain, _) in rules() {
            assert!(text.contains(&format!("flush chain bridge podnet-guard {chain}\n")));
        }
        for chain in ["prerouting", "input"] {
            assert!(text.contains(&format!(
                "add rule bridge podnet-guard {chain} jump guard\n"
            )));
        }
        assert!(text.ends_with("add element bridge podnet-guard layout { 7 }\n"));
        // The switch is looked up before anything can drop.
        assert_eq!(rules()[0].1[0], "meta iiftype @passthrough accept");
        assert_eq!(text.matches("add rule ").count(), rule_count());
        // Layout 1's set goes once its rules are flushed.
        let last_flush = text.rfind("flush chain").unwrap();
        assert!(text.find("delete set bridge podnet-guard ports\n").unwrap() > last_flush);
    }

    #[test]
    fn the_transaction_admits_what_it_carries() {
        let port = Port::unguarded(9, "pn9");
        let text = transaction(LAYOUT, &guard::elements(&port));
        assert!(text.contains("add element bridge podnet-guard unguarded { 9 }\n"));
    }

    #[test]
    fn every_chain_ends_in_a_counted_drop() {
        for (chain, rules) in rules() {
            let last = rules.last().unwrap();
            assert!(last.ends_with("drop"), "{chain}: {last}");
            assert!(last.contains("counter name"), "{chain}: {last}");
        }
    }
}
