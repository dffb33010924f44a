//! Address arithmetic on a common u128 representation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address of `like`'s family with value `n`. `n` must fit the family.
pub fn from_u128(like: IpAddr, n: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// `ip + delta`, or None when it leaves the family's space.
pub fn offset(ip: IpAddr, delta: u128) -> Option<IpAddr> {
    let n = to_u128(ip).checked_add(delta)?;
    let max = match ip {
        IpAddr::V4(_) => u128::from(u32::MAX),
        IpAddr::V6(_) => u128::MAX,
    };
    (n <= max).then(|| from_u128(ip, n))
}

/// `ip - 1`, saturating at the family's first address.
pub fn prev(ip: IpAddr) -> IpAddr {
    from_u128(ip, to_u128(ip).saturating_sub(1))
}

/// The last address of a subnet that a host may use: the broadcast address
/// is excluded for IPv4.
pub fn last_host(net: &IpNet) -> IpAddr {
    match net {
        IpNet::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4.broadcast()) - 1)),
        IpNet::V6(v6) => IpAddr::V6(v6.broadcast()),
    }
}

/// The first host address (network + 1).
pub fn first_host(net: &IpNet) -> IpAddr {
    // A validated subnet is never a single address, so +1 stays inside it.
    offset(net.network(), 1).unwrap_or(net.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_bounds() {
        let net: IpNet = "10.244.1.0/24".parse().unwrap();
        assert_eq!(first_host(&net).to_string(), "10.244.1.1");
        assert_eq!(last_host(&net).to_string(), "10.244.1.254");
        let net6: IpNet = "fd00::/120".parse().unwrap();
        assert_eq!(last_host(&net6).to_string(), "fd00::ff");
    }

    #[test]
    fn offset_stays_in_family() {
        let ip: IpAddr = "255.255.255.255".parse().unwrap();
        assert_eq!(offset(ip, 1), None);
        let ip: IpAddr = "10.0.0.255".parse().unwrap();
        assert_eq!(offset(ip, 1).unwrap().to_string(), "10.0.1.0");
    }
}
