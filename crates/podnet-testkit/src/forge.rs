//! Forged frames for the anti-spoofing tests: built byte by byte and sent
//! from a packet socket, so the kernel adds nothing of its own (source
//! address, MAC, checksums are all ours).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::time::Duration;

const ETH_IP: u16 = 0x0800;
const ETH_ARP: u16 = 0x0806;
const ETH_IP6: u16 = 0x86dd;
const UDP: u8 = 17;
const ICMP6: u8 = 58;
pub const BROADCAST: [u8; 6] = [0xff; 6];

fn ethernet(dst: [u8; 6], src: [u8; 6], kind: u16) -> Vec<u8> {
    [&dst[..], &src[..], &kind.to_be_bytes()].concat()
}

/// The Internet checksum of `parts` laid end to end.
fn checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IP packet carrying `proto`/`body`, its transport checksum (at
/// `csum_at` in `body`) filled in over the pseudo-header.
fn ip_packet(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    hops: u8,
    mut body: Vec<u8>,
    csum_at: usize,
) -> Vec<u8> {
    let len = body.len() as u16;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let pseudo = [
                &s.octets()[..],
                &d.octets(),
                &[0, proto],
                &len.to_be_bytes(),
            ]
            .concat();
            let c = checksum(&[&pseudo, &body]);
            body[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&(20 + len).to_be_bytes());
            h.extend_from_slice(&[0, 0, 0x40, 0, hops, proto, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let c = checksum(&[&h]);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            [h, body].concat()
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let pseudo = [
                &s.octets()[..],
                &d.octets(),
                &u32::from(len).to_be_bytes(),
                &[0, 0, 0, proto],
            ]
            .concat();
            let c = checksum(&[&pseudo, &body]);
            body[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&len.to_be_bytes());
            h.extend_from_slice(&[proto, hops]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            [h, body].concat()
        }
        _ => panic!("{src} and {dst} are of different families"),
    }
}

/// A UDP datagram from `src` to `dst`:`port` in an Ethernet frame.
pub fn udp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    port: u16,
    payload: &[u8],
) -> Vec<u8> {
    datagram(src_mac, dst_mac, (src, dst), (40000, port), payload)
}

/// A UDP datagram between `ports` (source, destination).
fn datagram(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    (src, dst): (IpAddr, IpAddr),
    (sport, dport): (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&sport.to_be_bytes());
    body.extend_from_slice(&dport.to_be_bytes());
    body.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(payload);
    let kind = if src.is_ipv4() { ETH_IP } else { ETH_IP6 };
    [
        ethernet(dst_mac, src_mac, kind),
        ip_packet(src, dst, UDP, 64, body, 6),
    ]
    .concat()
}

/// A gratuitous ARP reply: "`ip` is at `mac`", to everyone.
pub fn arp_claim(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut f = ethernet(BROADCAST, mac, ETH_ARP);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f
}

/// An unsolicited neighbour advertisement (override set): "`target` is
/// at `mac`", sent from `src` to all nodes.
pub fn neighbour_advert(mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
    let mut body = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&mac);
    let frame = ethernet([0x33, 0x33, 0, 0, 0, 1], mac, ETH_IP6);
    [
        frame,
        ip_packet(IpAddr::V6(src), IpAddr::V6(all_nodes), ICMP6, 255, body, 2),
    ]
    .concat()
}

/// Any Ethernet frame: the bridge group addresses, other protocols.
pub fn raw(dst: [u8; 6], src: [u8; 6], kind: u16, payload: &[u8]) -> Vec<u8> {
    [ethernet(dst, src, kind), payload.to_vec()].concat()
}

/// The bridge group addresses 01:80:c2:00:00:0X.
pub fn group(x: u8) -> [u8; 6] {
    [0x01, 0x80, 0xc2, 0, 0, x]
}

/// `ff02::1` as a MAC.
pub const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// An ICMPv6 message (`body` from its type on; checksum filled in), hop
/// limit 255 as neighbour discovery requires.
pub fn icmp6(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    body: Vec<u8>,
) -> Vec<u8> {
    [
        ethernet(dst_mac, src_mac, ETH_IP6),
        ip_packet(IpAddr::V6(src), IpAddr::V6(dst), ICMP6, 255, body, 2),
    ]
    .concat()
}

/// A neighbour discovery body: type, code, checksum, 4 bytes of flags or
/// reserved, the target (if any), then the options as given.
pub fn nd(kind: u8, flags: u8, target: Option<Ipv6Addr>, options: &[&[u8]]) -> Vec<u8> {
    let mut body = vec![kind, 0, 0, 0, flags, 0, 0, 0];
    if let Some(t) = target {
        body.extend_from_slice(&t.octets());
    }
    for o in options {
        body.extend_from_slice(o);
    }
    body
}

/// A link-layer address option: source (1) or target (2).
pub fn lla(kind: u8, mac: [u8; 6]) -> Vec<u8> {
    [&[kind, 1][..], &mac].concat()
}

/// A router advertisement, high preference, router lifetime 1800 s, with
/// a source link-layer option.
pub fn router_advert(mac: [u8; 6]) -> Vec<u8> {
    let mut body = vec![134, 0, 0, 0, 64, 0x08, 0x07, 0x08];
    body.extend_from_slice(&[0; 8]);
    body.extend_from_slice(&lla(1, mac));
    body
}

/// A redirect: "to reach `dest`, go via `target`".
pub fn redirect(target: Ipv6Addr, dest: Ipv6Addr) -> Vec<u8> {
    let mut body = vec![137, 0, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&dest.octets());
    body
}

/// An IPv6 packet of `proto`/`body` (its checksum at `csum_at`, computed
/// over the whole) cut in two fragments at `split` (a multiple of 8).
pub fn fragments6(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    body: Vec<u8>,
    split: usize,
) -> [Vec<u8>; 2] {
    let whole = ip_packet(IpAddr::V6(src), IpAddr::V6(dst), ICMP6, 255, body, 2);
    let payload = &whole[40..];
    let part = |from: usize, to: usize, more: bool| {
        let data = &payload[from..to];
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        h.extend_from_slice(&[44, 255]);
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
        let offset = ((from / 8) as u16) << 3 | u16::from(more);
        h.extend_from_slice(&[ICMP6, 0]);
        h.extend_from_slice(&offset.to_be_bytes());
        h.extend_from_slice(&0x5eed_u32.to_be_bytes());
        [ethernet(dst_mac, src_mac, ETH_IP6), h, data.to_vec()].concat()
    };
    [part(0, split, true), part(split, payload.len(), false)]
}

/// An ARP probe: "who has `target`?", from 0.0.0.0, claiming
/// `sender_mac`, in a frame from `src_mac`.
pub fn arp_probe(src_mac: [u8; 6], sender_mac: [u8; 6], target: Ipv4Addr) -> Vec<u8> {
    let mut f = ethernet(BROADCAST, src_mac, ETH_ARP);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// A VXLAN packet's UDP payload: the header with `vni`, then `inner`.
pub fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    [&[0x08, 0, 0, 0][..], &(vni << 8).to_be_bytes(), inner].concat()
}

/// A UDP datagram from and to `port` (an overlay's own).
pub fn udp_bytes(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    addrs: (IpAddr, IpAddr),
    port: u16,
    payload: &[u8],
) -> Vec<u8> {
    datagram(src_mac, dst_mac, addrs, (port, port), payload)
}

/// Captures the frames that arrive on an interface of a netns.
pub struct Sniffer {
    fd: std::os::fd::OwnedFd,
}

impl Sniffer {
    #[allow(unsafe_code)]
    pub fn new(netns: &str, ifname: &str) -> Sniffer {
        use std::os::fd::{AsRawFd, FromRawFd};
        crate::in_netns(netns, || {
            let mut nl = podnet_linux::netlink::Netlink::open().unwrap();
            let index = nl.link(ifname).unwrap().unwrap().index;
            let all = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket calls on a descriptor we own; the
            // address is plain data alive for the call.
            unsafe {
                let fd = libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_NONBLOCK,
                    i32::from(all),
                );
                assert!(fd >= 0, "{}", std::io::Error::last_os_error());
                let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
                let mut addr: libc::sockaddr_ll = std::mem::zeroed();
                addr.sll_family = libc::AF_PACKET as u16;
                addr.sll_protocol = all;
                addr.sll_ifindex = index as i32;
                let bound = libc::bind(
                    fd.as_raw_fd(),
                    (&raw const addr).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(bound, 0, "{}", std::io::Error::last_os_error());
                Sniffer { fd }
            }
        })
    }

    /// The frames that arrived (not those sent) so far, after a pause
    /// for stragglers.
    #[allow(unsafe_code)]
    pub fn arrived(&self) -> Vec<Vec<u8>> {
        use std::os::fd::AsRawFd;
        std::thread::sleep(Duration::from_millis(300));
        let mut frames = Vec::new();
        let mut buf = [0u8; 9000];
        loop {
            // SAFETY: recvfrom writes at most the lengths given into
            // `buf` and `addr`, both alive for the call.
            let (n, addr) = unsafe {
                let mut addr: libc::sockaddr_ll = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                let n = libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut addr).cast(),
                    &mut len,
                );
                (n, addr)
            };
            if n < 0 {
                return frames;
            }
            if addr.sll_pkttype != libc::PACKET_OUTGOING {
                frames.push(buf[..n as usize].to_vec());
            }
        }
    }

    /// Whether `frame` arrived: the same bytes after the MACs (a routed
    /// frame changes only those, its hop limit and checksum: use
    /// [`Sniffer::arrived`] for those).
    pub fn saw(&self, frame: &[u8]) -> bool {
        self.arrived()
            .iter()
            .any(|f| f.get(12..) == frame.get(12..))
    }
}

/// Sends `frame` as is out of `ifname` in the netns at `netns`.
#[allow(unsafe_code)]
pub fn send(netns: &str, ifname: &str, frame: &[u8]) {
    use std::os::fd::AsRawFd;
    let (index, fd) = crate::in_netns(netns, || {
        let mut nl = podnet_linux::netlink::Netlink::open().unwrap();
        let index = nl.link(ifname).unwrap().unwrap().index;
        let fd = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Packet,
            nix::sys::socket::SockType::Raw,
            nix::sys::socket::SockFlag::empty(),
            None,
        )
        .unwrap();
        (index, fd)
    });
    // SAFETY: sockaddr_ll is plain data; sendto reads `frame` and `addr`
    // for the lengths given, both alive for the call.
    let sent = unsafe {
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = index as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(
        sent,
        frame.len() as isize,
        "{}",
        std::io::Error::last_os_error()
    );
}

/// The MAC of `ifname` in the netns at `netns`.
pub fn mac(netns: &str, ifname: &str) -> [u8; 6] {
    crate::in_netns(netns, || {
        let link = podnet_linux::netlink::Netlink::open()
            .unwrap()
            .link(ifname)
            .unwrap()
            .unwrap_or_else(|| panic!("no {ifname} in {netns}"));
        link.mac.try_into().unwrap()
    })
}

/// A UDP socket in a netns, both families, that reports what arrived.
pub struct Listener {
    socket: UdpSocket,
    pub port: u16,
}

impl Listener {
    pub fn new(netns: &str) -> Listener {
        let socket = crate::in_netns(netns, || UdpSocket::bind("[::]:0").unwrap());
        let port = socket.local_addr().unwrap().port();
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        Listener { socket, port }
    }

    /// Every datagram that arrives until none has for 300 ms: (source,
    /// payload).
    pub fn drain(&self) -> Vec<(IpAddr, String)> {
        let mut buf = [0u8; 2048];
        let mut got = Vec::new();
        while let Ok((n, from)) = self.socket.recv_from(&mut buf) {
            let payload = String::from_utf8_lossy(&buf[..n]).into_owned();
            got.push((from.ip().to_canonical(), payload));
        }
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify_to_zero() {
        let f = udp(
            [2; 6],
            [4; 6],
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            9,
            b"hi",
        );
        assert_eq!(checksum(&[&f[14..34]]), 0);
        let na = neighbour_advert(
            [2; 6],
            "fe80::1".parse().unwrap(),
            "fd00::2".parse().unwrap(),
        );
        let (s, d) = (&na[22..38], &na[38..54]);
        let body = &na[54..];
        let pseudo = [
            s,
            d,
            &(body.len() as u32).to_be_bytes()[..],
            &[0, 0, 0, ICMP6],
        ]
        .concat();
        assert_eq!(checksum(&[&pseudo, body]), 0);
    }
}
