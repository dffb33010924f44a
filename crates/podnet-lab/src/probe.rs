//! TCP probes between namespaces. A receiver answers each connection with
//! the source address it saw, so the sender can tell whether the packet
//! arrived untouched or was NATed on the way.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::inside::in_ns;
use anyhow::{Context, Result};

pub const PORT: u16 = 7777;
const TIMEOUT: Duration = Duration::from_secs(2);

/// Starts a peer-address server in `ns`; it serves until the process exits.
pub fn serve(ns: &str) -> Result<()> {
    // One dual-stack socket: IPv4 peers appear as ::ffff:a.b.c.d and are
    // reported in their canonical form.
    let listener = in_ns(&format!("/var/run/netns/{ns}"), || {
        TcpListener::bind((std::net::Ipv6Addr::UNSPECIFIED, PORT))
    })?
    .with_context(|| format!("listen in {ns}"))?;
    // Each connection is answered on its own thread, so one slow peer
    // never holds up the probes behind it.
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let peer = conn
                    .peer_addr()
                    .map(|p| p.ip().to_canonical().to_string())
                    .unwrap_or_default();
                let _ = conn.write_all(peer.as_bytes());
            });
        }
    });
    Ok(())
}

/// Connects from `ns` to `to`; returns the source address the receiver saw.
pub fn seen_by(ns: &str, to: IpAddr) -> Result<IpAddr> {
    let target = SocketAddr::new(to, PORT);
    let seen = in_ns(
        &format!("/var/run/netns/{ns}"),
        || -> std::io::Result<String> {
            let mut conn = TcpStream::connect_timeout(&target, TIMEOUT)?;
            conn.set_read_timeout(Some(TIMEOUT))?;
            let mut seen = String::new();
            conn.read_to_string(&mut seen)?;
            Ok(seen)
        },
    )??;
    seen.parse().with_context(|| format!("bad answer {seen:?}"))
}

/// `GET path` from inside node namespace `ns` to `addr` (podnetd's health
/// and metrics listen on the node's own addresses): status and body.
pub fn http_get(ns: &str, addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    in_ns(
        &format!("/var/run/netns/{ns}"),
        || -> Result<(u16, String)> {
            let mut conn = TcpStream::connect_timeout(&addr, TIMEOUT)?;
            conn.set_read_timeout(Some(TIMEOUT))?;
            write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
            let mut raw = String::new();
            conn.read_to_string(&mut raw)?;
            let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
            let code = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .with_context(|| format!("not HTTP: {head:?}"))?;
            Ok((code, body.to_owned()))
        },
    )?
}
