//! Anti-spoofing: what a pod's port on the bridge may send, as the keys
//! of the nftables sets that the node's guard chain looks up.
//!
//! A port is guarded once its interface index is in [`PORTS`]; from then
//! on an IP packet or ARP claim it sends must carry the pod's MAC and one
//! of the pod's addresses ([`ADDRS4`], [`ADDRS6`]: port, MAC and address
//! in one key, so a packet costs one lookup), anything else the pod's MAC
//! ([`MACS`]), and a neighbour advertisement must name one of the pod's
//! addresses ([`TARGETS6`]). Every
//! key starts with the interface index, which the kernel does not reuse:
//! a later pod given the same address has another index, so it never
//! inherits its predecessor's elements, and a deleted port's elements
//! match nothing until they are pruned.

use std::net::IpAddr;

/// The table, in the bridge family: it sees a frame where it enters the
/// node, before the bridge forwards it or hands it to the node's stack.
pub const TABLE: &str = "podnet-guard";
pub const PORTS: &str = "ports";
pub const MACS: &str = "macs";
pub const ADDRS4: &str = "addrs4";
pub const ADDRS6: &str = "addrs6";
pub const TARGETS6: &str = "targets6";
/// Every per-port set; each key starts with the port's interface index.
pub const SETS: [&str; 5] = [PORTS, MACS, ADDRS4, ADDRS6, TARGETS6];
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
pub const LAYOUT: u32 = 1;

/// The layout a table's `layout` set records (a `mark`: 4 bytes, host
/// order); `None` if it holds none.
pub fn layout_of(keys: &[Vec<u8>]) -> Option<u32> {
    keys.iter()
        .filter_map(|k| Some(u32::from_ne_bytes(k.as_slice().try_into().ok()?)))
        .max()
}

/// How a port's permissions are recorded on its host veth, as the link's
/// alias: they live and die with the port, only the node's root can set
/// them, and the agent re-admits every guarded port from them if the
/// table is lost. `podnet-guard <mac> <addr>...`
const ALIAS_TAG: &str = "podnet-guard";
/// The kernel's limit on an alias, with its NUL.
pub const MAX_ALIAS: usize = 255;

/// A pod's port and what it may claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub addrs: Vec<IpAddr>,
}

impl Port {
    /// The alias that records this port's permissions; `None` if they do
    /// not fit (a pod with many addresses): that port is not re-admitted
    /// after a lost table until it is attached again.
    pub fn alias(&self) -> Option<String> {
        let mut alias = format!("{ALIAS_TAG} {}", crate::names::format_mac(&self.mac));
        for addr in &self.addrs {
            alias.push_str(&format!(" {addr}"));
        }
        (alias.len() <= MAX_ALIAS).then_some(alias)
    }

    /// The port an alias records; `None` unless it is one of ours.
    pub fn from_alias(ifindex: u32, alias: &str) -> Option<Port> {
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
            mac,
            addrs,
        })
    }
}

/// A per-port element: (set, key).
pub type Element = (&'static str, Vec<u8>);

/// What to change in the per-port sets: the elements of every live
/// guarded port that are missing (a table rebuilt or cut), and those of
/// ports that are gone (inert, as their index is never reused).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ElementPlan {
    pub add: Vec<Element>,
    pub delete: Vec<Element>,
}

/// Plans the per-port sets from what they hold (`listed`), the interface
/// indexes that exist (`live`) and the guarded ports recorded on them.
/// A live port's elements are never deleted: it may be being admitted.
pub fn plan_elements(
    listed: &[Element],
    live: &std::collections::HashSet<u32>,
    ports: &[Port],
) -> ElementPlan {
    let have: std::collections::HashSet<&Element> = listed.iter().collect();
    ElementPlan {
        add: ports
            .iter()
            .filter(|p| live.contains(&p.ifindex))
            .flat_map(elements)
            .filter(|e| !have.contains(e))
            .collect(),
        delete: listed
            .iter()
            .filter(|(_, k)| key_ifindex(k).is_some_and(|i| !live.contains(&i)))
            .cloned()
            .collect(),
    }
}

/// The ports the per-port sets admit, read back from their keys (those
/// with a MAC): how a port admitted before records existed gets one.
pub fn ports_of(listed: &[Element]) -> Vec<Port> {
    let mut macs = std::collections::BTreeMap::new();
    let mut addrs: std::collections::BTreeMap<u32, Vec<IpAddr>> = Default::default();
    for (set, key) in listed {
        let (Some(ifindex), Some(rest)) = (key_ifindex(key), key.get(4..)) else {
            continue;
        };
        // After the index: the MAC, padded to 8 bytes, then the address.
        let addr = match *set {
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
    macs.into_iter()
        .map(|(ifindex, mac)| Port {
            ifindex,
            mac,
            addrs: addrs.remove(&ifindex).unwrap_or_default(),
        })
        .collect()
}

/// The set elements that admit `port`: (set, key). nftables lays out a
/// concatenated key with each part padded to 4 bytes; an interface index
/// is in host byte order, addresses in network order.
pub fn elements(port: &Port) -> Vec<(&'static str, Vec<u8>)> {
    let index = port.ifindex.to_ne_bytes();
    let key = |rest: &[u8]| {
        let mut key = index.to_vec();
        key.extend_from_slice(rest);
        key.resize(key.len().next_multiple_of(4), 0);
        key
    };
    // The MAC takes 8 bytes in a concatenation.
    let mac = [&port.mac[..], &[0, 0]].concat();
    let mut out = vec![(PORTS, index.to_vec()), (MACS, key(&mac))];
    for addr in &port.addrs {
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

    #[test]
    fn keys_follow_nftables_concatenation_layout() {
        let port = Port {
            ifindex: 7,
            mac: [2, 0, 0, 0, 0, 9],
            addrs: vec!["10.1.2.3".parse().unwrap(), "fd00::5".parse().unwrap()],
        };
        let els = elements(&port);
        let idx = 7u32.to_ne_bytes();
        assert_eq!(els[0], (PORTS, idx.to_vec()));
        assert_eq!(els[1].0, MACS);
        assert_eq!(els[1].1, [&idx[..], &[2, 0, 0, 0, 0, 9, 0, 0]].concat());
        let mac = [2, 0, 0, 0, 0, 9, 0, 0];
        assert_eq!(els[2], (ADDRS4, [&idx[..], &mac, &[10, 1, 2, 3]].concat()));
        let v6: std::net::Ipv6Addr = "fd00::5".parse().unwrap();
        assert_eq!(els[3], (ADDRS6, [&idx[..], &mac, &v6.octets()].concat()));
        assert_eq!(els[4], (TARGETS6, [&idx[..], &v6.octets()].concat()));
        assert!(els.iter().all(|(_, k)| key_ifindex(k) == Some(7)));
    }

    #[test]
    fn a_port_round_trips_through_its_alias() {
        let port = Port {
            ifindex: 9,
            mac: [2, 0, 0, 0, 0, 9],
            addrs: vec!["10.1.2.3".parse().unwrap(), "fd00::5".parse().unwrap()],
        };
        let alias = port.alias().unwrap();
        assert_eq!(alias, "podnet-guard 02:00:00:00:00:09 10.1.2.3 fd00::5");
        assert_eq!(Port::from_alias(9, &alias), Some(port.clone()));
        for other in [
            "",
            "someone else's",
            "podnet-guard zz",
            "podnet-guard 02:00:00:00:00:09 x",
        ] {
            assert_eq!(Port::from_alias(9, other), None, "{other}");
        }
        let crowded = Port {
            addrs: vec!["fd00:1:2:3:4:5:6:7".parse().unwrap(); 16],
            ..port
        };
        assert_eq!(crowded.alias(), None, "longer than an alias may be");
    }

    #[test]
    fn elements_are_planned_from_live_ports_and_their_aliases() {
        let port = |i: u32, a: &str| Port {
            ifindex: i,
            mac: [2, 0, 0, 0, 0, i as u8],
            addrs: vec![a.parse().unwrap()],
        };
        let (a, b, gone) = (
            port(3, "10.0.0.3"),
            port(4, "10.0.0.4"),
            port(2, "10.0.0.2"),
        );
        // A table that lost b's elements and still holds a departed port's.
        let listed: Vec<Element> = elements(&a).into_iter().chain(elements(&gone)).collect();
        // Index 5 is a port being admitted right now, not yet recorded.
        let live = [3, 4, 5].into_iter().collect();
        let plan = plan_elements(&listed, &live, &[a.clone(), b.clone()]);
        assert_eq!(plan.add, elements(&b));
        assert_eq!(plan.delete, elements(&gone));
        let all: Vec<Element> = elements(&a).into_iter().chain(elements(&b)).collect();
        assert_eq!(plan_elements(&all, &live, &[a, b]), ElementPlan::default());
    }

    #[test]
    fn ports_read_back_from_their_elements() {
        let port = |i: u32, addrs: &[&str]| Port {
            ifindex: i,
            mac: [2, 0, 0, 0, 0, i as u8],
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        };
        let a = port(3, &["10.0.0.3", "fd00::3"]);
        let b = port(4, &["10.0.0.4"]);
        let listed: Vec<Element> = elements(&a).into_iter().chain(elements(&b)).collect();
        assert_eq!(ports_of(&listed), [a, b]);
        // A port without its MAC element is not one we can record.
        let no_mac: Vec<Element> = listed.into_iter().filter(|(s, _)| *s != MACS).collect();
        assert!(ports_of(&no_mac).is_empty());
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
