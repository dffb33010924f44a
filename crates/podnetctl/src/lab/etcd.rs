//! The lab's etcd store: three members, each in a namespace of its own on
//! the flat underlay (192.168.1.241-243), which agents reach as they would
//! on a real network. Each member has a data dir under the lab's, and is
//! stopped by PID with the lab.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use podnet_linux::netns::NamedNetns;
use serde::Serialize;

use super::state::{EtcdMember, Lab};
use super::topology::Attachment;
use super::up::{plug, step};

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
        let url = |port: u16| format!("http://{}:{port}", addr(k));
        let log = std::fs::File::create(data_root.join(format!("{name}.log")))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, "etcd", "--name", &name])
            .arg("--data-dir")
            .arg(data_root.join(&name))
            .args(["--listen-client-urls", &url(2379)])
            .args(["--advertise-client-urls", &url(2379)])
            .args(["--listen-peer-urls", &url(2380)])
            .args(["--initial-advertise-peer-urls", &url(2380)])
            .args(["--initial-cluster", &peers.join(",")])
            .args(["--initial-cluster-token", &lab.id])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("start etcd (Debian's etcd-server; scripts/install-deps.sh installs it)")?;
        if let Some(m) = lab.etcd.iter_mut().find(|m| m.name == name) {
            m.pid = child.id() as i32;
        }
        lab.save()?;
        println!("ok (pid {})", child.id());
    }
    step("etcd cluster healthy");
    let started = Instant::now();
    while !healthy(lab) {
        if started.elapsed() > HEALTHY_CAP {
            bail!(
                "etcd did not become healthy in {HEALTHY_CAP:?}; see {}",
                data_root.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("ok ({:?})", started.elapsed());
    Ok(())
}

fn endpoints(lab: &Lab) -> String {
    let urls: Vec<String> = lab.etcd.iter().map(EtcdMember::client_url).collect();
    urls.join(",")
}

/// `etcdctl` against every member, from inside the first member's namespace.
fn etcdctl(lab: &Lab, args: &[&str]) -> Result<std::process::Output> {
    let Some(first) = lab.etcd.first() else {
        bail!("this lab runs no etcd");
    };
    Ok(Command::new("ip")
        .args([
            "netns",
            "exec",
            &first.ns,
            "etcdctl",
            "--endpoints",
            &endpoints(lab),
        ])
        .args(args)
        .env("ETCDCTL_API", "3")
        .output()?)
}

fn healthy(lab: &Lab) -> bool {
    etcdctl(lab, &["endpoint", "health"]).is_ok_and(|o| o.status.success())
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
    let answers: Vec<serde_json::Value> = etcdctl(lab, &["endpoint", "status", "-w", "json"])
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
