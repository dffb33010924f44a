//! Running another CNI plugin (an IPAM plugin) from `CNI_PATH`, as the
//! reference plugins do: same environment, same stdin, its answer parsed.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use podnet_core::cni::{CniError, Code, Env};
use serde_json::Value;

fn find(plugin: &str, env: &Env) -> Result<PathBuf, CniError> {
    if plugin.contains('/') {
        return Err(CniError::config(format!(
            "ipam.type \"{plugin}\" must be a plugin name, not a path"
        )));
    }
    env.path
        .iter()
        .map(|dir| PathBuf::from(dir).join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::config(format!(
                "ipam.type \"{plugin}\": no such plugin in CNI_PATH ({})",
                env.path.join(":")
            ))
        })
}

/// Runs `plugin` with `command`; returns its stdout JSON (if any), or its
/// error with the code it chose.
pub fn exec(
    plugin: &str,
    command: &str,
    env: &Env,
    stdin: &[u8],
) -> Result<Option<Value>, CniError> {
    let path = find(plugin, env)?;
    let mut child = Command::new(&path)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| CniError::new(Code::Io, format!("exec {}: {e}", path.display())))?;
    if let Some(mut input) = child.stdin.take() {
        // A plugin that fails early may not read its stdin; its answer
        // below is what matters.
        let _ = input.write_all(stdin);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::new(Code::Io, format!("wait for {}: {e}", path.display())))?;
    let parsed: Option<Value> = if out.stdout.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(serde_json::from_slice(&out.stdout).map_err(|e| {
            CniError::new(
                Code::Decode,
                format!("{plugin} {command} printed invalid JSON: {e}"),
            )
        })?)
    };
    if out.status.success() {
        return Ok(parsed);
    }
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("code")?.as_u64())
        .map_or(Code::Other(999), |c| Code::from_u32(c as u32));
    Err(
        CniError::new(code, format!("{plugin} {command}: {}", field("msg")))
            .with_details(field("details")),
    )
}
