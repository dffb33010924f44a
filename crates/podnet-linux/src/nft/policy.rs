//! NetworkPolicy's table, `inet podnet-policy`: a compiled
//! [`Ruleset`](podnet_core::policy::compile::Ruleset) written as `nft -f`
//! text in one transaction that replaces the table whole, so a change is
//! atomic. Forwarded packets (routed, and bridged ones through
//! `br_netfilter`) pass the egress and the ingress chain; packets a pod
//! sends to its node pass the egress chain. Established and related
//! packets pass first: a connection the new state denies lives on until
//! it closes, and every new one is judged.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::IpAddr;

use ipnet::IpNet;
use podnet_core::policy::Protocol;
use podnet_core::policy::compile::{Chain, CompiledRule, Element, PortSet, Ruleset};

use super::NftError;
use super::nfnl::{Change, FAMILY_INET, Nfnl, Op};
use super::registry::POLICY_TABLE;

/// Writes `ruleset` in place of the table, in one transaction.
pub fn write(ruleset: &Ruleset) -> Result<(), NftError> {
    super::run_file(&transaction(ruleset)).map_err(NftError)
}

/// The table's rule count; `None` without the table. The agent's drift
/// check: a table deleted or edited by hand shows here.
pub fn rule_count() -> Result<Option<usize>, NftError> {
    let err = |e: crate::netlink::NetlinkError| NftError(e.to_string());
    Nfnl::open()
        .map_err(err)?
        .rule_count(FAMILY_INET, POLICY_TABLE)
        .map_err(err)
}

/// How [`update`] changed the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// Only set elements differed: this many, in one nfnetlink batch.
    Elements(usize),
    /// The table written whole.
    Whole,
}

/// Turns the table from `old` (what is in place) into `new`, in one
/// transaction either way: only the elements that differ when nothing
/// else does (a pod added, removed or relabelled), else the whole table.
/// An element batch the kernel refuses (the table was not `old`) falls
/// back to the whole table.
pub fn update(old: &Ruleset, new: &Ruleset) -> Result<Update, NftError> {
    if let Some(changes) = changes(old, new) {
        let batch: Vec<Change<'_>> = changes
            .iter()
            .map(|(op, set, key)| (*op, set.as_str(), key.as_slice()))
            .collect();
        let applied = Nfnl::open().and_then(|mut nl| nl.apply(FAMILY_INET, POLICY_TABLE, &batch));
        if applied.is_ok() {
            return Ok(Update::Elements(batch.len()));
        }
    }
    write(new).map(|()| Update::Whole)
}

/// The element changes that turn `old`'s table into `new`'s, when only
/// host and named-port elements differ; `None` when rules, sets or
/// prefixes do.
pub fn changes(old: &Ruleset, new: &Ruleset) -> Option<Vec<(Op, String, Vec<u8>)>> {
    if old.ingress != new.ingress
        || old.egress != new.egress
        || !old.sets.keys().eq(new.sets.keys())
        || Layout::of(old) != Layout::of(new)
    {
        return None;
    }
    let kinds = kinds(new);
    let mut out = Vec::new();
    for (name, now) in &new.sets {
        let was = old.sets.get(name)?;
        let kind = kinds.get(name.as_str()).copied().unwrap_or(Kind::Addresses);
        let gone = was.difference(now).map(|e| (Op::Delete, e));
        for (op, e) in gone.chain(now.difference(was).map(|e| (Op::Add, e))) {
            let (set, key) = element_key(name, kind, e)?;
            out.push((op, set, key));
        }
    }
    let (was, now) = (own(old), own(new));
    let gone = was.difference(&now).map(|ip| (Op::Delete, ip));
    for (op, ip) in gone.chain(now.difference(&was).map(|ip| (Op::Add, ip))) {
        let key = [octets(*ip), octets(*ip)].concat();
        out.push((op, format!("self{}", suffix(ip.is_ipv4())), key));
    }
    Some(out)
}

/// An element's set and key as the kernel holds them: concatenated
/// fields each padded to 4 bytes.
fn element_key(name: &str, kind: Kind, e: &Element) -> Option<(String, Vec<u8>)> {
    match (kind, e) {
        (Kind::Addresses, Element::Net(n)) if n.prefix_len() == n.max_prefix_len() => Some((
            format!("{name}{}h", suffix(n.addr().is_ipv4())),
            octets(n.addr()),
        )),
        (Kind::Named, Element::Named(ip, proto, port)) => {
            let mut key = octets(*ip);
            key.extend([proto_number(*proto), 0, 0, 0]);
            key.extend(port.to_be_bytes());
            key.extend([0, 0]);
            Some((format!("{name}{}", suffix(ip.is_ipv4())), key))
        }
        _ => None,
    }
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn proto_number(p: Protocol) -> u8 {
    match p {
        Protocol::TCP => 6,
        Protocol::UDP => 17,
        Protocol::SCTP => 132,
    }
}

/// The transaction: the table made (if missing) and deleted, then made
/// again whole; nft applies it all or nothing.
pub fn transaction(r: &Ruleset) -> String {
    let mut t = format!(
        "add table inet {POLICY_TABLE}\ndelete table inet {POLICY_TABLE}\ntable inet {POLICY_TABLE} {{\n"
    );
    let kinds = kinds(r);
    let layout = Layout::of(r);
    for (name, elements) in &r.sets {
        let kind = kinds.get(name.as_str()).copied().unwrap_or(Kind::Addresses);
        write_sets(&mut t, name, kind, elements, &layout);
    }
    let own = own(r);
    for v4 in layout.families() {
        let pairs: Vec<String> = own
            .iter()
            .filter(|ip| ip.is_ipv4() == v4)
            .map(|ip| format!("{ip} . {ip}"))
            .collect();
        let kind = if v4 { "ipv4_addr" } else { "ipv6_addr" };
        set(
            &mut t,
            &format!("self{}", suffix(v4)),
            &format!("{kind} . {kind}"),
            false,
            &pairs,
        );
    }
    t += "\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n";
    t += "\t\tct state established,related accept\n";
    for v4 in layout.families() {
        let (ip, s) = (ip(v4), suffix(v4));
        let _ = writeln!(t, "\t\t{ip} saddr . {ip} daddr @self{s} accept");
    }
    t += "\t\tjump egress\n\t\tjump ingress\n\t}\n";
    t += "\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n";
    t += "\t\tct state established,related accept\n\t\tjump egress\n\t}\n";
    write_chain(&mut t, "egress", &r.egress, &layout);
    write_chain(&mut t, "ingress", &r.ingress, &layout);
    t += "}\n";
    t
}

/// What the table's shape follows besides the rules: the address
/// families in use (IPv4 always; IPv6 once any address is one: a family
/// without sets and rules passes), and the sets holding prefixes
/// (ipBlocks), whose rules look in an interval set beside the hosts' hash
/// set. Pods come and go without changing it, except the first IPv6 one.
#[derive(Debug, PartialEq, Eq)]
struct Layout<'a> {
    v4: bool,
    v6: bool,
    prefixed: BTreeSet<&'a str>,
}

impl<'a> Layout<'a> {
    fn of(r: &'a Ruleset) -> Layout<'a> {
        // IPv4 always: a node's only pod coming and going must not
        // change the table's shape (its ADD would wait for a whole write).
        let mut l = Layout {
            v4: true,
            v6: false,
            prefixed: BTreeSet::new(),
        };
        for (name, elements) in &r.sets {
            for e in elements {
                let ip = match e {
                    Element::Net(n) => {
                        if n.prefix_len() != n.max_prefix_len() {
                            l.prefixed.insert(name.as_str());
                        }
                        n.addr()
                    }
                    Element::Named(ip, ..) => *ip,
                    Element::Ports(..) => continue,
                };
                if ip.is_ipv4() {
                    l.v4 = true;
                } else {
                    l.v6 = true;
                }
            }
        }
        l
    }

    /// The families in use, as `v4` flags.
    fn families(&self) -> impl Iterator<Item = bool> + '_ {
        [true, false]
            .into_iter()
            .filter(|v4| if *v4 { self.v4 } else { self.v6 })
    }
}

/// A set's kind is how the rules use it (an empty one shows no other).
fn kinds(r: &Ruleset) -> BTreeMap<&str, Kind> {
    let mut kinds = BTreeMap::new();
    for rule in r.ingress.rules.iter().chain(&r.egress.rules) {
        match &rule.ports {
            Some(PortSet::Numbered(s)) => kinds.insert(s.as_str(), Kind::Ports),
            Some(PortSet::Named(s)) => kinds.insert(s.as_str(), Kind::Named),
            None => None,
        };
    }
    kinds
}

/// The isolated pods' addresses: a pod reaching itself (through a
/// Service's address) always may.
fn own(r: &Ruleset) -> BTreeSet<IpAddr> {
    [&r.ingress.isolated, &r.egress.isolated]
        .into_iter()
        .filter_map(|s| r.sets.get(s))
        .flatten()
        .filter_map(|e| match e {
            Element::Net(n) if n.prefix_len() == n.max_prefix_len() => Some(n.addr()),
            _ => None,
        })
        .collect()
}

fn suffix(v4: bool) -> &'static str {
    if v4 { "4" } else { "6" }
}

fn ip(v4: bool) -> &'static str {
    if v4 { "ip" } else { "ip6" }
}

/// A chain: packets whose own end (the source for egress, the
/// destination for ingress) is not isolated return; a rule that matches
/// returns; the rest are dropped.
fn write_chain(t: &mut String, name: &str, chain: &Chain, layout: &Layout<'_>) {
    let (own, peer) = match name {
        "egress" => ("saddr", "daddr"),
        _ => ("daddr", "saddr"),
    };
    let _ = writeln!(t, "\tchain {name} {{");
    for v4 in [true, false] {
        let proto = if v4 { "ipv4" } else { "ipv6" };
        if layout.families().any(|f| f == v4) {
            let (ip, s) = (ip(v4), suffix(v4));
            let _ = writeln!(
                t,
                "\t\tmeta nfproto {proto} {ip} {own} != @{}{s}h return",
                chain.isolated
            );
        } else {
            // No pod has an address of this family.
            let _ = writeln!(t, "\t\tmeta nfproto {proto} return");
        }
    }
    for rule in &chain.rules {
        for v4 in layout.families() {
            for text in rule_texts(rule, v4, own, peer, layout) {
                let _ = writeln!(t, "\t\t{text} return");
            }
        }
    }
    t.push_str("\t\tdrop\n\t}\n");
}

/// A rule's text: its own end in the selected pods' host set, and its
/// peer in the peer set's hosts, or (where it has any) its prefixes.
fn rule_texts(
    r: &CompiledRule,
    v4: bool,
    own: &str,
    peer: &str,
    layout: &Layout<'_>,
) -> Vec<String> {
    let (ip, s) = (ip(v4), suffix(v4));
    let head = format!("{ip} {own} @{}{s}h", r.selected);
    let ports = match &r.ports {
        None => String::new(),
        Some(PortSet::Numbered(set)) => format!(" meta l4proto . th dport @{set}"),
        Some(PortSet::Named(set)) => format!(" {ip} daddr . meta l4proto . th dport @{set}{s}"),
    };
    match &r.peers {
        None => vec![format!("{head}{ports}")],
        Some(peers) => ["h", ""]
            .iter()
            .filter(|part| !part.is_empty() || layout.prefixed.contains(peers.as_str()))
            .map(|part| format!("{head} {ip} {peer} @{peers}{s}{part}{ports}"))
            .collect(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Addresses,
    Ports,
    Named,
}

/// A compiled set as nft sets: port sets as they are, address and
/// named-port sets one per family.
fn write_sets(
    t: &mut String,
    name: &str,
    kind: Kind,
    elements: &BTreeSet<Element>,
    layout: &Layout<'_>,
) {
    let mut nets: [Vec<IpNet>; 2] = Default::default();
    let mut named: [Vec<String>; 2] = Default::default();
    let mut ports: BTreeMap<Protocol, Vec<(u16, u16)>> = BTreeMap::new();
    for e in elements {
        match e {
            Element::Net(n) => nets[usize::from(!n.addr().is_ipv4())].push(*n),
            Element::Named(ip, proto, port) => named[usize::from(!ip.is_ipv4())]
                .push(format!("{ip} . {} . {port}", proto_name(*proto))),
            Element::Ports(proto, lo, hi) => ports.entry(*proto).or_default().push((*lo, *hi)),
        }
    }
    if kind == Kind::Ports {
        let items: Vec<String> = ports
            .into_iter()
            .flat_map(|(proto, ranges)| {
                merge(ranges)
                    .into_iter()
                    .map(move |(lo, hi)| format!("{} . {lo}-{hi}", proto_name(proto)))
            })
            .collect();
        set(t, name, "inet_proto . inet_service", true, &items);
        return;
    }
    let named_set = kind == Kind::Named;
    for v4 in layout.families() {
        let f = usize::from(!v4);
        let kind = if v4 { "ipv4_addr" } else { "ipv6_addr" };
        let full = format!("{name}{}", suffix(v4));
        if named_set {
            set(
                t,
                &full,
                &format!("{kind} . inet_proto . inet_service"),
                false,
                &named[f],
            );
        } else {
            // Prefixes in an interval set; hosts (pods, the churn) in a
            // hash set beside it, whose elements change one by one.
            let (hosts, prefixes): (Vec<IpNet>, Vec<IpNet>) = nets[f]
                .iter()
                .partition(|n| n.prefix_len() == n.max_prefix_len());
            if layout.prefixed.contains(name) {
                let items: Vec<String> = outermost(&prefixes)
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                set(t, &full, kind, true, &items);
            }
            let hosts: Vec<String> = hosts.iter().map(|n| n.addr().to_string()).collect();
            set(t, &format!("{full}h"), kind, false, &hosts);
        }
    }
}

fn set(t: &mut String, name: &str, kind: &str, interval: bool, items: &[String]) {
    let _ = write!(t, "\tset {name} {{\n\t\ttype {kind};\n");
    if interval {
        t.push_str("\t\tflags interval;\n");
    }
    if !items.is_empty() {
        let _ = writeln!(t, "\t\telements = {{ {} }}", items.join(", "));
    }
    t.push_str("\t}\n");
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::TCP => "tcp",
        Protocol::UDP => "udp",
        Protocol::SCTP => "sctp",
    }
}

/// The prefixes no other one contains: an interval set takes no overlap.
fn outermost(nets: &[IpNet]) -> Vec<IpNet> {
    let all: BTreeSet<IpNet> = nets.iter().copied().collect();
    all.iter()
        .filter(|n| !all.iter().any(|o| o != *n && o.contains(*n)))
        .copied()
        .collect()
}

/// Port ranges merged where they overlap or touch.
fn merge(mut ranges: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    ranges.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_elements_never_overlap() {
        let nets: Vec<IpNet> = ["10.0.0.0/8", "10.1.2.3/32", "192.168.0.0/16"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(outermost(&nets).len(), 2);
        assert_eq!(
            merge(vec![(80, 80), (80, 81), (83, 90), (82, 82)]),
            [(80, 90)]
        );
        assert_eq!(merge(vec![(1, 2), (5, 6)]), [(1, 2), (5, 6)]);
    }
}
