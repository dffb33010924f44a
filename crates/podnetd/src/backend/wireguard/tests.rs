use super::*;
use podnet_core::cluster::backend::wireguard::Peers;
use podnet_core::cluster::backend::wireguard::parse_key;
use std::collections::BTreeSet;

fn key(n: u8) -> Key {
    [n; 32]
}

fn want(entries: &[(u8, &str, &[&str])]) -> BTreeMap<Key, Peer> {
    entries
        .iter()
        .map(|(k, endpoint, nets)| {
            (
                key(*k),
                Peer {
                    endpoint: endpoint.parse().unwrap(),
                    allowed_ips: nets
                        .iter()
                        .map(|n| n.parse().unwrap())
                        .collect::<BTreeSet<_>>(),
                },
            )
        })
        .collect()
}

fn state(k: u8, endpoint: &str, nets: &[&str], keepalive: u16) -> PeerState {
    PeerState {
        key: key(k),
        endpoint: Some(endpoint.parse().unwrap()),
        allowed_ips: nets.iter().map(|n| n.parse().unwrap()).collect(),
        keepalive,
        psk: None,
    }
}

#[test]
fn peers_are_set_changed_and_removed_and_the_rest_left_alone() {
    let settings = Wireguard::default();
    let want = want(&[
        (1, "192.168.1.3:51820", &["10.244.2.0/24"]),
        (2, "192.168.1.4:51820", &["10.244.3.0/24"]),
        (3, "192.168.1.5:51820", &["10.244.4.0/24"]),
    ]);
    let have = [
        // As wanted: untouched.
        state(1, "192.168.1.3:51820", &["10.244.2.0/24"], 0),
        // Moved to another address: set again.
        state(2, "192.168.1.9:51820", &["10.244.3.0/24"], 0),
        // Departed: removed.
        state(9, "192.168.1.9:51820", &["10.244.9.0/24"], 0),
    ];
    let ops = plan(&want, &settings, &have);
    assert_eq!(
        ops,
        [
            PeerOp::Set(state(2, "192.168.1.4:51820", &["10.244.3.0/24"], 0)),
            PeerOp::Set(state(3, "192.168.1.5:51820", &["10.244.4.0/24"], 0)),
            PeerOp::Remove(key(9)),
        ]
    );
    // A keepalive or pre-shared key the device lacks is set again.
    let keepalive = Wireguard {
        persistent_keepalive_interval: 25,
        ..Wireguard::default()
    };
    assert_eq!(plan(&want, &keepalive, &have[..1]).len(), 3);
}

#[test]
fn the_device_comes_from_the_kernel_else_wireguard_go_else_a_clear_error() {
    let go = PathBuf::from("/usr/bin/wireguard-go");
    assert_eq!(
        source(true, Some(go.clone()), "podnet-wg").unwrap(),
        Source::Kernel
    );
    assert_eq!(
        source(false, Some(go.clone()), "podnet-wg").unwrap(),
        Source::Userspace(go)
    );
    let e = source(false, None, "podnet-wg").unwrap_err().to_string();
    for part in [
        "CONFIG_WIREGUARD",
        USERSPACE_ENV,
        "/var/run/wireguard/podnet-wg.sock",
    ] {
        assert!(e.contains(part), "{e}");
    }
}

#[test]
fn the_key_is_made_once_kept_private_and_a_bad_one_named() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let first = load_or_make_key(&state).unwrap();
    assert_eq!(load_or_make_key(&state).unwrap(), first);
    let path = state.join(KEY_FILE);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The public key is what `wg pubkey` derives (a known pair).
    let private = parse_key("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=").unwrap();
    assert_eq!(
        format_key(&public_of(&private)),
        "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
    );
    std::fs::write(&path, "c2hvcnQ=\n").unwrap();
    let e = load_or_make_key(&state).unwrap_err().to_string();
    assert!(
        e.contains(&path.display().to_string()) && e.contains("32 bytes"),
        "{e}"
    );
}

#[test]
fn peers_reach_the_devices_through_the_agents_objects() {
    // The core decides; this half reads the same objects back.
    let mut d = Datapath::default();
    d.edit_objects(|p: &mut Peers| {
        p.devices[0] = want(&[(1, "192.168.1.3:51820", &["10.244.2.0/24"])]);
    });
    assert_eq!(d.objects::<Peers>().unwrap().devices[0].len(), 1);
    assert_eq!(d.backend_objects(), 1);
}
