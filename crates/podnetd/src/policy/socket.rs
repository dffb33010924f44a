//! The local socket the plugin's ADD and DEL talk to: one JSON request
//! line, one reply line. Each request goes to the policy loop, which
//! answers once the pod is in place (or refuses).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use podnet_core::policy::node::{Reply, Request};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// A request and where its answer goes.
pub type Ask = (Request, oneshot::Sender<Reply>);

/// Listens on `path` (a stale socket from a previous run is replaced;
/// only root may connect), passing each request to `asks`.
pub fn serve(path: &Path, asks: mpsc::Sender<Ask>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).with_context(|| format!("policy socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream, asks.clone()));
                }
                Err(e) => {
                    tracing::warn!("policy socket: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

async fn answer(stream: UnixStream, asks: mpsc::Sender<Ask>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(read).read_line(&mut line).await.is_err() {
        return;
    }
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(request) => {
            let (tx, rx) = oneshot::channel();
            if asks.send((request, tx)).await.is_err() {
                return;
            }
            match rx.await {
                Ok(reply) => reply,
                Err(_) => return,
            }
        }
        Err(e) => Reply::Refused {
            why: format!("bad request: {e}"),
        },
    };
    if let Ok(mut text) = serde_json::to_string(&reply) {
        text.push('\n');
        let _ = write.write_all(text.as_bytes()).await;
    }
}
