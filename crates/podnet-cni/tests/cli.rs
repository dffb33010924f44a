//! The plugin binary's contract that needs no root: VERSION, and errors
//! that must be answered before anything on the host is touched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

const PLUGIN: &str = env!("CARGO_BIN_EXE_podnet");

fn plugin(vars: &[(&str, &str)], stdin: &[u8]) -> (bool, Value) {
    let mut child = Command::new(PLUGIN)
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {:?}", out.stdout));
    (out.status.success(), json)
}

fn add_env(netns: &str) -> Vec<(&str, &str)> {
    vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ]
}

const CONF: &str = r#"{"cniVersion":"0.4.0","name":"n","type":"podnet","ipam":{"subnet":"10.9.0.0/24","dataDir":"/nonexistent/podnet-never-created"}}"#;

#[test]
fn version_lists_all_five_in_the_asked_version() {
    let (ok, v) = plugin(&[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"0.3.1"}"#);
    assert!(ok);
    assert_eq!(v["cniVersion"], "0.3.1");
    let versions: Vec<&str> = v["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(versions, ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
    let (ok, v) = plugin(&[("CNI_COMMAND", "VERSION")], b"");
    assert!(ok);
    assert_eq!(v["cniVersion"], "1.1.0");
}

/// Environment, stdin, expected code, and a word the message must contain.
type Case<'a> = (Vec<(&'a str, &'a str)>, &'a [u8], u64, &'a str);

#[test]
fn errors_are_spec_json_in_the_configs_version() {
    let cases: Vec<Case> = vec![
        (vec![], CONF.as_bytes(), 4, "CNI_COMMAND"),
        (vec![("CNI_COMMAND", "ADD")], CONF.as_bytes(), 4, "CNI_CONTAINERID"),
        (add_env("/x"), b"{not json", 6, "JSON"),
        (add_env("/x"), br#"{"cniVersion":"9.9.9","name":"n"}"#, 1, "9.9.9"),
        (
            add_env("/x"),
            br#"{"cniVersion":"0.4.0","name":"n","ipam":{"subnet":"10.9.0.0/24","gateway":"10.8.0.1"}}"#,
            7,
            "ipam.gateway",
        ),
        (add_env("/var/run/netns/podnet-no-such-ns"), CONF.as_bytes(), 4, "CNI_NETNS"),
    ];
    for (vars, stdin, code, needle) in cases {
        let (ok, v) = plugin(&vars, stdin);
        assert!(!ok);
        assert_eq!(v["code"], code, "{v}");
        assert!(
            v["msg"].as_str().unwrap().contains(needle),
            "{v} lacks {needle}"
        );
    }
    let (_, v) = plugin(&add_env("/x"), b"{");
    assert_eq!(
        v["cniVersion"], "1.1.0",
        "unparseable config: answer in the newest"
    );
    let (_, v) = plugin(&add_env("/nope"), CONF.as_bytes());
    assert_eq!(v["cniVersion"], "0.4.0");
    assert!(!std::path::Path::new("/nonexistent/podnet-never-created").exists());
}

#[test]
fn unknown_cni_args_need_ignore_unknown() {
    let mut vars = add_env("/x");
    vars.push(("CNI_ARGS", "FOO=bar"));
    let (_, v) = plugin(&vars, CONF.as_bytes());
    assert_eq!(v["code"], 4);
    assert!(v["msg"].as_str().unwrap().contains("FOO"));
}

#[test]
fn oversized_and_deep_input_is_refused_quickly() {
    let big = vec![b' '; (8 << 20) + 10];
    let (_, v) = plugin(&add_env("/x"), &big);
    assert_eq!(v["code"], 6);
    let deep = format!("{}{}", "[".repeat(1 << 20), "]".repeat(1 << 20));
    let started = std::time::Instant::now();
    let (_, v) = plugin(&add_env("/x"), deep.as_bytes());
    assert_eq!(v["code"], 6);
    eprintln!("deep input refused in {:?}", started.elapsed());
}
