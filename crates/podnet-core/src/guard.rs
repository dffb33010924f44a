//! Anti-spoofing: what a pod's port may send, as the keys of the
//! nftables sets that the node's guard chain looks up.
//!
//! The table is in the bridge family: it sees a frame where it enters the
//! node, on its port, before the bridge learns its source or forwards it
//! or hands it to the node's stack. Its chains hook prerouting, where
//! every frame the bridge forwards passes, and input, where frames to the
//! bridge group addresses that are not forwarded pass; the plugin makes
//! the bridge forward the group addresses it can (`group_fwd_mask`), so
//! that none reaches the node by a path without a hook. Every port whose
//! name is a podnet host veth's is podnet's, so what its sets do not
//! admit is dropped: a port whose elements were lost fails closed until
//! they are re-admitted. A port attached with anti-spoofing off is in
//! [`UNGUARDED`], and passes.
//!
//! From a guarded port an IP packet or ARP claim must carry the pod's MAC
//! and one of the pod's addresses ([`ADDRS4`], [`ADDRS6`]: port, MAC and
//! address in one key, so a packet costs one lookup), among them its
//! link-local address ([`link_local`]); neighbour discovery may only name
//! the pod's own addresses ([`TARGETS6`]) and MAC ([`LLA`]). Every key
//! starts with the interface index, which the kernel does not reuse: a
//! later pod given the same address has another index, so it never
//! inherits its predecessor's elements, and a deleted port's elements
//! match nothing until they are pruned.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The table, in the bridge family.
pub const TABLE: &str = "podnet-guard";
/// The group addresses 01:80:c2:00:00:0X a podnet bridge forwards (bits
/// 3 to 15; the kernel forbids 0 to 2): forwarded, they pass prerouting,
/// where the guard judges them like any other frame. 0 and 1 are
/// forwarded or dropped anyway with STP off, and 2 (slow protocols) goes
/// to the input hook.
pub const GROUP_FWD_MASK: u16 = 0xfff8;
pub const MACS: &str = "macs";
pub const ADDRS4: &str = "addrs4";
pub const ADDRS6: &str = "addrs6";
pub const TARGETS6: &str = "targets6";
/// The pod's MAC as a neighbour discovery option: source (type 1) and
/// target (type 2) link-layer address, each 8 bytes with its type and
/// length.
pub const LLA: &str = "lla";
/// Ports attached with anti-spoofing off: everything they send passes.
pub const UNGUARDED: &str = "unguarded";
/// Every per-port set; each key starts with the port's interface index.
pub const SETS: [&str; 6] = [MACS, ADDRS4, ADDRS6, TARGETS6, LLA, UNGUARDED];
/// The off switch: while it holds [`PASSTHROUGH_KEY`], every frame passes.
pub const PASSTHROUGH: &str = "passthrough";
/// `ARPHRD_ETHER` as an `iface_type` key (2 bytes, host order): every pod
/// port's type.
pub const PASSTHROUGH_KEY: [u8; 2] = 1u16.to_ne_bytes();
/// Holds one element, the table's layout version.
pub const LAYOUT_SET: &str = "layout";
/// The table's layout. A node whose table has an older one (or none, as
/// before versions were kept) is migrated in place, in one transaction
/// that keeps every element: a bump here is all a rule change needs.
/// Layout 2: fails closed, neighbour discovery pinned, the input hook.
pub const LAYOUT: u32 = 2;
/// Why the guard drops a frame: the names of its counters.
pub const DROP_REASONS: [&str; 6] = [
    SPOOFED_SOURCE,
    SPOOFED_ARP,
    ROUTER_MESSAGE,
    NEIGHBOUR_DISCOVERY,
    ND_FRAGMENT,
    OTHER_PROTOCOL,
];
/// IPv4 or IPv6 from an address or MAC not the pod's.
pub const SPOOFED_SOURCE: &str = "spoofed-source";
/// An ARP message whose sender is not the pod.
pub const SPOOFED_ARP: &str = "spoofed-arp";
/// A router advertisement or redirect: pods are never routers.
pub const ROUTER_MESSAGE: &str = "router-message";
/// Neighbour discovery that is not what a standard stack sends for its
/// own addresses.
pub const NEIGHBOUR_DISCOVERY: &str = "neighbour-discovery";
/// A first fragment of neighbour discovery, or one too short to show its
/// ICMPv6 type.
pub const ND_FRAGMENT: &str = "nd-fragment";
/// Neither IP nor ARP (a VLAN tag, LLDP, ...).
pub const OTHER_PROTOCOL: &str = "other-protocol";

/// The layout a table's `layout` set records (a `mark`: 4 bytes, host
/// order); `None` if it holds none.
pub fn layout_of(keys: &[Vec<u8>]) -> Option<u32> {
    keys.iter()
        .filter_map(|k| Some(u32::from_ne_bytes(k.as_slice().try_into().ok()?)))
        .max()
}

/// The link-local address a pod gets at ADD: `fe80::/64` with the
/// modified EUI-64 of its MAC (RFC 4291), what the kernel would derive,
/// fixed by the plugin so that the guard knows it.
pub fn link_local(mac: &[u8; 6]) -> Ipv6Addr {
    let m = mac;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// How a port's permissions are recorded on its host veth, as the link's
/// alias: they live and die with the port, only the node's root can set
/// them, and the agent re-admits every port from them if the table is
/// lost. `podnet-guard <mac> <addr>...`, or `podnet-unguarded`.
const ALIAS_TAG: &str = "podnet-guard";
const UNGUARDED_ALIAS: &str = "podnet-unguarded";
/// The kernel's limit on an alias, with its NUL.
pub const MAX_ALIAS: usize = 255;

/// A pod's port and what it may claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub ifindex: u32,
    /// The host veth's name: a record on a link of another name is not
    /// believed.
    pub name: String,
    pub mac: [u8; 6],
    /// Its addresses from IPAM; the link-local one is derived.
    pub addrs: Vec<IpAddr>,
    /// False: attached with anti-spoofing off (MAC and addresses unused).
    pub guarded: bool,
}

impl Port {
    /// The alias that records this port's permissions; `None` if they do
    /// not fit (a pod with many addresses): that port is not re-admitted
    /// after a lost table until it is attached again.
    pub fn alias(&self) -> Option<String> {
        if !self.guarded {
            return Some(UNGUARDED_ALIAS.to_owned());
        }
        let mut alias = format!("{ALIAS_TAG} {}", crate::names::format_mac(&self.mac));
        for addr in &self.addrs {
            alias.push_str(&format!(" {addr}"));
        }
        (alias.len() <= MAX_ALIAS).then_some(alias)
    }

    /// The port an alias records; `None` unless it is one of ours.
    pub fn from_alias(ifindex: u32, name: &str, alias: &str) -> Option<Port> {
        if alias == UNGUARDED_ALIAS {
            return Some(Port::unguarded(ifindex, name));
        }
        let mut words = alias.split(' ');
        if words.next()? != ALIAS_TAG {
            return None;
        }
        let mac = crate::names::parse_mac(words.next()?)?;
        let addrs = words
            .map(str::parse)
            .collect::<Result<Vec<IpAddr>, _>>()
            .ok()?;
        Some(Port {
            ifindex,
            name: name.to_owned(),
            mac,
            addrs,
            guarded: true,
        })
    }

    /// A port attached with anti-spoofing off.
    pub fn unguarded(ifindex: u32, name: &str) -> Port {
        Port {
            ifindex,
            name: name.to_owned(),
            mac: [0; 6],
            addrs: Vec::new(),
            guarded: false,
        }
    }
}

/// A per-port element: (set, key).
pub type Element = (&'static str, Vec<u8>);

/// The node's links: interface index to name.
pub type Links = HashMap<u32, String>;

/// What to change in the per-port sets: the elements of every live port
/// that are missing (a table rebuilt or cut), and those of ports that are
/// gone (inert, as their index is never reused).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ElementPlan {
    pub add: Vec<Element>,
    pub delete: Vec<Element>,
}

impl ElementPlan {
    pub fn is_empty(&self) -> bool {
        self == &ElementPlan::default()
    }
}

/// Plans the per-port sets from what they hold (`listed`), the node's
/// links (`live`) and the ports recorded on them. A live port's elements
/// are never deleted: it may be being admitted.
pub fn plan_elements(listed: &[Element], live: &Links, ports: &[Port]) -> ElementPlan {
    let have: HashSet<&Element> = listed.iter().collect();
    ElementPlan {
        add: ports
            .iter()
            .filter(|p| live.get(&p.ifindex) == Some(&p.name))
            .flat_map(elements)
            .filter(|e| !have.contains(e))
            .collect(),
        delete: listed
            .iter()
            .filter(|(_, k)| key_ifindex(k).is_some_and(|i| !live.contains_key(&i)))
            .cloned()
            .collect(),
    }
}

/// The live ports the per-port sets admit, read back from their keys
/// (those with a MAC): how a port admitted before records existed gets
/// one, and how a table of an older layout is carried over.
pub fn ports_of(listed: &[Element], live: &Links) -> Vec<Port> {
    let mut macs = BTreeMap::new();
    let mut addrs: BTreeMap<u32, Vec<IpAddr>> = BTreeMap::new();
    let mut unguarded = Vec::new();
    for (set, key) in listed {
        let (Some(ifindex), Some(rest)) = (key_ifindex(key), key.get(4..)) else {
            continue;
        };
        // After the index: the MAC, padded to 8 bytes, then the address.
        let addr = match *set {
            UNGUARDED => {
                unguarded.push(ifindex);
                continue;
            }
            MACS => {
                if let Some(mac) = rest.get(..6).and_then(|m| <[u8; 6]>::try_from(m).ok()) {
                    macs.insert(ifindex, mac);
                }
                continue;
            }
            ADDRS4 => rest
                .get(8..12)
                .and_then(|a| <[u8; 4]>::try_from(a).ok())
                .map(IpAddr::from),
            ADDRS6 => rest
                .get(8..24)
                .and_then(|a| <[u8; 16]>::try_from(a).ok())
                .map(IpAddr::from),
            _ => None,
        };
        if let Some(addr) = addr {
            addrs.entry(ifindex).or_default().push(addr);
        }
    }
    let guarded = macs.into_iter().filter_map(|(ifindex, mac)| {
        let link_local = IpAddr::V6(link_local(&mac));
        Some(Port {
            ifindex,
            name: live.get(&ifindex)?.clone(),
            mac,
            addrs: addrs
                .remove(&ifindex)
                .unwrap_or_default()
                .into_iter()
                .filter(|a| *a != link_local)
                .collect(),
            guarded: true,
        })
    });
    let unguarded = unguarded
        .into_iter()
        .filter_map(|i| Some(Port::unguarded(i, live.get(&i)?)));
    guarded.chain(unguarded).collect()
}

/// A node's link as the guard reads it when it writes its table.
#[derive(Debug, Clone, Copy)]
pub struct PortLink<'a> {
    pub ifindex: u32,
    pub name: &'a str,
    /// A port of some bridge.
    pub enslaved: bool,
    pub alias: Option<&'a str>,
}

/// What the transaction that writes the table (made again, or migrated
/// from an older layout) admits along with its rules, so that no port is
/// dropped or passed wrongly for an instant.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Carry {
    /// The elements the table lacks for the live ports it must admit.
    pub elements: Vec<Element>,
    /// Ports re-admitted from their records or their older elements.
    pub readmitted: usize,
    /// Ports an older release attached with neither record nor elements
    /// (from before the guard, or with anti-spoofing off at layout 1):
    /// they passed unguarded then, and are admitted unguarded.
    pub adopted: usize,
}

/// Plans a [`Carry`] from the elements the table holds (none if it is
/// missing) and the node's links. Every podnet port (named so, and
/// enslaved) is admitted: from its record, else from its elements, else
/// as an older release's unguarded port.
pub fn carry(listed: &[Element], links: &[PortLink<'_>]) -> Carry {
    let live: Links = links
        .iter()
        .map(|l| (l.ifindex, l.name.to_owned()))
        .collect();
    let mut ports: Vec<Port> = links
        .iter()
        .filter_map(|l| Port::from_alias(l.ifindex, l.name, l.alias?))
        .collect();
    for port in ports_of(listed, &live) {
        if !ports.iter().any(|p| p.ifindex == port.ifindex) {
            ports.push(port);
        }
    }
    let adopted: Vec<Port> = links
        .iter()
        .filter(|l| l.enslaved && crate::names::is_host_veth_name(l.name))
        .filter(|l| !ports.iter().any(|p| p.ifindex == l.ifindex))
        .map(|l| Port::unguarded(l.ifindex, l.name))
        .collect();
    let elements = plan_elements(listed, &live, &[&ports[..], &adopted].concat()).add;
    let admitted: HashSet<u32> = elements
        .iter()
        .filter_map(|(_, k)| key_ifindex(k))
        .collect();
    Carry {
        readmitted: admitted.len().saturating_sub(adopted.len()),
        adopted: adopted.len(),
        elements,
    }
}

/// An element as `nft` reads it (the index as a number, raw payload in
/// hex); `None` for a key that is not the set's.
pub fn element_text(set: &str, key: &[u8]) -> Option<String> {
    let index = key_ifindex(key)?;
    let rest = key.get(4..)?;
    let mac = || Some(crate::names::format_mac(rest.get(..6)?));
    let parts = match (set, rest.len()) {
        (UNGUARDED, 0) => vec![],
        (MACS, 8) => vec![mac()?],
        (ADDRS4, 12) => vec![
            mac()?,
            Ipv4Addr::from(<[u8; 4]>::try_from(&rest[8..]).ok()?).to_string(),
        ],
        (ADDRS6, 24) => vec![
            mac()?,
            Ipv6Addr::from(<[u8; 16]>::try_from(&rest[8..]).ok()?).to_string(),
        ],
        (TARGETS6, 16) | (LLA, 8) => {
            vec![
                rest.iter()
                    .fold("0x".to_owned(), |hex, b| hex + &format!("{b:02x}")),
            ]
        }
        _ => return None,
    };
    Some(
        [index.to_string()]
            .into_iter()
            .chain(parts)
            .collect::<Vec<_>>()
            .join(" . "),
    )
}

/// The set elements that admit `port`: (set, key). nftables lays out a
/// concatenated key with each part padded to 4 bytes; an interface index
/// is in host byte order, addresses in network order.
pub fn elements(port: &Port) -> Vec<Element> {
    let index = port.ifindex.to_ne_bytes();
    if !port.guarded {
        return vec![(UNGUARDED, index.to_vec())];
    }
    let key = |rest: &[u8]| {
        let mut key = index.to_vec();
        key.extend_from_slice(rest);
        key.resize(key.len().next_multiple_of(4), 0);
        key
    };
    // The MAC takes 8 bytes in a concatenation.
    let mac = [&port.mac[..], &[0, 0]].concat();
    let mut out = vec![
        (MACS, key(&mac)),
        (LLA, key(&[&[1, 1][..], &port.mac].concat())),
        (LLA, key(&[&[2, 1][..], &port.mac].concat())),
    ];
    let link_local = IpAddr::V6(link_local(&port.mac));
    for addr in port.addrs.iter().chain([&link_local]) {
        match addr {
            IpAddr::V4(v4) => out.push((ADDRS4, key(&[&mac[..], &v4.octets()].concat()))),
            IpAddr::V6(v6) => {
                out.push((ADDRS6, key(&[&mac[..], &v6.octets()].concat())));
                out.push((TARGETS6, key(&v6.octets())));
            }
        }
    }
    out
}

/// The interface index a key belongs to.
pub fn key_ifindex(key: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(key.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(i: u32, addrs: &[&str]) -> Port {
        Port {
            ifindex: i,
            name: format!("pn{i}"),
            mac: [2, 0, 0, 0, 0, i as u8],
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            guarded: true,
        }
    }

    fn live(ports: &[&Port]) -> Links {
        ports.iter().map(|p| (p.ifindex, p.name.clone())).collect()
    }

    #[test]
    fn keys_follow_nftables_concatenation_layout() {
        let p = port(7, &["10.1.2.3", "fd00::5"]);
        let els = elements(&p);
        let idx = 7u32.to_ne_bytes();
        let mac = [2, 0, 0, 0, 0, 7, 0, 0];
        let ll = link_local(&p.mac).octets();
        let v6: Ipv6Addr = "fd00::5".parse().unwrap();
        let want: Vec<Element> = vec![
            (MACS, [&idx[..], &mac].concat()),
            (LLA, [&idx[..], &[1, 1, 2, 0, 0, 0, 0, 7]].concat()),
            (LLA, [&idx[..], &[2, 1, 2, 0, 0, 0, 0, 7]].concat()),
            (ADDRS4, [&idx[..], &mac, &[10, 1, 2, 3]].concat()),
            (ADDRS6, [&idx[..], &mac, &v6.octets()].concat()),
            (TARGETS6, [&idx[..], &v6.octets()].concat()),
            (ADDRS6, [&idx[..], &mac, &ll].concat()),
            (TARGETS6, [&idx[..], &ll].concat()),
        ];
        assert_eq!(els, want);
        assert!(els.iter().all(|(_, k)| key_ifindex(k) == Some(7)));
    }

    #[test]
    fn elements_read_as_nft_writes_them() {
        let p = port(7, &["10.1.2.3", "fd00::5"]);
        let texts: Vec<String> = elements(&p)
            .iter()
            .map(|(set, key)| element_text(set, key).unwrap())
            .collect();
        assert_eq!(
            texts,
            [
                "7 . 02:00:00:00:00:07",
                "7 . 0x0101020000000007",
                "7 . 0x0201020000000007",
                "7 . 02:00:00:00:00:07 . 10.1.2.3",
                "7 . 02:00:00:00:00:07 . fd00::5",
                "7 . 0xfd000000000000000000000000000005",
                "7 . 02:00:00:00:00:07 . fe80::ff:fe00:7",
                "7 . 0xfe80000000000000000000fffe000007",
            ]
        );
        let (set, key) = &elements(&Port::unguarded(9, "pn9"))[0];
        assert_eq!(element_text(set, key).as_deref(), Some("9"));
        // A key of another set's shape is not rendered.
        assert_eq!(element_text(ADDRS4, &elements(&p)[0].1), None);
        assert_eq!(element_text("other", &elements(&p)[0].1), None);
    }

    #[test]
    fn a_table_written_again_carries_every_podnet_port() {
        let current = port(1, &["10.0.0.1"]);
        let layout1 = port(2, &["10.0.0.2", "fd00::2"]);
        let ll2 = link_local(&layout1.mac).octets();
        let alias1 = current.alias().unwrap();
        // Layout 1 held neither the link-local address nor `lla`.
        let listed: Vec<Element> = elements(&current)
            .into_iter()
            .chain(
                elements(&layout1)
                    .into_iter()
                    .filter(|(set, key)| *set != LLA && !key.ends_with(&ll2)),
            )
            .collect();
        let link = |ifindex, name, enslaved, alias| PortLink {
            ifindex,
            name,
            enslaved,
            alias,
        };
        let links = [
            link(1, "pn1", true, Some(alias1.as_str())),
            link(2, "pn2", true, None),
            // Attached before the guard, or unguarded at layout 1.
            link(3, "pn0123456789ab", true, None),
            // Being made: not a port yet.
            link(4, "pnabcdefabcdef", false, None),
            // Not podnet's.
            link(5, "eth0", true, None),
            // Recorded unguarded, its element lost.
            link(6, "pn6", true, Some("podnet-unguarded")),
        ];
        let carried = carry(&listed, &links);
        let mut want: Vec<Element> = elements(&layout1)
            .into_iter()
            .filter(|e| !listed.contains(e))
            .chain(elements(&Port::unguarded(6, "pn6")))
            .chain(elements(&Port::unguarded(3, "pn0123456789ab")))
            .collect();
        let mut have = carried.elements.clone();
        want.sort();
        have.sort();
        assert_eq!(have, want);
        assert_eq!((carried.readmitted, carried.adopted), (2, 1));
        // Written again with everything in: nothing to carry.
        let listed = [listed, carried.elements].concat();
        assert_eq!(carry(&listed, &links), Carry::default());
    }

    #[test]
    fn the_link_local_address_is_the_kernels_eui64() {
        // As `ip -6 addr` shows it for a link with this MAC.
        let mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
        assert_eq!(
            link_local(&mac),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn a_port_round_trips_through_its_alias() {
        let p = port(9, &["10.1.2.3", "fd00::5"]);
        let alias = p.alias().unwrap();
        assert_eq!(alias, "podnet-guard 02:00:00:00:00:09 10.1.2.3 fd00::5");
        assert_eq!(Port::from_alias(9, "pn9", &alias), Some(p.clone()));
        for other in [
            "",
            "someone else's",
            "podnet-guard zz",
            "podnet-guard 02:00:00:00:00:09 x",
        ] {
            assert_eq!(Port::from_alias(9, "pn9", other), None, "{other}");
        }
        let crowded = Port {
            addrs: vec!["fd00:1:2:3:4:5:6:7".parse().unwrap(); 16],
            ..p
        };
        assert_eq!(crowded.alias(), None, "longer than an alias may be");
    }

    #[test]
    fn elements_are_planned_from_live_ports_and_their_records() {
        let (a, b, gone) = (
            port(3, &["10.0.0.3"]),
            port(4, &["10.0.0.4"]),
            port(2, &["10.0.0.2"]),
        );
        // A table that lost b's elements and still holds a departed port's.
        let listed: Vec<Element> = elements(&a).into_iter().chain(elements(&gone)).collect();
        // Index 5 is a port being admitted right now, not yet recorded.
        let mut links = live(&[&a, &b]);
        links.insert(5, "pn5".into());
        let plan = plan_elements(&listed, &links, &[a.clone(), b.clone()]);
        assert_eq!(plan.add, elements(&b));
        assert_eq!(plan.delete, elements(&gone));
        let all: Vec<Element> = elements(&a).into_iter().chain(elements(&b)).collect();
        assert!(plan_elements(&all, &links, &[a, b]).is_empty());
        // An unguarded port: one element.
        let open = Port::unguarded(3, "pn3");
        let plan = plan_elements(&[], &links, std::slice::from_ref(&open));
        assert_eq!(plan.add, [(UNGUARDED, 3u32.to_ne_bytes().to_vec())]);
        assert_eq!(
            Port::from_alias(3, "pn3", &open.alias().unwrap()),
            Some(open.clone())
        );
        assert_eq!(ports_of(&plan.add, &links), [open]);
    }

    #[test]
    fn a_record_on_a_link_of_another_name_is_not_trusted() {
        let a = port(3, &["10.0.0.3"]);
        let links: Links = [(3, "eth0".to_owned())].into();
        assert!(plan_elements(&[], &links, &[a]).is_empty());
    }

    #[test]
    fn ports_read_back_from_their_elements() {
        let a = port(3, &["10.0.0.3", "fd00::3"]);
        let b = port(4, &["10.0.0.4"]);
        let listed: Vec<Element> = elements(&a).into_iter().chain(elements(&b)).collect();
        assert_eq!(ports_of(&listed, &live(&[&a, &b])), [a.clone(), b.clone()]);
        // Only live ones.
        assert_eq!(ports_of(&listed, &live(&[&b])), [b]);
        // A port without its MAC element is not one we can record.
        let no_mac: Vec<Element> = listed.into_iter().filter(|(s, _)| *s != MACS).collect();
        assert!(ports_of(&no_mac, &live(&[&a])).is_empty());
    }

    #[test]
    fn the_layout_is_the_largest_mark() {
        assert_eq!(layout_of(&[]), None);
        assert_eq!(
            layout_of(&[1u32.to_ne_bytes().to_vec(), 3u32.to_ne_bytes().to_vec()]),
            Some(3)
        );
        assert_eq!(layout_of(&[vec![1, 2]]), None);
    }

    #[test]
    fn a_short_key_has_no_index() {
        assert_eq!(key_ifindex(&[1, 2]), None);
    }
}
