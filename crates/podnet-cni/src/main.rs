//! `podnet`: the CNI plugin. It reads the environment and stdin, does one
//! command, and prints the result or the spec's error JSON on stdout.

mod bridge;
mod cmd;
mod delegate;
mod install;
mod ipam;
mod logging;
mod masq;
mod policy;
mod pool_source;

use std::io::{Read, Write};
use std::process::ExitCode;

use podnet_core::cni::config::{MAX_CONFIG_BYTES, error_version};
use podnet_core::cni::{CniError, Code, Env};

fn main() -> ExitCode {
    // A runtime runs the plugin without arguments; an operator (or the
    // DaemonSet) runs these.
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(command @ ("install-cni" | "uninstall-cni")) = args.first().map(String::as_str) {
        return install::main(command, &args[1..]);
    }
    let stdin = match read_stdin() {
        Ok(bytes) => bytes,
        Err(e) => return fail(&e, &[]),
    };
    let env = Env::from_lookup(|k| std::env::var(k).ok());
    match env.and_then(|env| cmd::run(&env, &stdin)) {
        Ok(out) => {
            if !out.is_empty() {
                let _ = writeln!(std::io::stdout().lock(), "{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e, &stdin),
    }
}

/// Prints the spec's error JSON, in the config's version when it has one.
fn fail(e: &CniError, stdin: &[u8]) -> ExitCode {
    let version = error_version(stdin);
    let _ = writeln!(std::io::stdout().lock(), "{}", e.to_json(version.as_str()));
    ExitCode::FAILURE
}

/// Reads at most one byte more than the limit, so an oversized config is
/// refused at once instead of being read to the end.
fn read_stdin() -> Result<Vec<u8>, CniError> {
    let mut buf = Vec::new();
    let limit = MAX_CONFIG_BYTES as u64 + 1;
    std::io::stdin()
        .lock()
        .take(limit)
        .read_to_end(&mut buf)
        .map_err(|e| CniError::new(Code::Io, format!("reading stdin: {e}")))?;
    Ok(buf)
}
