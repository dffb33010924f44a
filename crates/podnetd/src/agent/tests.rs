//! The agent's loop against an in-memory store and kernel: no root.

use super::*;
use crate::kernel::Guard;
use crate::kernel::fake::{FIRST_DEVICE, FakeKernel, MAIN_TABLE, entry_set};
use podnet_core::cluster::backend::vxlan::VxlanData;
use podnet_core::cluster::desired::ROUTE_PROTOCOL;
use podnet_linux::netlink::Nexthop;
use podnet_store::conformance::attrs;
use podnet_store::memory::MemStore;
use serde_json::Value;
use tokio::sync::mpsc;

const UPLINK: u32 = 2;
/// The first device the fake kernel makes: the vxlan device.
const VXLAN: u32 = FIRST_DEVICE;
const LONG: u64 = 3600;

fn mac(i: usize) -> String {
    format!("02:00:00:00:00:{i:02x}")
}

/// A WireGuard key pair (the private half in node0's state directory).
const NODE0_PRIVATE: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
const NODE0_PUBLIC: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";

fn wg_key(i: usize) -> String {
    match i {
        0 => NODE0_PUBLIC.into(),
        _ => podnet_core::cluster::backend::wireguard::format_key(&[i as u8; 32]),
    }
}

/// Node `i`'s lease attributes for `backend`.
fn node_attrs(i: usize, backend: &str) -> LeaseAttrs {
    let mut a = attrs(i);
    a.backend_type = backend.into();
    if backend == "wireguard" {
        a.backend_data = serde_json::json!({ "PublicKey": wg_key(i) });
    }
    if backend == "vxlan" {
        a.backend_data = VxlanData {
            vni: 1,
            vtep_mac: mac(i),
        }
        .to_value();
    }
    a
}

/// A peer's lease, written by "its agent".
fn peer(i: usize, backend: &str, ttl: u64) -> Lease {
    Lease {
        node: format!("node{i}"),
        subnets: vec![format!("10.244.{}.0/24", 100 + i).parse().unwrap()],
        expires: now() + ttl,
        attrs: node_attrs(i, backend),
    }
}

/// Node0's setup; its state directory holds its WireGuard key.
fn setup(backend: &str, state: &tempfile::TempDir) -> Setup {
    let state_dir = state.path().to_owned();
    std::fs::write(state_dir.join("wireguard.key"), NODE0_PRIVATE).unwrap();
    Setup {
        name: "node0".into(),
        attrs: node_attrs(0, backend),
        conf: ClusterConf::parse(&format!(
            r#"{{"Network":"10.244.0.0/16","Backend":{{"Type":"{backend}"}},"LeaseTTL":60}}"#
        ))
        .unwrap(),
        segments: vec!["192.168.0.0/24".parse().unwrap()],
        node: Node {
            links: [Some(UPLINK), None],
            mtu: 1500,
            state_dir,
        },
        subnet_file: None,
        ipam_dir: None,
        masquerade: false,
    }
}

struct Rig {
    store: MemStore,
    agent: Agent<MemStore, FakeKernel>,
    _state: tempfile::TempDir,
}

async fn rig(backend: &str, store: MemStore, kernel: FakeKernel) -> Rig {
    let state = tempfile::tempdir().unwrap();
    let setup = setup(backend, &state);
    let lease = store
        .acquire(
            &setup.name,
            &setup.attrs,
            &setup.conf,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let agent = Agent::new(Arc::new(store.clone()), kernel, setup, lease);
    Rig {
        store,
        agent,
        _state: state,
    }
}

impl Rig {
    /// What the store watcher would send next.
    async fn sync(&mut self) {
        let snap = self.store.list().await.unwrap();
        self.agent.handle(Event::Leases(snap, now()));
    }

    fn routes(&self) -> BTreeMap<String, String> {
        self.agent.kernel.our_routes()
    }
}

use std::collections::BTreeMap;

fn routes(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(d, v)| (d.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn a_bad_peer_record_is_skipped_and_the_others_converge() {
    let store = MemStore::default();
    for i in 1..=3 {
        store.put(peer(i, "vxlan", LONG));
    }
    // node4 was never read good; node3's VTEP MAC is garbage.
    store.put(peer(4, "vxlan", LONG));
    store.corrupt("node4");
    let mut bad = peer(3, "vxlan", LONG);
    bad.attrs.backend_data["VtepMAC"] = Value::from("zz:zz");
    store.put(bad);
    let mut r = rig("vxlan", store, FakeKernel::default()).await;
    r.sync().await;
    assert_eq!(
        r.routes(),
        routes(&[
            ("10.244.101.0/24", "10.244.101.0"),
            ("10.244.102.0/24", "10.244.102.0")
        ])
    );
    let fdb = entry_set(&r.agent.kernel, VXLAN, true);
    assert_eq!(fdb.len(), 2, "{fdb:?}");
}

#[tokio::test]
async fn a_record_that_turns_unreadable_keeps_its_routes() {
    let store = MemStore::default();
    store.put(peer(1, "host-gw", LONG));
    store.put(peer(2, "host-gw", LONG));
    let mut r = rig("host-gw", store, FakeKernel::default()).await;
    r.sync().await;
    let before = r.routes();
    assert_eq!(before.len(), 2);
    r.store.corrupt("node2");
    r.store.put(peer(3, "host-gw", LONG));
    r.sync().await;
    let mut want = before.clone();
    want.insert("10.244.103.0/24".into(), "192.168.0.5".into());
    assert_eq!(r.routes(), want, "node2 keeps its route, node3 joins");
}

#[tokio::test]
async fn wireguard_peers_follow_the_leases_and_are_repaired_at_each_resync() {
    let store = MemStore::default();
    store.put(peer(1, "wireguard", LONG));
    store.put(peer(2, "wireguard", LONG));
    // A node of another backend (a flannel vxlan node, say) is not routed.
    store.put(peer(3, "vxlan", LONG));
    let mut r = rig("wireguard", store, FakeKernel::default()).await;
    r.sync().await;
    let peers = |r: &Rig| -> Vec<String> {
        let device = r.agent.kernel.tunnel_peers.get("podnet-wg");
        device
            .into_iter()
            .flatten()
            .map(|p| podnet_core::cluster::backend::wireguard::format_key(&p.key))
            .collect()
    };
    assert_eq!(peers(&r), [wg_key(1), wg_key(2)]);
    assert_eq!(
        r.routes(),
        routes(&[
            ("10.244.101.0/24", "10.244.101.0"),
            ("10.244.102.0/24", "10.244.102.0")
        ])
    );
    // A peer removed behind the agent's back, which no monitor sees: back
    // at the next resync, without a full reconcile.
    r.agent
        .kernel
        .tunnel_peers
        .get_mut("podnet-wg")
        .unwrap()
        .remove(0);
    r.agent.resync();
    assert_eq!(peers(&r), [wg_key(2), wg_key(1)]);
    // A departed node's peer goes with its route.
    r.store.release("node2").await.unwrap();
    r.sync().await;
    assert_eq!(peers(&r), [wg_key(1)]);
    assert_eq!(r.routes().len(), 1);
}

#[tokio::test]
async fn a_departed_peers_state_is_removed() {
    let store = MemStore::default();
    store.put(peer(1, "vxlan", LONG));
    store.put(peer(2, "vxlan", LONG));
    let mut r = rig("vxlan", store, FakeKernel::default()).await;
    r.sync().await;
    assert_eq!(r.routes().len(), 2);
    r.store.release("node2").await.unwrap();
    r.sync().await;
    assert_eq!(r.routes(), routes(&[("10.244.101.0/24", "10.244.101.0")]));
    assert_eq!(r.agent.kernel.nexthops.len(), 1, "node2's nexthop went too");
    for fdb in [false, true] {
        let left = entry_set(&r.agent.kernel, VXLAN, fdb);
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left.iter().all(|e| e.mac == [2, 0, 0, 0, 0, 1]));
    }
}

#[tokio::test]
async fn a_restart_adopts_the_kernels_state_without_churn() {
    let store = MemStore::default();
    for i in 1..=5 {
        store.put(peer(i, "vxlan", LONG));
    }
    let mut first = rig("vxlan", store.clone(), FakeKernel::default()).await;
    first.sync().await;
    let converged = first.agent.kernel.clone();
    assert_eq!(converged.our_routes().len(), 5);

    let mut restarted = rig("vxlan", store, converged.clone()).await;
    restarted.sync().await;
    restarted.agent.resync();
    assert_eq!(
        restarted.agent.kernel.ops, converged.ops,
        "no op was needed"
    );
    assert_eq!(restarted.agent.kernel, converged);
}

#[tokio::test]
async fn nothing_is_deleted_before_the_first_lease_set_arrives() {
    let store = MemStore::default();
    store.put(peer(1, "host-gw", LONG));
    let mut first = rig("host-gw", store.clone(), FakeKernel::default()).await;
    first.sync().await;
    let converged = first.agent.kernel.clone();
    let mut restarted = rig("host-gw", store, converged.clone()).await;
    restarted.agent.resync();
    assert_eq!(restarted.agent.kernel, converged);
}

#[tokio::test]
async fn an_unavailable_store_keeps_the_datapath_and_the_lease() {
    let store = MemStore::default();
    store.put(peer(1, "host-gw", 1));
    store.put(peer(2, "host-gw", LONG));
    let mut r = rig("host-gw", store, FakeKernel::default()).await;
    r.sync().await;
    let before = r.routes();
    assert_eq!(before.len(), 2);
    let lease = r.agent.lease.clone();

    r.store.set_down(Some("connection refused"));
    // node1's lease runs out while the store is away: nobody can say it
    // was not renewed, so its route stays.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for _ in 0..3 {
        r.agent
            .handle(Event::StoreDown(StoreError::Unavailable("refused".into())));
        r.agent.resync();
        r.agent.renew().await.unwrap();
    }
    assert_eq!(r.routes(), before);
    assert_eq!(r.agent.lease, lease, "the subnet is kept");
    assert!(r.agent.next_renew > Instant::now(), "renewal backs off");

    // Back: node1 gets time to renew before it counts as expired.
    r.store.set_down(None);
    r.sync().await;
    assert_eq!(r.routes(), before, "expiry waits for the peers to renew");
    r.store.put(peer(1, "host-gw", LONG));
    r.sync().await;
    assert_eq!(r.routes(), before);
}

#[tokio::test]
async fn only_not_found_makes_the_node_acquire_again() {
    let store = MemStore::default();
    let mut r = rig("host-gw", store, FakeKernel::default()).await;
    let mine = r.agent.lease.subnets.clone();
    r.store.release("node0").await.unwrap();
    r.agent.renew().await.unwrap();
    assert_eq!(
        r.agent.lease.subnets, mine,
        "acquired again, same subnet free"
    );
    let snap = r.store.list().await.unwrap();
    assert!(snap.leases.contains_key("node0"));

    // Unavailable: the lease is kept, nothing is acquired.
    r.store.set_down(Some("partitioned"));
    r.agent.renew().await.unwrap();
    assert_eq!(r.agent.lease.subnets, mine);
    r.store.set_down(None);

    // Another node holds our subnet: stop, with a clear error.
    let mut thief = peer(7, "host-gw", LONG);
    thief.subnets = mine.clone();
    r.store.put(thief);
    let err = r.agent.renew().await.unwrap_err().to_string();
    assert!(err.contains("held by node node7"), "{err}");
}

#[tokio::test]
async fn a_node_whose_subnet_was_given_away_stops_instead_of_moving() {
    let store = MemStore::default();
    let mut r = rig("host-gw", store, FakeKernel::default()).await;
    let mine = r.agent.lease.subnets.clone();
    // Our lease ran out and a new node took the subnet, as a takeover does.
    r.store.release("node0").await.unwrap();
    let newcomer = r
        .store
        .acquire(
            "node9",
            &node_attrs(9, "host-gw"),
            &r.agent.setup.conf,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(newcomer.subnets, mine);
    let err = r.agent.renew().await.unwrap_err().to_string();
    assert!(err.contains("given to another node"), "{err}");
    let snap = r.store.list().await.unwrap();
    assert!(
        !snap.leases.contains_key("node0"),
        "the new lease was given back"
    );
}

#[tokio::test]
async fn the_loop_runs_its_sources_until_stopped() {
    let store = MemStore::default();
    store.put(peer(1, "host-gw", LONG));
    let mut r = rig("host-gw", store, FakeKernel::default()).await;
    let (events, inbox) = mpsc::channel(4);
    let watcher = tokio::spawn(watch_store(
        Arc::new(r.store.clone()),
        events.clone(),
        Duration::from_millis(50),
    ));
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        events.send(Event::Stop("test".into())).await.unwrap();
    });
    r.agent.run(inbox, Duration::from_millis(50)).await.unwrap();
    stopper.await.unwrap();
    assert_eq!(r.routes().len(), 1, "the watcher's lease set was applied");
    watcher.abort();
}

#[tokio::test]
async fn foreign_routes_and_nexthops_are_never_touched() {
    let store = MemStore::default();
    store.put(peer(1, "host-gw", LONG));
    store.put(peer(2, "host-gw", LONG));
    let mut kernel = FakeKernel::default();
    // Someone routes node2's subnet by hand, and another network too.
    kernel.foreign_route("10.244.102.0/24", 4);
    kernel.foreign_route("172.16.0.0/16", 3);
    // Objects with our protocol number but outside our ID range, and one
    // in our range made by someone else's protocol.
    let foreign_hops = [
        (5, ROUTE_PROTOCOL),
        ((u32::from(ROUTE_PROTOCOL) + 1) << 24, ROUTE_PROTOCOL),
        (u32::from(ROUTE_PROTOCOL) << 24, 4),
    ];
    for (id, protocol) in foreign_hops {
        kernel.nexthops.insert(
            id,
            Nexthop {
                id,
                gw: "192.168.0.99".parse().unwrap(),
                oif: UPLINK,
                onlink: false,
                protocol,
            },
        );
    }
    let before = kernel.clone();
    let mut r = rig("host-gw", store, kernel).await;
    r.sync().await;
    r.store.release("node1").await.unwrap();
    r.sync().await;
    for (dst, route) in &before.routes {
        assert_eq!(r.agent.kernel.routes.get(dst), Some(route), "{dst} changed");
    }
    for (id, hop) in &before.nexthops {
        assert_eq!(
            r.agent.kernel.nexthops.get(id),
            Some(hop),
            "nexthop {id} changed"
        );
    }
    assert!(
        r.agent
            .kernel
            .routes
            .values()
            .all(|r| r.table == MAIN_TABLE),
        "only the main table is used"
    );
}

#[tokio::test]
async fn the_egress_table_follows_the_nodes() {
    let store = MemStore::default();
    store.put(peer(1, "host-gw", LONG));
    let mut r = rig("host-gw", store, FakeKernel::default()).await;
    r.agent.setup.masquerade = true;
    r.sync().await;
    let nodes = |r: &Rig| {
        let plan = r.agent.kernel.egress.clone().flatten().unwrap();
        plan.node_ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(nodes(&r), ["192.168.0.2", "192.168.0.3"]);
    r.store.put(peer(2, "host-gw", LONG));
    r.sync().await;
    assert_eq!(nodes(&r).len(), 3);
}

#[tokio::test]
async fn a_node_repairs_its_own_unreadable_record() {
    let store = MemStore::default();
    store.put(peer(1, "host-gw", LONG));
    let mut r = rig("host-gw", store, FakeKernel::default()).await;
    r.sync().await;
    r.store.corrupt("node0");
    r.sync().await;
    assert!(
        r.agent.next_renew <= Instant::now(),
        "renewal is due at once"
    );
    r.agent.renew().await.unwrap();
    let snap = r.store.list().await.unwrap();
    assert!(snap.corrupt.is_empty(), "{snap:?}");
    assert_eq!(snap.leases["node0"].subnets, r.agent.lease.subnets);
}

#[tokio::test]
async fn a_deleted_vxlan_device_is_made_again_with_its_entries_and_routes() {
    let store = MemStore::default();
    store.put(peer(1, "vxlan", LONG));
    store.put(peer(2, "vxlan", LONG));
    let mut r = rig("vxlan", store, FakeKernel::default()).await;
    r.sync().await;
    let before = r.routes();
    assert_eq!(before.len(), 2);
    r.agent.kernel.delete_device(podnet_core::names::VXLAN4);
    assert!(r.routes().is_empty(), "the routes went with the device");
    r.agent.reconcile();
    let (index, addr) = r.agent.kernel.devices[podnet_core::names::VXLAN4];
    assert_ne!(index, VXLAN, "a new device");
    assert_eq!(
        addr, r.agent.lease.subnets[0],
        "with the node subnet's address"
    );
    assert_eq!(r.routes(), before);
    assert!(r.agent.kernel.nexthops.values().all(|n| n.oif == index));
    for fdb in [false, true] {
        assert_eq!(entry_set(&r.agent.kernel, index, fdb).len(), 2);
    }
}

#[tokio::test]
async fn a_flushed_egress_table_is_written_again() {
    let store = MemStore::default();
    store.put(peer(1, "host-gw", LONG));
    let state = tempfile::tempdir().unwrap();
    let mut setup = setup("host-gw", &state);
    setup.masquerade = true;
    let lease = store
        .acquire(
            &setup.name,
            &setup.attrs,
            &setup.conf,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let mut agent = Agent::new(Arc::new(store.clone()), FakeKernel::default(), setup, lease);
    agent.handle(Event::Leases(store.list().await.unwrap(), now()));
    let written = agent.kernel.egress.clone();
    assert!(matches!(&written, Some(Some(_))), "{written:?}");
    agent.kernel.egress = None;
    agent.reconcile();
    assert_eq!(agent.kernel.egress, written);
}

/// A guarded port as the plugin leaves it: its elements in the table and
/// its record on the link.
fn guarded_port(k: &mut FakeKernel, ifindex: u32) -> Vec<podnet_core::guard::Element> {
    let port = podnet_core::guard::Port {
        ifindex,
        name: crate::kernel::fake::link_name(ifindex),
        mac: [2, 0, 0, 0, 0, ifindex as u8],
        addrs: vec![format!("10.244.1.{ifindex}").parse().unwrap()],
        guarded: true,
    };
    k.links.insert(ifindex, port.alias());
    podnet_core::guard::elements(&port)
}

#[tokio::test]
async fn a_lost_guard_table_is_made_again_with_every_live_port_and_no_gone_one() {
    let mut k = FakeKernel::default();
    k.write_guard_table().unwrap();
    let a = guarded_port(&mut k, 21);
    let b = guarded_port(&mut k, 22);
    let gone = guarded_port(&mut k, 23);
    k.links.remove(&23);
    k.links.insert(2, None); // the uplink: not a pod
    k.guard = Some((podnet_core::guard::LAYOUT, [a.clone(), gone].concat()));
    let store = MemStore::default();
    store.put(peer(1, "host-gw", LONG));
    let mut r = rig("host-gw", store, k).await;
    r.agent.reconcile();
    let want: BTreeSet<_> = [a.clone(), b.clone()].concat().into_iter().collect();
    assert_eq!(r.agent.telemetry.guard_readmitted.get(), 1);
    let have = |r: &Rig| -> BTreeSet<_> {
        r.agent
            .kernel
            .guard
            .clone()
            .unwrap()
            .1
            .into_iter()
            .collect()
    };
    assert_eq!(have(&r), want, "b re-admitted, the gone port pruned");
    // The table deleted: made again, both ports back in the same write.
    r.agent.kernel.guard = None;
    r.agent.reconcile();
    assert_eq!(have(&r), want);
    assert_eq!(r.agent.telemetry.guard_readmitted.get(), 3);
    // Its elements flushed: the ports drop everything until they are
    // re-admitted.
    r.agent.kernel.guard.as_mut().unwrap().1.clear();
    r.agent.reconcile();
    assert_eq!(have(&r), want);
    // A port from before records (no alias): recorded from its elements,
    // so that it too comes back with a lost table.
    r.agent.kernel.links.insert(22, None);
    r.agent.reconcile();
    assert!(r.agent.kernel.links[&22].is_some(), "recorded");
    r.agent.kernel.guard = None;
    r.agent.reconcile();
    assert_eq!(have(&r), want);
    // An older layout without b's elements: migrated, b's carried. An
    // upgrade, not a loss.
    let readmitted = r.agent.telemetry.guard_readmitted.get();
    r.agent.kernel.guard = Some((0, a.clone()));
    r.agent.reconcile();
    assert_eq!(
        r.agent.kernel.guard.as_ref().unwrap().0,
        podnet_core::guard::LAYOUT
    );
    assert_eq!(have(&r), want);
    assert_eq!(r.agent.telemetry.guard_readmitted.get(), readmitted);
}

#[tokio::test]
async fn a_new_nodes_guard_table_is_made_not_repaired() {
    let store = MemStore::default();
    store.put(peer(1, "host-gw", LONG));
    let mut r = rig("host-gw", store, FakeKernel::default()).await;
    r.agent.reconcile();
    assert!(r.agent.kernel.guard.is_some());
    assert_eq!(r.agent.telemetry.drift_repairs.get(), 0);
    r.agent.kernel.guard = None;
    r.agent.reconcile();
    assert_eq!(r.agent.telemetry.drift_repairs.get(), 1, "then lost");
}

#[tokio::test]
async fn the_guards_drops_are_counted_per_reason() {
    let mut k = FakeKernel::default();
    k.guard_drops = vec![("spoofed-arp".into(), 3)];
    let store = MemStore::default();
    store.put(peer(1, "host-gw", LONG));
    let mut r = rig("host-gw", store, k).await;
    r.agent.reconcile();
    r.agent.kernel.guard_drops = vec![("spoofed-arp".into(), 5)];
    r.agent.reconcile();
    let text = r.agent.telemetry.encode();
    assert!(
        text.contains("podnet_guard_dropped_frames_total{reason=\"spoofed-arp\"} 5"),
        "{text}"
    );
    // The table made again: its counters start from zero.
    r.agent.kernel.guard_drops = vec![("spoofed-arp".into(), 1)];
    r.agent.reconcile();
    let text = r.agent.telemetry.encode();
    assert!(
        text.contains("podnet_guard_dropped_frames_total{reason=\"spoofed-arp\"} 6"),
        "{text}"
    );
}

#[tokio::test]
async fn a_gateway_of_a_subnet_not_held_is_removed_and_the_own_kept() {
    let mut k = FakeKernel::default();
    let net = |s: &str| -> IpNet { s.parse().unwrap() };
    k.bridge_addresses = vec![
        (7, net("10.244.1.1/24")),
        (7, net("10.244.9.1/24")),
        (7, net("192.168.5.1/24")),
    ];
    let store = MemStore::default();
    store.put(peer(1, "host-gw", LONG));
    let mut r = rig("host-gw", store, k).await;
    let own = r.agent.lease.subnets[0];
    r.agent.kernel.bridge_addresses[0] = (7, IpNet::new(own.network(), own.prefix_len()).unwrap());
    let kept = vec![
        r.agent.kernel.bridge_addresses[0],
        (7, net("192.168.5.1/24")),
    ];
    r.agent.reconcile();
    assert_eq!(
        r.agent.kernel.bridge_addresses, kept,
        "only the cluster address outside the node's subnet went"
    );
}

/// Full reconciles so far, by cause, from the metrics page.
fn full_reconciles(r: &Rig, cause: &str) -> u64 {
    let needle = format!("podnet_reconciles_total{{cause=\"{cause}\"}} ");
    r.agent
        .telemetry
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&needle)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_quiet_resync_reads_no_kernel_and_each_change_reconciles_in_full() {
    let store = MemStore::default();
    for i in 1..=3 {
        store.put(peer(i, "host-gw", LONG));
    }
    let mut r = rig("host-gw", store, FakeKernel::default()).await;
    r.sync().await;
    assert_eq!(full_reconciles(&r, "start"), 1);
    let converged = r.routes();
    // Quiet: neither the leases nor the kernel changed. This node's own
    // renewals change its record, not what the leases want.
    let ops = r.agent.kernel.ops;
    for _ in 0..5 {
        r.agent.resync();
        r.agent.renew().await.unwrap();
        r.sync().await;
    }
    assert_eq!(r.agent.kernel.ops, ops);
    for cause in ["leases", "kernel", "periodic", "retry"] {
        assert_eq!(full_reconciles(&r, cause), 0, "{cause}");
    }
    // A route deleted by hand: the monitor's flag brings it back.
    let dst = *r.agent.kernel.routes.keys().next().unwrap();
    r.agent.kernel.routes.remove(&dst);
    r.agent.watch.changed.store(true, Ordering::Relaxed);
    r.agent.resync();
    assert_eq!(r.routes(), converged);
    assert_eq!(full_reconciles(&r, "kernel"), 1);
    // A new peer: the leases want another datapath.
    r.store.put(peer(4, "host-gw", LONG));
    r.sync().await;
    assert_eq!(r.routes().len(), 4);
    assert_eq!(full_reconciles(&r, "leases"), 1);
    // What the monitor cannot see is caught by the periodic one.
    let dst = *r.agent.kernel.routes.keys().next().unwrap();
    r.agent.kernel.routes.remove(&dst);
    r.agent.resync();
    assert_eq!(r.routes().len(), 3, "not seen yet");
    r.agent.full_every = Duration::ZERO;
    r.agent.resync();
    assert_eq!(r.routes().len(), 4);
    assert_eq!(full_reconciles(&r, "periodic"), 1);
}

#[tokio::test]
async fn a_store_that_hangs_never_stops_the_loop() {
    let store = MemStore::default();
    store.put(peer(1, "host-gw", LONG));
    let mut r = rig("host-gw", store, FakeKernel::default()).await;
    r.sync().await;
    // The renewal is due, and the store takes it and never answers.
    r.store.set_hanging(true);
    r.agent.next_renew = Instant::now();
    r.agent.full_every = Duration::ZERO;
    let before = full_reconciles(&r, "periodic");
    let (_events, inbox) = mpsc::channel(1);
    let ran = tokio::time::timeout(
        Duration::from_millis(1500),
        r.agent.run(inbox, Duration::from_millis(100)),
    )
    .await;
    assert!(ran.is_err(), "the loop still runs: {ran:?}");
    let resyncs = full_reconciles(&r, "periodic") - before;
    assert!(resyncs >= 5, "it kept resyncing: {resyncs}");
}
