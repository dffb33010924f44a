//! Sysctls under /proc/sys. Network sysctls apply to the namespace of the
//! thread that opens the file, so callers enter the namespace first.

use std::io;

/// Writes `value` to `/proc/sys/<key>`, with `key` in slash form
/// (`net/ipv4/conf/eth0/arp_notify`).
pub fn write(key: &str, value: &str) -> io::Result<()> {
    std::fs::write(format!("/proc/sys/{key}"), value)
        .map_err(|e| io::Error::new(e.kind(), format!("sysctl {key}={value}: {e}")))
}

pub fn read(key: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(format!("/proc/sys/{key}"))?
        .trim()
        .to_owned())
}
