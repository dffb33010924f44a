//! Code run inside a namespace, on a thread of its own, so the caller's
//! thread never switches: plain, or an async client on a runtime of its
//! own (the lab's services are reachable only on its underlay).

use std::future::Future;

use anyhow::Result;
use podnet_linux::netns::Netns;

/// Runs `f` on a short-lived thread inside the namespace at `path`, so the
/// caller's thread never switches namespace.
pub fn in_ns<T: Send>(path: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    Ok(Netns::open(path)?.run_on_thread(f)?)
}

/// Runs the future `op` makes on a runtime of its own, on a thread
/// inside the namespace at `path`: how the lab's clients reach services
/// on its underlay, never from the machine's own namespace.
pub fn block_on_in<T, F>(path: &str, op: impl FnOnce() -> F + Send) -> Result<T>
where
    T: Send,
    F: Future<Output = Result<T>>,
{
    in_ns(path, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(op())
    })?
}
