//! A real runtime: podman (CNI backend, runc) runs two busybox containers
//! on a podnet + portmap conflist inside a test-made host namespace. All of
//! podman's configuration and storage live in a temp dir.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{PLUGIN, TestNetns, outside};
use podnet_testkit::podman::Podman;
use serde_json::json;

/// A busybox-static image with a page for httpd to serve.
fn image_tar(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("www")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "wget", "ping", "httpd"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    std::fs::write(rootfs.join("www/index.html"), "podnet-ok\n").unwrap();
    let tar = dir.join("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    tar
}

fn configure(dir: &Path) {
    let cni = dir.join("cni");
    let net = dir.join("net");
    std::fs::create_dir_all(&cni).unwrap();
    std::fs::create_dir_all(&net).unwrap();
    std::os::unix::fs::symlink(PLUGIN, cni.join("podnet")).unwrap();
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "pntest",
        "plugins": [
            {
                "type": "podnet",
                "bridge": "pnpod0",
                "subnetFile": dir.join("no-subnet.json"),
                "ipam": { "subnet": "10.244.110.0/24", "dataDir": dir.join("ipam") },
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    });
    std::fs::write(net.join("pntest.conflist"), conflist.to_string()).unwrap();
}

fn http_get(from: &TestNetns, addr: &str) -> std::io::Result<String> {
    let target = addr.parse().unwrap();
    from.in_ns(|| {
        let mut conn = TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
        conn.set_read_timeout(Some(Duration::from_secs(3)))?;
        conn.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut body = String::new();
        conn.read_to_string(&mut body)?;
        Ok(body)
    })
}

#[test]
fn privileged_podman_runs_containers_on_podnet_with_a_host_port() {
    let host = TestNetns::new("pntest-host");
    let ext = outside(&host);

    let tmp = tempfile::tempdir().unwrap();
    configure(tmp.path());
    let tar = image_tar(tmp.path());
    let (cni, net) = (tmp.path().join("cni"), tmp.path().join("net"));
    let podman = Podman::new(
        tmp.path(),
        &host.path(),
        &format!(
            "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\nnetwork_config_dir = \"{}\"\n",
            cni.display(),
            net.display()
        ),
    );
    podman.ok(&[
        "import",
        "--change",
        "ENV=PATH=/bin",
        tar.to_str().unwrap(),
        "localhost/pnbusybox",
    ]);

    podman.ok(&[
        "run",
        "-d",
        "--name",
        "client",
        "--network",
        "pntest",
        "localhost/pnbusybox",
        "sleep",
        "300",
    ]);
    podman.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "pntest",
        "-p",
        "8080:80",
        "localhost/pnbusybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    let ip_of = |name: &str| {
        podman.ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.pntest.IPAddress}}",
            name,
        ])
    };
    let (client_ip, web_ip) = (ip_of("client"), ip_of("web"));
    assert!(client_ip.starts_with("10.244.110.") && web_ip.starts_with("10.244.110."));
    assert_ne!(client_ip, web_ip);

    // Container to container, through podnet's bridge.
    let page = podman.ok(&[
        "exec",
        "client",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{web_ip}/"),
    ]);
    assert_eq!(page, "podnet-ok");
    podman.ok(&["exec", "web", "ping", "-c", "1", "-W", "2", &client_ip]);
    // The bridge landed in the test's host namespace, not the machine's.
    assert!(host.links().iter().any(|l| l == "pnpod0"));

    // The hostPort, from outside the host.
    let reply = http_get(&ext, "192.0.2.1:8080").expect("hostPort 8080 did not answer");
    assert!(reply.contains("podnet-ok"), "{reply}");

    podman.ok(&["rm", "--force", "--time", "0", "client", "web"]);
    assert!(
        !host
            .links()
            .iter()
            .any(|l| l.starts_with("pn") && l != "pnpod0"),
        "{:?}",
        host.links()
    );
    let state = std::fs::read_to_string(tmp.path().join("ipam/pntest/state.json")).unwrap();
    assert!(
        !state.contains("containerId"),
        "podman's DEL released both: {state}"
    );
}
