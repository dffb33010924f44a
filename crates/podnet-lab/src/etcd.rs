//! The lab's etcd store: three members, each in a namespace of its own on
//! the flat underlay (192.168.1.241-243), which agents reach as they would
//! on a real network. Each member has a data dir under the lab's, and is
//! stopped by PID with the lab.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use podnet_linux::netns::NamedNetns;
use serde::Serialize;

use crate::plumbing::{plug, step};
use crate::record::{EtcdMember, Lab};
use crate::topology::Attachment;

pub const MEMBERS: usize = 3;
const HEALTHY_CAP: Duration = Duration::from_secs(30);

fn addr(k: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 168, 1, 240 + k as u8))
}

/// Creates and starts every member, then waits until the cluster answers.
pub fn start(lab: &mut Lab) -> Result<()> {
    let peers: Vec<String> = (1..=MEMBERS)
        .map(|k| format!("e{k}=http://{}:2380", addr(k)))
        .collect();
    let data_root = lab.dir.join("etcd");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&data_root)?;
    for k in 1..=MEMBERS {
        let name = format!("e{k}");
        step(&format!("etcd member {name} {}", addr(k)));
        let ns = NamedNetns::create(&format!("{}-{name}", lab.id))?.keep();
        lab.etcd.push(EtcdMember {
            name: name.clone(),
            ns: ns.clone(),
            addr: addr(k),
            pid: 0,
        });
        lab.save()?;
        let attach = Attachment {
            addr: addr(k),
            prefix: 24,
            gateway: None,
            router: None,
        };
        plug(lab, &ns, &name, &[attach])?;
        let log = std::fs::File::create(data_root.join(format!("{name}.log")))?;
        let child = spawn(
            &ns,
            &name,
            addr(k),
            &peers.join(","),
            &data_root,
            &lab.id,
            log,
        )?;
        if let Some(m) = lab.etcd.iter_mut().find(|m| m.name == name) {
            m.pid = child.id() as i32;
        }
        lab.save()?;
        println!("ok (pid {})", child.id());
    }
    step("etcd cluster healthy");
    let first = lab.etcd[0].ns.clone();
    let took = wait_healthy(&first, &endpoints(lab))
        .with_context(|| format!("see {}", data_root.display()))?;
    println!("ok ({took:?})");
    Ok(())
}

/// One etcd member's arguments: its name and data dir, where it serves
/// clients and peers, and the cluster it starts in (`n1=URL,...`). The
/// lab's members and the tests' use these.
pub fn member_args(
    name: &str,
    data: &Path,
    client_url: &str,
    peer_url: &str,
    cluster: &str,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["--name".into(), name.into(), "--data-dir".into()];
    args.push(data.into());
    for (flag, value) in [
        ("--listen-client-urls", client_url),
        ("--advertise-client-urls", client_url),
        ("--listen-peer-urls", peer_url),
        ("--initial-advertise-peer-urls", peer_url),
        ("--initial-cluster", cluster),
    ] {
        args.extend([flag.into(), value.into()]);
    }
    args
}

/// Starts member `name` of the cluster `peers` (`n1=http://a:2380,...`)
/// in namespace `ns`, serving on `addr`, with its data dir under `data`.
pub fn spawn(
    ns: &str,
    name: &str,
    addr: IpAddr,
    peers: &str,
    data: &Path,
    token: &str,
    log: std::fs::File,
) -> Result<Child> {
    let url = |port: u16| format!("http://{addr}:{port}");
    Command::new("ip")
        .args(["netns", "exec", ns, "etcd"])
        .args(member_args(
            name,
            &data.join(name),
            &url(2379),
            &url(2380),
            peers,
        ))
        .args(["--initial-cluster-token", token])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("start etcd (Debian's etcd-server; scripts/install-deps.sh installs it)")
}

/// Waits until every endpoint answers, asking from inside `ns`.
pub fn wait_healthy(ns: &str, endpoints: &str) -> Result<Duration> {
    let started = Instant::now();
    while !etcdctl(ns, endpoints, &["endpoint", "health"]).is_ok_and(|o| o.status.success()) {
        if started.elapsed() > HEALTHY_CAP {
            bail!("etcd at {endpoints} did not become healthy in {HEALTHY_CAP:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(started.elapsed())
}

fn endpoints(lab: &Lab) -> String {
    let urls: Vec<String> = lab.etcd.iter().map(EtcdMember::client_url).collect();
    urls.join(",")
}

/// `etcdctl` against `endpoints`, from inside `ns`.
fn etcdctl(ns: &str, endpoints: &str, args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new("ip")
        .args(["netns", "exec", ns, "etcdctl", "--endpoints", endpoints])
        .args(args)
        .env("ETCDCTL_API", "3")
        .output()?)
}

#[derive(Debug, Serialize)]
pub struct MemberStatus {
    pub name: String,
    pub addr: IpAddr,
    pub pid: i32,
    /// "leader", "follower", or "down".
    pub role: String,
}

/// Each member, and which one leads.
pub fn status(lab: &Lab) -> Vec<MemberStatus> {
    let Some(first) = lab.etcd.first() else {
        return Vec::new();
    };
    let status = ["endpoint", "status", "-w", "json"];
    let answers: Vec<serde_json::Value> = etcdctl(&first.ns, &endpoints(lab), &status)
        .ok()
        .and_then(|o| serde_json::from_slice(&o.stdout).ok())
        .unwrap_or_default();
    lab.etcd
        .iter()
        .map(|m| {
            let answer = answers
                .iter()
                .find(|a| a["Endpoint"].as_str() == Some(&m.client_url()));
            let role = match answer {
                None => "down",
                Some(a) if a["Status"]["header"]["member_id"] == a["Status"]["leader"] => "leader",
                Some(_) => "follower",
            };
            MemberStatus {
                name: m.name.clone(),
                addr: m.addr,
                pid: m.pid,
                role: role.to_owned(),
            }
        })
        .collect()
}
