use super::*;

fn parse(json: &str) -> Result<NetConf, CniError> {
    NetConf::parse(json.as_bytes())
}

const MINIMAL: &str = r#"{"cniVersion":"1.0.0","name":"podnet","type":"podnet",
    "ipam":{"subnet":"10.244.1.0/24"}}"#;

#[test]
fn defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.version, CniVersion::V1_0_0);
    assert_eq!(c.bridge, "podnet0");
    assert!(c.is_gateway && c.is_default_gateway && c.hairpin_mode && !c.ip_masq);
    assert_eq!(c.mtu, None);
    assert_eq!(c.ipam.kind, IpamKind::Builtin);
    assert_eq!(
        c.ipam.state_dir,
        PathBuf::from("/var/lib/podnet/ipam/podnet")
    );
    assert_eq!(c.subnet_file, PathBuf::from("/run/podnet/subnet.json"));
    assert_eq!(c.ipam.pool.unwrap().sets.len(), 1);
}

#[test]
fn full_config_with_ranges_routes_and_runtime_config() {
    let c = parse(
        r#"{"cniVersion":"0.4.0","name":"n1","type":"podnet","bridge":"br-x","mtu":1400,
        "ipMasq":true,"hairpinMode":false,"logFile":"/tmp/x.log","cniVersions":["1.0.0"],
        "ipam":{"type":"podnet","dataDir":"/tmp/ipam",
          "ranges":[[{"subnet":"10.1.0.0/24","rangeStart":"10.1.0.10","rangeEnd":"10.1.0.20"}],
                    [{"subnet":"fd00:1::/64"}]],
          "routes":[{"dst":"192.168.0.0/16"},{"dst":"10.9.0.0/16","gw":"10.1.0.1"}]},
        "runtimeConfig":{"ips":["10.1.0.15/24"],"mac":"02:11:22:33:44:55"},
        "dns":{"nameservers":["10.96.0.10"]}}"#,
    )
    .unwrap();
    assert_eq!(c.mtu, Some(1400));
    assert!(c.ip_masq && !c.hairpin_mode);
    assert_eq!(c.ipam.pool.as_ref().unwrap().sets.len(), 2);
    assert_eq!(c.ipam.routes.len(), 2);
    assert_eq!(c.ipam.state_dir, PathBuf::from("/tmp/ipam/n1"));
    assert_eq!(c.runtime.ips, vec!["10.1.0.15".parse::<IpAddr>().unwrap()]);
    assert_eq!(c.runtime.mac, Some([2, 0x11, 0x22, 0x33, 0x44, 0x55]));
    assert!(c.dns.is_some());
}

#[test]
fn no_ranges_means_subnet_file() {
    let c = parse(r#"{"cniVersion":"1.1.0","name":"n","type":"podnet"}"#).unwrap();
    assert!(c.ipam.pool.is_none());
}

#[test]
fn other_ipam_types_are_delegated() {
    let c = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"podnet","ipam":{"type":"host-local","subnet":"10.1.0.0/24"}}"#).unwrap();
    assert!(
        matches!(c.ipam.kind, IpamKind::Delegated { ref plugin, .. } if plugin == "host-local")
    );
    assert!(c.ipam.pool.is_none());
}

#[test]
fn decode_errors_are_code_6() {
    for bad in ["{", "[1,2", "not json", ""] {
        assert_eq!(parse(bad).unwrap_err().code, Code::Decode, "{bad:?}");
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(parse(&deep).unwrap_err().code, Code::Decode);
    let big = vec![b' '; MAX_CONFIG_BYTES + 1];
    assert_eq!(NetConf::parse(&big).unwrap_err().code, Code::Decode);
}

#[test]
fn version_errors_are_code_1() {
    let e = parse(r#"{"cniVersion":"0.2.0","name":"n"}"#).unwrap_err();
    assert_eq!(e.code, Code::IncompatibleVersion);
}

#[test]
fn config_errors_are_code_7_and_name_the_field() {
    let cases = [
        (r#"{"cniVersion":"1.0.0","name":"n","mtu":-1}"#, "mtu -1"),
        (
            r#"{"cniVersion":"1.0.0","name":"n","mtu":100000}"#,
            "mtu 100000",
        ),
        (r#"{"cniVersion":"1.0.0","name":"n","mtu":"big"}"#, "mtu"),
        (
            r#"{"cniVersion":"1.0.0","name":"n","isGateway":"yes"}"#,
            "isGateway",
        ),
        (r#"{"cniVersion":"1.0.0","name":"../x"}"#, "name"),
        (r#"{"cniVersion":"1.0.0"}"#, "name"),
        (
            r#"{"cniVersion":"1.0.0","name":"n","bridge":"way-too-long-bridge"}"#,
            "bridge",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"10.0.0.0/40"}}"#,
            "ipam.subnet",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"10.0.0.0/24","gateway":"10.0.1.1"}}"#,
            "ipam.gateway",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","ipam":{"ranges":[[{"subnet":"x"}]]}}"#,
            "ipam.ranges[0][0].subnet",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","ipam":{"ranges":[[{"subnet":"10.0.0.0/24","rangeEnd":"10.0.0.5","rangeStart":"10.0.0.9"}]]}}"#,
            "rangeStart",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","ipam":{"routes":[{"dst":"nope"}]}}"#,
            "ipam.routes[0].dst",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","ipam":{"ranges":"x"}}"#,
            "ipam.ranges",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"mac":"01:00:00:00:00:01"}}"#,
            "runtimeConfig.mac",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"ips":["x"]}}"#,
            "runtimeConfig.ips",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","prevResult":{"ips":[{"address":"bad"}]}}"#,
            "prevResult",
        ),
        (r#"{"cniVersion":1,"name":"n"}"#, "cniVersion"),
    ];
    for (json, needle) in cases {
        let e = parse(json).unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig, "{json}: {}", e.msg);
        assert!(
            e.msg.contains(needle),
            "{json}: {:?} lacks {needle:?}",
            e.msg
        );
    }
}

#[test]
fn error_version_falls_back_to_newest() {
    assert_eq!(
        error_version(br#"{"cniVersion":"0.3.1"}"#),
        CniVersion::V0_3_1
    );
    assert_eq!(error_version(b"{"), CniVersion::V1_1_0);
}

#[test]
fn gc_attachments_under_either_key() {
    for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
        let json = format!(
            r#"{{"cniVersion":"1.1.0","name":"n","{key}":[{{"containerID":"abc","ifname":"eth0"}}]}}"#
        );
        let c = parse(&json).unwrap();
        let list = c.valid_attachments.unwrap();
        assert_eq!(list[0].container_id, "abc");
        assert_eq!(list[0].ifname, "eth0");
    }
    assert!(parse(MINIMAL).unwrap().valid_attachments.is_none());
}
