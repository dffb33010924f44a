//! `podnet-kube-emu`: the emulated API server as a process, for the lab.
//! It writes `admin.kubeconfig`, `podnet.kubeconfig` and `ca.pem` into
//! `--dir`, then `ready`, and serves until killed.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "podnet-kube-emu",
    about = "An emulated Kubernetes API server (Nodes only), for tests"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Where the CA, the certificate and the kubeconfigs go.
    #[arg(long)]
    dir: PathBuf,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let emu = podnet_kube_emu::Emulator::start(args.listen, &args.dir).await?;
    std::fs::write(args.dir.join("ready"), emu.url())?;
    eprintln!("podnet-kube-emu: serving on {}", emu.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
