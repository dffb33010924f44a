//! The one owner of podnet's nftables: every table podnet makes is in
//! [`registry`], with its hooks and who removes it when; each table's
//! rules are written by one module here.
//!
//! How each is written (see docs/ARCHITECTURE.md for why):
//! - tables, chains and rules through the `nft` binary: the agent's egress
//!   table and the plugin's ipMasq rules as JSON (the nftables crate), the
//!   anti-spoofing table as `nft -f` text generated from the core's names;
//!   each write is one transaction;
//! - set elements, rule and element listings, table deletion in-process
//!   over nfnetlink ([`sets`]): the per-pod path, the drift checks and the
//!   clean-ups never need the binary.

pub mod egress;
pub mod guard;
pub mod masq;
pub mod nfnl;
pub mod policy;
pub mod registry;

use std::borrow::Cow;

use ipnet::IpNet;
use nftables::expr::{Expression, NamedExpression, Payload, PayloadField, Prefix};
use nftables::helper::NftablesError;

#[derive(Debug, thiserror::Error)]
#[error("nftables: {0}")]
pub struct NftError(pub String);

/// Runs one `nft -f` transaction from text; nft's complaint if it fails.
fn run_file(transaction: &str) -> Result<(), String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(transaction.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
    }
}

impl From<NftablesError> for NftError {
    fn from(e: NftablesError) -> Self {
        NftError(e.to_string())
    }
}

fn payload(proto: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(proto),
            field: Cow::Borrowed(field),
        },
    )))
}

fn prefix(net: &IpNet) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(Expression::String(net.network().to_string().into())),
        len: u32::from(net.prefix_len()),
    }))
}
