//! Every nftables table podnet makes: its family, name and hooks, who
//! writes it, and who removes it when. `podnetd --cleanup` and
//! `podnet uninstall-cni` remove tables by reading this list; a lab's
//! teardown removes its namespaces, and every table with them.

use super::nfnl::{FAMILY_BRIDGE, FAMILY_INET, Nfnl};
use podnet_core::names::is_host_veth_name;

use crate::netlink::{Netlink, NetlinkError};

pub const AGENT_TABLE: &str = "podnet";
/// The NAT chains (the agent's and the plugin's), at srcnat priority.
pub const POSTROUTING: &str = "postrouting";
pub const SRCNAT: i32 = 100;
/// The agent's notrack chains, at raw priority (before conntrack).
pub const RAW_PREROUTING: &str = "raw-prerouting";
pub const RAW_OUTPUT: &str = "raw-output";
pub const RAW: i32 = -300;
/// The agent's overlay filter, where packets are delivered to the node.
pub const OVERLAY_INPUT: &str = "overlay-input";
pub const FILTER: i32 = 0;
/// The guard's base chains: where the bridge takes a frame in to forward
/// it, and where it takes a group address's frame in for the node; both
/// before it learns the frame's source. Each jumps to [`GUARD_RULES`].
pub const GUARD_CHAIN: &str = "prerouting";
pub const GUARD_INPUT: &str = "input";
pub const GUARD_PRIORITY: i32 = -300;
/// The guard's rules, and its ARP and ICMPv6 rules.
pub const GUARD_RULES: &str = "guard";
pub const GUARD_ARP: &str = "guard-arp";
pub const GUARD_ICMP6: &str = "guard-icmpv6";
pub const CNI_TABLE: &str = "podnet-cni";
/// NetworkPolicy's table, and its base chains.
pub const POLICY_TABLE: &str = "podnet-policy";
pub use podnet_core::guard::TABLE as GUARD_TABLE;

/// When a table may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// With the agent: `podnetd --cleanup`.
    WithAgent,
    /// Once no podnet pod remains on the node: its rules or elements
    /// protect or serve pods, which outlive the agent and the plugin's
    /// files. `--cleanup` and `uninstall-cni` remove it only then.
    WithLastPod,
}

/// One chain with a hook: (name, hook, priority).
pub type Hook = (&'static str, &'static str, i32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// `NFPROTO_*`.
    pub family: u8,
    pub family_name: &'static str,
    pub name: &'static str,
    pub hooks: &'static [Hook],
    /// Who writes it.
    pub writer: &'static str,
    pub removal: Removal,
}

pub const EGRESS: Table = Table {
    family: FAMILY_INET,
    family_name: "inet",
    name: AGENT_TABLE,
    hooks: &[
        (POSTROUTING, "postrouting", SRCNAT),
        (RAW_PREROUTING, "prerouting", RAW),
        (RAW_OUTPUT, "output", RAW),
        (OVERLAY_INPUT, "input", FILTER),
    ],
    writer: "podnetd (nft::egress)",
    removal: Removal::WithAgent,
};

pub const IP_MASQ: Table = Table {
    family: FAMILY_INET,
    family_name: "inet",
    name: CNI_TABLE,
    hooks: &[(POSTROUTING, "postrouting", SRCNAT)],
    writer: "the plugin, ipMasq (nft::masq)",
    removal: Removal::WithLastPod,
};

pub const GUARD: Table = Table {
    family: FAMILY_BRIDGE,
    family_name: "bridge",
    name: GUARD_TABLE,
    hooks: &[
        (GUARD_CHAIN, "prerouting", GUARD_PRIORITY),
        (GUARD_INPUT, "input", GUARD_PRIORITY),
    ],
    writer: "podnetd, or the plugin standalone; elements by the plugin (nft::guard)",
    removal: Removal::WithLastPod,
};

pub const POLICY: Table = Table {
    family: FAMILY_INET,
    family_name: "inet",
    name: POLICY_TABLE,
    hooks: &[("forward", "forward", FILTER), ("input", "input", FILTER)],
    writer: "podnetd (nft::policy)",
    removal: Removal::WithAgent,
};

/// Every table podnet makes.
pub const TABLES: [Table; 4] = [EGRESS, IP_MASQ, GUARD, POLICY];

/// Removes the tables `removable` picks; a table that is not there is
/// not an error. Returns the ones removed.
pub fn remove(removable: impl Fn(&Table) -> bool) -> Result<Vec<Table>, NetlinkError> {
    let mut nl = Nfnl::open()?;
    let mut removed = Vec::new();
    for table in TABLES.into_iter().filter(|t| removable(t)) {
        if nl.delete_table(table.family, table.name)? {
            removed.push(table);
        }
    }
    Ok(removed)
}

/// What a clean-up removes: the agent's own tables if `agent` (podnetd's
/// clean-up, not the plugin's), the pods' ones once no pod remains.
pub fn removable(agent: bool, pods_remain: bool) -> impl Fn(&Table) -> bool {
    move |t| match t.removal {
        Removal::WithAgent => agent,
        Removal::WithLastPod => !pods_remain,
    }
}

/// Whether any podnet pod remains on the node: a host veth of podnet's.
pub fn pods_remain(nl: &mut Netlink) -> Result<bool, NetlinkError> {
    Ok(nl.links()?.iter().any(|l| is_host_veth_name(&l.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pods_tables_stay_while_pods_remain() {
        let names = |agent, pods| -> Vec<&str> {
            TABLES
                .iter()
                .filter(|t| removable(agent, pods)(t))
                .map(|t| t.name)
                .collect()
        };
        assert_eq!(names(true, true), ["podnet", "podnet-policy"]);
        assert_eq!(
            names(true, false),
            ["podnet", "podnet-cni", "podnet-guard", "podnet-policy"]
        );
        assert!(names(false, true).is_empty());
        assert_eq!(names(false, false), ["podnet-cni", "podnet-guard"]);
    }

    #[test]
    fn names_are_unique_and_fit() {
        for (i, t) in TABLES.iter().enumerate() {
            assert!(t.name.len() < 32);
            assert!(
                TABLES[..i]
                    .iter()
                    .all(|o| (o.family, o.name) != (t.family, t.name))
            );
        }
    }
}
