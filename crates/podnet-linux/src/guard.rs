//! Anti-spoofing on the node: table `bridge podnet-guard`, made once per
//! node, and the set elements that admit each pod's port (see
//! `podnet_core::guard`).
//!
//! An ADD costs one nfnetlink transaction. The table itself is made with
//! `nft -f` the first time an ADD finds it missing: its rule for
//! neighbour advertisements reads the target address as a raw payload,
//! which nft's JSON input (and so the nftables crate) cannot express in a
//! set lookup.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use podnet_core::guard::{self, Port, TABLE};

use crate::netlink::NetlinkError;
use crate::nfsets::{FAMILY_BRIDGE, NfSets, Op};

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("cannot create nftables table bridge {TABLE}: {0}")]
    Create(String),
    #[error("cannot list links: {0}")]
    Links(String),
}

/// Element deletions per transaction when pruning.
const PRUNE_CHUNK: usize = 64;

/// The guard chain. A port not in `ports` (a link podnet did not attach)
/// passes untouched. From a guarded port, an IPv4 packet or ARP message
/// must come from the pod's MAC and one of its addresses (an ARP probe,
/// from 0.0.0.0, claims nothing); an IPv6 packet from the pod's MAC and
/// one of its addresses, or its link-local address or `::`; and a
/// neighbour advertisement may only name one of the pod's own addresses
/// or a link-local one. Anything else from a pod (another protocol, a
/// VLAN tag) is dropped. The chain runs before the bridge decides
/// anything, so it covers traffic to pods on the node, to the node, and
/// beyond. Every packet pays it, so a pod's own TCP or UDP is accepted by
/// the first or second rule after one set lookup: (port, MAC, source).
const RULESET: &str = r#"
table bridge podnet-guard {
    set ports { type iface_index; }
    set macs { type iface_index . ether_addr; }
    set addrs4 { type iface_index . ether_addr . ipv4_addr; }
    set addrs6 { type iface_index . ether_addr . ipv6_addr; }
    set targets6 { typeof iif . @th,64,128; }
    chain prerouting {
        type filter hook prerouting priority -300; policy accept;
        ether type ip iif . ether saddr . ip saddr @addrs4 accept
        ether type ip6 meta l4proto != ipv6-icmp iif . ether saddr . ip6 saddr @addrs6 accept
        iif != @ports accept
        ether type arp iif . ether saddr . arp saddr ip @addrs4 iif . arp saddr ether @macs accept
        ether type arp arp saddr ip 0.0.0.0 iif . ether saddr @macs accept
        icmpv6 type nd-neighbor-advert @th,64,10 != 0x3fa iif . @th,64,128 != @targets6 drop
        ether type ip6 iif . ether saddr . ip6 saddr @addrs6 accept
        ether type ip6 ip6 saddr { ::, fe80::/10 } iif . ether saddr @macs accept
        drop
    }
}
"#;

/// Admits `port`: from now on it may send as its pod and nothing else.
/// Makes the table if this node has none yet.
pub fn admit(port: &Port) -> Result<(), GuardError> {
    let elements = guard::elements(port);
    let changes: Vec<_> = elements
        .iter()
        .map(|(set, key)| (Op::Add, *set, key.as_slice()))
        .collect();
    let mut sets = NfSets::open()?;
    match sets.apply(FAMILY_BRIDGE, TABLE, &changes) {
        Err(e) if e.errno() == Some(Errno::ENOENT) => {
            // Two first ADDs may race to create it; the loser's `create`
            // fails, and its retry below finds the winner's table.
            let created = create_table();
            sets.apply(FAMILY_BRIDGE, TABLE, &changes)
                .map_err(|e| created.err().unwrap_or(GuardError::Netlink(e)))
        }
        other => Ok(other?),
    }
}

/// Deletes the elements of every port whose interface is gone. `live`
/// lists the interface indexes that exist; it is asked after the elements
/// are listed, so a port being admitted right now is always seen alive.
/// No table, nothing to do. Another pruner (GC, podnetd) at the same
/// time may delete an element first, which fails this transaction: it is
/// planned again from a fresh listing.
pub fn prune<E: std::fmt::Display>(
    mut live: impl FnMut() -> Result<HashSet<u32>, E>,
) -> Result<usize, GuardError> {
    let mut sets = NfSets::open()?;
    let mut attempt = 0;
    loop {
        let mut listed = Vec::new();
        for set in guard::SETS {
            match sets.keys(FAMILY_BRIDGE, TABLE, set) {
                Err(e) if e.errno() == Some(Errno::ENOENT) => return Ok(0),
                keys => listed.extend(keys?.into_iter().map(|k| (set, k))),
            }
        }
        if listed.is_empty() {
            return Ok(0);
        }
        let live = live().map_err(|e| GuardError::Links(e.to_string()))?;
        let stale: Vec<_> = listed
            .iter()
            .filter(|(_, k)| guard::key_ifindex(k).is_some_and(|i| !live.contains(&i)))
            .map(|(set, key)| (Op::Delete, *set, key.as_slice()))
            .collect();
        // Transactions of a bounded size: a failed one reports each of its
        // messages, and the replies must fit the socket's buffer.
        let mut done = 0;
        for chunk in stale.chunks(PRUNE_CHUNK) {
            match sets.apply(FAMILY_BRIDGE, TABLE, chunk) {
                Ok(()) => done += chunk.len(),
                Err(e) if e.errno() == Some(Errno::ENOENT) && attempt < 3 => break,
                Err(e) => return Err(e.into()),
            }
        }
        if done == stale.len() {
            return Ok(done);
        }
        attempt += 1;
    }
}

/// Creates the table, or fails if it exists: `create` is exclusive, and
/// the file is one transaction, so a table that exists keeps its elements.
fn create_table() -> Result<(), GuardError> {
    let fail = |e: String| GuardError::Create(e);
    let ruleset = format!("create table bridge {TABLE}\n{RULESET}");
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(ruleset.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}
