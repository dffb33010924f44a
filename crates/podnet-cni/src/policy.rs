//! NetworkPolicy at ADD and DEL, where the conflist turns it on: the pod
//! is handed to podnetd on the local socket, and ADD returns only once
//! podnetd has placed it in the policy sets, so its first packet is
//! already judged. No answer within [`WAIT`] fails ADD as retryable: a pod
//! is never attached unpoliced.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use podnet_core::cni::{CniError, CniResult, Code, Env, NetConf};
use podnet_core::policy::node::{PodAddrs, Reply, Request};

/// How long ADD waits for podnetd (which waits up to 4 s for the pod's
/// object to reach it).
pub const WAIT: Duration = Duration::from_secs(10);
/// DEL's is short: forgetting is best effort, and the addresses' next
/// ADD takes them over anyway.
const DEL_WAIT: Duration = Duration::from_secs(2);

/// The pod, by the names the runtime passes in `CNI_ARGS`.
fn pod(env: &Env, ips: Vec<std::net::IpAddr>) -> Result<PodAddrs, CniError> {
    match (&env.args.pod_namespace, &env.args.pod_name) {
        (Some(namespace), Some(name)) => Ok(PodAddrs {
            namespace: namespace.clone(),
            name: name.clone(),
            ips,
        }),
        _ => Err(CniError::config(
            "policy is on, and CNI_ARGS lacks K8S_POD_NAMESPACE or K8S_POD_NAME: a pod \
             without both cannot be policed, so it is not attached (turn policy off for \
             runtimes that do not name pods)",
        )),
    }
}

/// ADD's handoff; `Ok` once the pod is in place.
pub fn place(conf: &NetConf, env: &Env, result: &CniResult) -> Result<(), CniError> {
    let Some(socket) = &conf.policy else {
        return Ok(());
    };
    let ips = result.ips.iter().map(|c| c.address.addr()).collect();
    let retry = |why: String| {
        CniError::new(
            Code::TryAgainLater,
            format!("podnetd did not place the pod in the policy sets: {why}"),
        )
    };
    match ask(socket, &Request::Add(pod(env, ips)?), WAIT).map_err(&retry)? {
        Reply::Placed { .. } => Ok(()),
        Reply::Refused { why } => Err(retry(why)),
    }
}

/// DEL's: podnetd forgets the pod's addresses. A failure is logged, not
/// returned: DEL must succeed when podnetd is gone.
pub fn forget(conf: &NetConf, env: &Env) {
    let (Some(socket), Ok(pod)) = (&conf.policy, pod(env, Vec::new())) else {
        return;
    };
    if let Err(e) = ask(socket, &Request::Del(pod), DEL_WAIT) {
        tracing::warn!("policy: podnetd did not take the DEL: {e}");
    }
}

fn ask(socket: &Path, request: &Request, wait: Duration) -> Result<Reply, String> {
    let fail = |e: std::io::Error| format!("{}: {e}", socket.display());
    let mut stream = UnixStream::connect(socket).map_err(fail)?;
    stream.set_read_timeout(Some(wait)).map_err(fail)?;
    stream.set_write_timeout(Some(wait)).map_err(fail)?;
    let mut line = serde_json::to_string(request).map_err(|e| e.to_string())?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(fail)?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                format!("no answer within {wait:?}")
            }
            _ => fail(e),
        })?;
    serde_json::from_str(&answer).map_err(|e| format!("bad answer \"{}\": {e}", answer.trim()))
}
