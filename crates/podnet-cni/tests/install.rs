//! `podnet install-cni` and `uninstall-cni`, as an operator or the
//! DaemonSet runs them, into temp dirs; uninstall in a namespace of the
//! test's own, as it looks at the node's links and nftables tables.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use podnet_core::cni::conflist::CONFLIST_NAME;
use podnet_testkit::TestNetns;

const PLUGIN: &str = env!("CARGO_BIN_EXE_podnet");
const SUBNET_FILE: &str = r#"{"version":1,"nodeSubnets":[{"subnet":"10.244.1.0/24"}]}"#;
const CONFLIST: &str = r#"{"cniVersion":"1.0.0","name":"podnet","plugins":[{"type":"podnet","bridge":"pn9"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;

struct Dirs {
    _tmp: tempfile::TempDir,
    bin: std::path::PathBuf,
    conf: std::path::PathBuf,
    subnet: std::path::PathBuf,
    conflist: std::path::PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let conflist = tmp.path().join("src.conflist");
    std::fs::write(&conflist, CONFLIST).unwrap();
    Dirs {
        bin: tmp.path().join("bin"),
        conf: tmp.path().join("net.d"),
        subnet: tmp.path().join("run/subnet.json"),
        conflist,
        _tmp: tmp,
    }
}

impl Dirs {
    fn command(&self, sub: &str) -> Command {
        self.command_in(Command::new(PLUGIN), sub)
    }

    /// `uninstall-cni` looks at the node's links and nftables tables: run
    /// it in a namespace of the test's own, never the machine's.
    fn uninstall_in(&self, ns: &TestNetns) -> std::process::Output {
        self.command_in(ns.command(PLUGIN), "uninstall-cni")
            .output()
            .unwrap()
    }

    fn command_in(&self, mut c: Command, sub: &str) -> Command {
        c.arg(sub)
            .arg("--bin-dir")
            .arg(&self.bin)
            .arg("--conf-dir")
            .arg(&self.conf)
            .arg("--subnet-file")
            .arg(&self.subnet)
            .stdin(Stdio::null());
        c
    }

    fn install(&self) -> std::process::Output {
        self.command("install-cni")
            .arg("--conflist")
            .arg(&self.conflist)
            .output()
            .unwrap()
    }

    fn write_subnet_file(&self) {
        std::fs::create_dir_all(self.subnet.parent().unwrap()).unwrap();
        std::fs::write(&self.subnet, SUBNET_FILE).unwrap();
    }

    fn installed_conflist(&self) -> std::path::PathBuf {
        self.conf.join(CONFLIST_NAME)
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The installed plugin answers VERSION.
fn version_of(plugin: &Path) -> Result<String, String> {
    let out = Command::new(plugin)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("exec: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || !text.contains("supportedVersions") {
        return Err(format!("{:?}: {text}", out.status));
    }
    Ok(text)
}

#[test]
fn install_puts_the_plugin_and_the_conflist_in_place() {
    let d = dirs();
    d.write_subnet_file();
    // An earlier release's conflist, and another network's that a runtime
    // would load first.
    std::fs::create_dir_all(&d.conf).unwrap();
    std::fs::write(d.conf.join("10-podnet.conflist"), CONFLIST).unwrap();
    std::fs::write(d.conf.join("01-other.conflist"), "{}").unwrap();
    let out = d.install();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("01-other.conflist come before 05-podnet.conflist"),
        "{stderr}"
    );
    std::fs::remove_file(d.conf.join("01-other.conflist")).unwrap();
    let plugin = d.bin.join("podnet");
    assert_eq!(mode(&plugin), 0o755);
    version_of(&plugin).unwrap();
    assert_eq!(
        std::fs::read(&plugin).unwrap(),
        std::fs::read(PLUGIN).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(d.installed_conflist()).unwrap(),
        CONFLIST
    );
    assert_eq!(mode(&d.installed_conflist()), 0o644);
    // No temp file stays behind in either directory.
    assert_eq!(podnet_testkit::file_names(&d.bin), ["podnet"]);
    assert_eq!(podnet_testkit::file_names(&d.conf), [CONFLIST_NAME]);
}

#[test]
fn the_conflist_waits_for_the_subnet_file() {
    let d = dirs();
    let mut child = d
        .command("install-cni")
        .arg("--conflist")
        .arg(&d.conflist)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let plugin = d.bin.join("podnet");
    let started = Instant::now();
    while !plugin.exists() {
        assert!(started.elapsed() < Duration::from_secs(30), "no plugin");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !d.installed_conflist().exists(),
        "the conflist went in before podnetd's subnet file"
    );
    assert!(child.try_wait().unwrap().is_none(), "install-cni gave up");
    d.write_subnet_file();
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(d.installed_conflist().exists());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(err.matches("waiting").count(), 1, "said once: {err}");
}

#[test]
fn a_bad_conflist_installs_nothing() {
    let d = dirs();
    d.write_subnet_file();
    std::fs::write(&d.conflist, r#"{"name":"podnet","plugins":[]}"#).unwrap();
    let out = d.install();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the conflist: cniVersion"), "{err}");
    assert!(!d.bin.exists() && !d.conf.exists());
}

#[test]
fn privileged_uninstall_strands_no_pod_and_removes_only_what_install_put() {
    let ns = TestNetns::new("pntest-uninstall");
    let d = dirs();
    d.write_subnet_file();
    assert!(d.install().status.success());
    std::fs::write(d.bin.join("loopback"), "x").unwrap();
    std::fs::write(d.conf.join("99-other.conflist"), "{}").unwrap();
    // An earlier release's conflist goes too.
    std::fs::write(d.conf.join("10-podnet.conflist"), CONFLIST).unwrap();
    ns.exec_ok(&["nft", "add", "table", "bridge", "podnet-guard"]);
    ns.exec_ok(&["nft", "add", "table", "inet", "podnet"]);
    let tables = || {
        let listed = ns.exec_ok(&["nft", "list", "tables"]);
        let mut lines: Vec<String> = listed.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    // A podnet pod remains: the conflist now refuses new pods, and the
    // plugin, the conflist and the pods' tables stay for its DEL.
    ns.exec_ok(&["ip", "link", "add", "pn0123456789ab", "type", "veth"]);
    let out = d.uninstall_in(&ns);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("podnet pods remain"));
    let swapped: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.installed_conflist()).unwrap()).unwrap();
    assert_eq!(swapped["plugins"][0]["uninstalling"], true);
    assert!(d.bin.join("podnet").exists());
    assert_eq!(tables(), ["table bridge podnet-guard", "table inet podnet"]);
    // With --wait it goes on once the last pod is deleted.
    let mut waiting = d
        .command_in(ns.command(PLUGIN), "uninstall-cni")
        .arg("--wait")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(waiting.try_wait().unwrap().is_none(), "waits for the pod");
    ns.exec_ok(&["ip", "link", "del", "pn0123456789ab"]);
    assert!(waiting.wait().unwrap().success());
    assert_eq!(podnet_testkit::file_names(&d.bin), ["loopback"]);
    assert_eq!(podnet_testkit::file_names(&d.conf), ["99-other.conflist"]);
    // The guard goes, the agent's table stays (its clean-up is
    // podnetd's). Twice is fine.
    for _ in 0..2 {
        let out = d.uninstall_in(&ns);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(tables(), ["table inet podnet"]);
    }
}

/// A runtime execs the plugin in a loop while the plugin is reinstalled
/// over and over: every exec runs a whole binary, none fails ("text file
/// busy", or a half-written file).
#[test]
fn execs_never_fail_while_the_plugin_is_replaced() {
    let d = dirs();
    d.write_subnet_file();
    assert!(d.install().status.success());
    let plugin = d.bin.join("podnet");
    let done = AtomicBool::new(false);
    let (execs, failures) = std::thread::scope(|s| {
        let runners: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let (mut n, mut failed) = (0, Vec::new());
                    while !done.load(Ordering::Relaxed) {
                        if let Err(e) = version_of(&plugin) {
                            failed.push(e);
                        }
                        n += 1;
                    }
                    (n, failed)
                })
            })
            .collect();
        for _ in 0..30 {
            let out = d.install();
            assert!(out.status.success(), "{out:?}");
        }
        done.store(true, Ordering::Relaxed);
        runners.into_iter().map(|r| r.join().unwrap()).fold(
            (0, Vec::new()),
            |(n, mut f), (m, g)| {
                f.extend(g);
                (n + m, f)
            },
        )
    });
    eprintln!(
        "{execs} execs during 30 installs, {} failed",
        failures.len()
    );
    assert!(execs > 30, "the runners hardly ran: {execs}");
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(podnet_testkit::file_names(&d.bin), ["podnet"]);
}

/// The DaemonSet's init container: the plugin only, at once; podnetd puts
/// the conflist in once the node's network is up.
#[test]
fn plugin_only_installs_the_plugin_without_waiting() {
    let d = dirs();
    let out = d
        .command("install-cni")
        .arg("--plugin-only")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(podnet_testkit::file_names(&d.bin), ["podnet"]);
    assert!(!d.conf.exists(), "no conflist before podnetd is up");
}
