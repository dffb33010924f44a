//! One module per CNI command. Each returns the JSON to print on success.

mod add;
mod check;
mod del;
mod gc;
mod status;

use podnet_core::cni::{CniError, Code, Command, Env, NetConf};
use podnet_linux::netns::{Netns, NetnsError};

pub fn run(env: &Env, stdin: &[u8]) -> Result<String, CniError> {
    if env.command == Command::Version {
        // VERSION may come with only {"cniVersion": ...}, or nothing at all.
        let version = podnet_core::cni::config::error_version(stdin);
        return Ok(version.version_info());
    }
    let conf = NetConf::parse(stdin)?;
    crate::logging::init(conf.log_file.as_deref());
    tracing::info!(
        command = ?env.command,
        container = %env.container_id,
        ifname = %env.ifname,
        pod = ?env.args.pod_name,
        namespace = ?env.args.pod_namespace,
        "invoked"
    );
    let out = match env.command {
        Command::Add => add::add(&conf, env, stdin).map(|r| r.to_json(conf.version).to_string()),
        Command::Del => del::del(&conf, env, stdin).map(|()| String::new()),
        Command::Check => check::check(&conf, env, stdin).map(|()| String::new()),
        Command::Status => status::status(&conf, env, stdin).map(|()| String::new()),
        Command::Gc => gc::gc(&conf, env, stdin).map(|()| String::new()),
        Command::Version => Ok(conf.version.version_info()),
    };
    if let Err(e) = &out {
        tracing::warn!(code = e.code.as_u32(), "{}", e.msg);
    }
    out
}

/// Opens `CNI_NETNS`; a missing path or a file that is not a network
/// namespace is an invalid environment (code 4).
pub fn open_netns(env: &Env) -> Result<Netns, CniError> {
    Netns::open(&env.netns).map_err(|e| match e {
        NetnsError::NotFound { .. } | NetnsError::NotNetns { .. } => {
            CniError::env(format!("CNI_NETNS: {e}"))
        }
        other => CniError::new(Code::Io, other.to_string()),
    })
}
