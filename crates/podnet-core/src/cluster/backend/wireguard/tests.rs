use super::*;
use crate::cluster::desired::desired;
use crate::cluster::lease::Lease;
use crate::cluster::netconf::ClusterConf;

const KEY_B: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
const KEY_C: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

fn conf(backend: &str, v6: bool) -> ClusterConf {
    let v6 = if v6 {
        r#","EnableIPv6":true,"IPv6Network":"fd00:10::/56""#
    } else {
        ""
    };
    ClusterConf::parse(&format!(
        r#"{{"Network":"10.244.0.0/16"{v6},"Backend":{backend}}}"#
    ))
    .unwrap()
}

fn wg(c: &ClusterConf) -> &Wireguard {
    c.backend.settings::<Wireguard>().unwrap()
}

/// A lease as flannel's wireguard backend writes it.
fn lease(node: &str, v4: &str, v6: Option<&str>, key: &str, subnets: &[&str]) -> Lease {
    let data = serde_json::json!({ "PublicKey": key });
    let attrs: LeaseAttrs = serde_json::from_value(serde_json::json!({
        "PublicIP": v4,
        "PublicIPv6": v6,
        "BackendType": "wireguard",
        "BackendData": data,
        "BackendV6Data": if v6.is_some() { data.clone() } else { Value::Null },
    }))
    .unwrap();
    Lease {
        node: node.into(),
        subnets: subnets.iter().map(|s| s.parse().unwrap()).collect(),
        expires: 100,
        attrs,
    }
}

const ME: Me<'static> = Me {
    name: "a",
    segments: &[],
};

#[test]
fn flannels_net_conf_is_read_as_it_is_with_flannels_defaults() {
    let c = conf(r#"{"Type":"wireguard"}"#, false);
    assert_eq!(wg(&c), &Wireguard::default());
    assert_eq!((wg(&c).listen_port, wg(&c).listen_port_v6), (51820, 51821));
    let (c, unknown) = ClusterConf::parse_lenient(&format!(
        r#"{{"Network":"10.244.0.0/16","Backend":{{"Type":"wireguard","ListenPort":7000,
            "ListenPortV6":7001,"PSK":"{KEY_C}","PersistentKeepaliveInterval":25,"Mode":"auto"}}}}"#
    ))
    .unwrap();
    assert!(unknown.is_empty(), "{unknown:?}");
    let w = wg(&c);
    assert_eq!(
        (w.listen_port, w.listen_port_v6, w.keepalive()),
        (7000, 7001, 25)
    );
    assert_eq!((w.mode, w.psk()), (Mode::Auto, parse_key(KEY_C)));
}

#[test]
fn bad_settings_name_their_field() {
    for (backend, field) in [
        (r#"{"Type":"wireguard","PSK":"c2hvcnQ="}"#, "Backend.PSK"),
        (r#"{"Type":"wireguard","PSK":"not base64!"}"#, "Backend.PSK"),
        (
            r#"{"Type":"wireguard","ListenPort":0}"#,
            "Backend.ListenPort",
        ),
        (
            r#"{"Type":"wireguard","ListenPortV6":70000}"#,
            "ListenPortV6",
        ),
        (r#"{"Type":"wireguard","Mode":"both"}"#, "Mode"),
        (
            r#"{"Type":"wireguard","PersistentKeepaliveInterval":70000}"#,
            "Backend.PersistentKeepaliveInterval",
        ),
    ] {
        let e = ClusterConf::parse(&format!(
            r#"{{"Network":"10.244.0.0/16","Backend":{backend}}}"#
        ))
        .unwrap_err();
        assert!(e.to_string().contains(field), "{backend}: {e}");
    }
}

#[test]
fn keys_are_32_bytes_of_base64() {
    let key = parse_key(KEY_B).unwrap();
    assert_eq!(format_key(&key), KEY_B);
    assert_eq!(parse_key("c2hvcnQ="), None);
    assert_eq!(parse_key(""), None);
}

#[test]
fn lease_data_is_flannels_and_a_flannel_lease_is_read_as_it_is() {
    let c = conf(r#"{"Type":"wireguard"}"#, true);
    let d = c.backend.decide();
    let local: IpAddr = "192.168.1.2".parse().unwrap();
    assert_eq!(
        d.lease_data(true, local, Some(KEY_B)),
        serde_json::json!({ "PublicKey": KEY_B })
    );
    let flannel = lease("b", "192.168.1.3", None, KEY_B, &["10.244.2.0/24"]);
    assert_eq!(public_key(&flannel.attrs, true), parse_key(KEY_B));
    // The IPv6 side finds the key in the IPv4 data when only that is set.
    assert_eq!(public_key(&flannel.attrs, false), parse_key(KEY_B));
    assert_eq!(
        d.unknown_data_fields(&serde_json::json!({"PublicKey": KEY_B, "Later": 1})),
        ["Later"]
    );
}

#[test]
fn separate_mode_has_a_device_per_family_with_its_port() {
    let c = conf(r#"{"Type":"wireguard"}"#, true);
    let b = lease(
        "b",
        "192.168.1.3",
        Some("fd00::3"),
        KEY_B,
        &["10.244.2.0/24", "fd00:10:0:2::/64"],
    );
    let d = desired(&ME, &c, [&b], 10);
    let peers = d.objects::<Peers>().unwrap();
    let key = parse_key(KEY_B).unwrap();
    let v4 = &peers.devices[0][&key];
    assert_eq!(v4.endpoint.to_string(), "192.168.1.3:51820");
    assert_eq!(
        v4.allowed_ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["10.244.2.0/24", "192.168.1.3/32"]
    );
    let v6 = &peers.devices[1][&key];
    assert_eq!(v6.endpoint.to_string(), "[fd00::3]:51821");
    assert_eq!(
        v6.allowed_ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["fd00::3/128", "fd00:10:0:2::/64"]
    );
    assert!(d.routes.iter().all(|r| r.overlay));
    assert_eq!(d.routes.len(), 2);
    assert_eq!(c.backend.decide().overlay_ports(), [51820, 51821]);
    assert_eq!(
        (
            c.backend.decide().overhead(true),
            c.backend.decide().overhead(false)
        ),
        (60, 80)
    );
}

#[test]
fn single_device_modes_carry_both_families_on_one_peer() {
    let b = lease(
        "b",
        "192.168.1.3",
        Some("2001:db8::3"),
        KEY_B,
        &["10.244.2.0/24", "fd00:10:0:2::/64"],
    );
    for (mode, endpoint) in [
        ("ipv4", "192.168.1.3:51820"),
        ("ipv6", "[2001:db8::3]:51820"),
        // A private IPv4 address and a global IPv6 one: flannel's auto
        // picks IPv6.
        ("auto", "[2001:db8::3]:51820"),
    ] {
        let c = conf(&format!(r#"{{"Type":"wireguard","Mode":"{mode}"}}"#), true);
        let d = desired(&ME, &c, [&b], 10);
        let peers = d.objects::<Peers>().unwrap();
        assert!(peers.devices[1].is_empty(), "{mode}");
        let peer = &peers.devices[0][&parse_key(KEY_B).unwrap()];
        assert_eq!(peer.endpoint.to_string(), endpoint, "{mode}");
        // Both pod subnets, and both of the node's addresses.
        assert_eq!(peer.allowed_ips.len(), 4, "{mode}");
        assert_eq!(c.backend.decide().overlay_ports(), [51820], "{mode}");
    }
}

#[test]
fn the_overhead_follows_the_underlay_not_the_pods() {
    // IPv4-only pods tunnelled over IPv6 need IPv6's overhead.
    let over_v6 = conf(r#"{"Type":"wireguard","Mode":"ipv6"}"#, false);
    assert_eq!(crate::cluster::desired::pod_mtu(&over_v6, 1500), 1420);
    let over_v4 = conf(r#"{"Type":"wireguard","Mode":"ipv4"}"#, true);
    assert_eq!(crate::cluster::desired::pod_mtu(&over_v4, 1500), 1440);
    let separate = conf(r#"{"Type":"wireguard"}"#, false);
    assert_eq!(crate::cluster::desired::pod_mtu(&separate, 1500), 1440);
    let dual = conf(r#"{"Type":"wireguard"}"#, true);
    assert_eq!(crate::cluster::desired::pod_mtu(&dual, 1500), 1420);
}

#[test]
fn a_corrupt_key_costs_only_its_node() {
    let c = conf(r#"{"Type":"wireguard"}"#, false);
    let b = lease("b", "192.168.1.3", None, KEY_B, &["10.244.2.0/24"]);
    let bad = lease("c", "192.168.1.4", None, "c2hvcnQ=", &["10.244.3.0/24"]);
    let good_c = lease("c", "192.168.1.4", None, KEY_C, &["10.244.3.0/24"]);
    let d = desired(&ME, &c, [&b, &bad], 10);
    assert_eq!(d.routes.len(), 1);
    assert_eq!(d.backend_objects(), 1);
    let d = desired(&ME, &c, [&b, &good_c], 10);
    assert_eq!(d.backend_objects(), 2);
}
