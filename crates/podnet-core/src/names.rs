//! Names and addresses podnet derives, so DEL and CHECK need no saved state.

use sha2::{Digest, Sha256};

/// Host-side veth names start with this; GC only touches such links.
pub const HOST_VETH_PREFIX: &str = "pn";

/// The host end of a pod's veth: `pn` + 12 hex digits of
/// SHA-256(container ID, ifname). 14 bytes, within the kernel's 15.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    let digest = Sha256::new()
        .chain_update(container_id.as_bytes())
        .chain_update([0u8])
        .chain_update(ifname.as_bytes())
        .finalize();
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{HOST_VETH_PREFIX}{hex}")
}

/// Whether `name` has the exact form of [`host_veth_name`].
pub fn is_host_veth_name(name: &str) -> bool {
    name.strip_prefix(HOST_VETH_PREFIX).is_some_and(|hex| {
        hex.len() == 12
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The pod interface's MAC: derived from its attachment, so a retried ADD
/// gives the pod the same MAC and nothing has to be read back.
pub fn pod_mac(container_id: &str, ifname: &str) -> [u8; 6] {
    local_mac(&[b"podnet-pod", container_id.as_bytes(), ifname.as_bytes()])
}

/// A stable, locally administered unicast MAC for a bridge, derived from
/// its name and first gateway, so it never follows whichever port has the
/// lowest MAC (which would make the gateway's MAC change under the pods).
pub fn bridge_mac(bridge: &str, gateway: &str) -> [u8; 6] {
    local_mac(&[bridge.as_bytes(), gateway.as_bytes()])
}

/// The vxlan device names, one per underlay family.
pub const VXLAN4: &str = "podnet.vxlan";
pub const VXLAN6: &str = "podnet.vxlan6";

/// A VTEP MAC derived from the node's underlay address: stable across
/// restarts and reboots, so peers' FDB entries stay valid.
pub fn vtep_mac(node_ip: &std::net::IpAddr) -> [u8; 6] {
    local_mac(&[b"podnet-vtep", node_ip.to_string().as_bytes()])
}

/// A locally administered unicast MAC hashed from `parts` (NUL-separated,
/// so that ("ab", "c") and ("a", "bc") differ).
fn local_mac(parts: &[&[u8]]) -> [u8; 6] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    mac[0] = (mac[0] & 0xfe) | 0x02; // unicast, locally administered
    mac
}

pub fn format_mac(mac: &[u8]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_are_short_stable_and_distinct() {
        let a = host_veth_name("abc", "eth0");
        assert_eq!(a, host_veth_name("abc", "eth0"));
        assert!(a.len() <= 15 && a.starts_with(HOST_VETH_PREFIX));
        assert!(is_host_veth_name(&a));
        assert!(!is_host_veth_name("pnnotours1") && !is_host_veth_name("pn0123456789AB"));
        assert_ne!(a, host_veth_name("abc", "eth1"));
        // The separator keeps ("ab","ceth0") apart from ("abc","eth0").
        assert_ne!(host_veth_name("ab", "ceth0"), host_veth_name("abc", "eth0"));
    }

    #[test]
    fn pod_mac_is_local_unicast_and_per_attachment() {
        let m = pod_mac("c1", "eth0");
        assert_eq!(m[0] & 0x03, 0x02);
        assert_eq!(m, pod_mac("c1", "eth0"));
        assert_ne!(m, pod_mac("c1", "eth1"));
    }

    #[test]
    fn bridge_mac_is_local_unicast() {
        let m = bridge_mac("podnet0", "10.244.1.1");
        assert_eq!(m[0] & 0x03, 0x02);
        assert_eq!(m, bridge_mac("podnet0", "10.244.1.1"));
        assert_ne!(m, bridge_mac("podnet0", "10.244.2.1"));
    }

    #[test]
    fn vtep_mac_is_stable_and_per_node() {
        let a: std::net::IpAddr = "192.168.1.2".parse().unwrap();
        let b: std::net::IpAddr = "192.168.1.3".parse().unwrap();
        assert_eq!(vtep_mac(&a), vtep_mac(&a));
        assert_ne!(vtep_mac(&a), vtep_mac(&b));
        assert_eq!(vtep_mac(&a)[0] & 0x03, 0x02);
        assert!(VXLAN6.len() <= 15);
    }

    #[test]
    fn mac_round_trip() {
        let m = [0x02, 0xab, 0, 1, 2, 0xff];
        assert_eq!(parse_mac(&format_mac(&m)), Some(m));
        assert_eq!(parse_mac("02:ab:00:01:02"), None);
        assert_eq!(parse_mac("02:ab:00:01:02:ff:00"), None);
        assert_eq!(parse_mac("zz:ab:00:01:02:ff"), None);
    }
}
