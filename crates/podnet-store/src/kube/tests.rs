//! The Kubernetes store against the emulated API server (no real
//! kube-apiserver can be installed here), in a namespace of the test's own
//! on its loopback, over HTTPS, as podnet's service account.

use std::sync::Arc;

use ipnet::IpNet;

use podnet_kube_emu::{Emulator, World};
use podnet_testkit::TestNetns;
use serde_json::json;

use super::*;
use crate::conformance::{self, Backend, Case, Cluster};

/// One emulator per case, with node0..node9 registered and given
/// podCIDRs, as kubelet and the controller manager would.
struct Kube;

struct Api {
    emu: Emulator,
    _dir: tempfile::TempDir,
}

async fn emulator(rbac: Option<&str>) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let emu = match rbac {
        Some(yaml) => Emulator::start_with_role(listen, dir.path(), yaml).await,
        None => Emulator::start(listen, dir.path()).await,
    }
    .unwrap();
    Api { emu, _dir: dir }
}

impl Api {
    fn admin(
        &self,
        f: impl FnOnce(&mut World) -> podnet_kube_emu::world::Answer<podnet_kube_emu::world::Event>,
    ) {
        self.emu.shared.change(f).unwrap();
    }

    fn register(&self, i: usize, cidrs: &[&str]) {
        self.admin(|w| w.create(podnet_kube_emu::node(&conformance::name(i), cidrs)));
    }

    async fn store(&self) -> KubeStore {
        KubeStore::connect(Some(&self.emu.kubeconfig("podnet")))
            .await
            .unwrap()
    }

    fn node(&self, i: usize) -> k8s_openapi::api::core::v1::Node {
        self.emu
            .shared
            .read(|w| w.get(&conformance::name(i)))
            .unwrap()
    }
}

impl Cluster for Api {
    type S = KubeStore;

    async fn client(&self) -> KubeStore {
        self.store().await
    }

    async fn corrupt(&self, node: &str) {
        let patch = json!({"metadata": {"annotations": {slim_node::PUBLIC_IP: "not an address"}}});
        self.admin(|w| w.patch(node, podnet_kube_emu::world::PatchKind::Merge, &patch, true));
    }

    async fn leave(&self, node: &str) {
        self.admin(|w| w.delete(node));
    }
}

impl Backend for Kube {
    type C = Api;

    async fn fresh(&self) -> Api {
        let api = emulator(None).await;
        for i in 0..10 {
            let cidr = format!("10.244.{i}.0/24");
            api.register(i, &[&cidr]);
        }
        api
    }

    fn skips(&self) -> &'static [Case] {
        // podnet allocates nothing, and nothing expires or is released:
        // the controller manager assigns podCIDRs, and a node leaves when
        // its Node object is deleted.
        &[
            Case::RacingAcquirers,
            Case::RenewExpiryRelease,
            Case::PoolExhaustion,
        ]
    }
}

/// Runs `test` on a runtime whose thread lives in a fresh namespace with
/// its loopback up, so the emulator and every connection stay in it.
fn in_ns<F: Future<Output = ()> + Send>(test: F) {
    let ns = TestNetns::new("pnkube");
    ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
    ns.in_ns(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(test)
    })
}

fn ttl() -> Duration {
    Duration::from_secs(60)
}

#[test]
fn privileged_the_kube_store_keeps_the_store_contract() {
    in_ns(conformance::run(&Kube));
}

/// Subnets come from podCIDRs; backend data goes into podnet's
/// annotations through nodes/status; the network is reported up.
#[test]
fn privileged_a_lease_is_the_nodes_pod_cidrs_and_its_annotations() {
    in_ns(async {
        let api = emulator(None).await;
        api.register(0, &["10.244.7.0/24"]);
        let store = api.store().await;
        let lease = store
            .acquire("node0", &conformance::attrs(0), &conformance::conf(), ttl())
            .await
            .unwrap();
        assert_eq!(lease.subnets, ["10.244.7.0/24".parse::<IpNet>().unwrap()]);
        let n = api.node(0);
        let a = n.metadata.annotations.unwrap();
        assert_eq!(a[slim_node::BACKEND_TYPE], "host-gw");
        assert_eq!(a[slim_node::PUBLIC_IP], "192.168.0.2");
        store.network_up("node0").await.unwrap();
        let conditions = api.node(0).status.unwrap().conditions.unwrap();
        let c = conditions
            .iter()
            .find(|c| c.type_ == "NetworkUnavailable")
            .unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("False", Some("PodnetIsUp"))
        );
        let released = store.release("node0").await;
        assert!(
            matches!(&released, Err(StoreError::Invalid(m)) if m.contains("Node object is deleted")),
            "{released:?}"
        );
    });
}

/// Without podCIDRs the node waits (Unavailable, which the agent retries
/// and logs once), and starts once they are set; podCIDRs outside the
/// cluster CIDR are a clear error.
#[test]
fn privileged_pod_cidrs_that_arrive_late_or_outside_the_cluster() {
    in_ns(async {
        let api = emulator(None).await;
        let store = api.store().await;
        let early = store
            .acquire("node0", &conformance::attrs(0), &conformance::conf(), ttl())
            .await;
        assert!(
            matches!(&early, Err(StoreError::Unavailable(m)) if m.contains("not registered")),
            "{early:?}"
        );
        api.register(0, &[]);
        let early = store
            .acquire("node0", &conformance::attrs(0), &conformance::conf(), ttl())
            .await;
        assert!(
            matches!(&early, Err(StoreError::Unavailable(m)) if m.contains("--allocate-node-cidrs")),
            "{early:?}"
        );
        let patch = json!({"spec": {"podCIDR": "10.244.3.0/24", "podCIDRs": ["10.244.3.0/24"]}});
        api.admin(|w| {
            w.patch(
                "node0",
                podnet_kube_emu::world::PatchKind::Merge,
                &patch,
                false,
            )
        });
        let lease = store
            .acquire("node0", &conformance::attrs(0), &conformance::conf(), ttl())
            .await
            .unwrap();
        assert_eq!(lease.subnets, ["10.244.3.0/24".parse::<IpNet>().unwrap()]);

        api.register(1, &["10.99.0.0/24"]);
        let outside = store
            .acquire("node1", &conformance::attrs(1), &conformance::conf(), ttl())
            .await;
        assert!(
            matches!(&outside, Err(StoreError::Invalid(m)) if m.contains("10.99.0.0/24") && m.contains("10.244.0.0/16")),
            "{outside:?}"
        );
    });
}

/// Annotations removed by hand come back at the next renewal; a node
/// without annotations is not a peer until it has them.
#[test]
fn privileged_removed_annotations_are_restored() {
    in_ns(async {
        let api = emulator(None).await;
        api.register(0, &["10.244.0.0/24"]);
        api.register(1, &["10.244.1.0/24"]);
        let store = api.store().await;
        store
            .acquire("node0", &conformance::attrs(0), &conformance::conf(), ttl())
            .await
            .unwrap();
        let snap = store.list().await.unwrap();
        assert_eq!(
            snap.leases.keys().collect::<Vec<_>>(),
            ["node0"],
            "node1 has no annotations yet"
        );
        let wipe = json!({"metadata": {"annotations": {slim_node::BACKEND_DATA: null, slim_node::PUBLIC_IP: null}}});
        api.admin(|w| {
            w.patch(
                "node0",
                podnet_kube_emu::world::PatchKind::Merge,
                &wipe,
                true,
            )
        });
        assert!(store.list().await.unwrap().leases.is_empty());
        store
            .renew("node0", &conformance::attrs(0), ttl())
            .await
            .unwrap();
        assert_eq!(store.list().await.unwrap().leases.len(), 1);
        // A deleted Node's renewal is NotFound.
        api.admin(|w| w.delete("node0"));
        let gone = store.renew("node0", &conformance::attrs(0), ttl()).await;
        assert!(matches!(gone, Err(StoreError::NotFound(_))), "{gone:?}");
    });
}

/// A watch that is cut, and one whose revision was compacted (410 as a
/// watch ERROR event), both end in the current view; a list at a
/// compacted revision is an HTTP 410.
#[test]
fn privileged_cut_watches_and_410_both_ways() {
    in_ns(async {
        let api = emulator(None).await;
        api.register(0, &["10.244.0.0/24"]);
        let store = Arc::new(api.store().await);
        store
            .acquire("node0", &conformance::attrs(0), &conformance::conf(), ttl())
            .await
            .unwrap();
        let first = store.list().await.unwrap();

        let waiting = {
            let (store, since) = (store.clone(), first.revision.clone());
            tokio::spawn(async move { store.watch(&since, Duration::from_secs(30)).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        api.emu.shared.cut_watches();
        let after_cut = waiting.await.unwrap().unwrap();
        assert_eq!(after_cut.leases.len(), 1);

        // Compacted past our revision: the watch's ERROR 410 lists again.
        let before = store.list().await.unwrap();
        api.register(1, &["10.244.1.0/24"]);
        let other = api.store().await;
        other
            .acquire("node1", &conformance::attrs(1), &conformance::conf(), ttl())
            .await
            .unwrap();
        api.emu.shared.compact();
        let seen = store
            .watch(&before.revision, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(seen.leases.len(), 2, "listed again after the 410");

        // A list at that revision: HTTP 410.
        let listed = api.emu.shared.read(|w| {
            let at = before.revision.as_str().parse().unwrap();
            w.list(podnet_kube_emu::world::ListAt::Exact(at), None, 0)
                .map(drop)
        });
        assert!(matches!(listed, Err(s) if s.code == Some(410)));
    });
}

/// What deploy/rbac.yaml does not grant is refused with a message naming
/// the missing permission.
#[test]
fn privileged_a_missing_permission_is_named() {
    in_ns(async {
        let without_status = podnet_kube_emu::RBAC_YAML.replace("nodes/status", "nodes/proxy");
        let api = emulator(Some(&without_status)).await;
        api.register(0, &["10.244.0.0/24"]);
        let store = api.store().await;
        let refused = store
            .acquire("node0", &conformance::attrs(0), &conformance::conf(), ttl())
            .await;
        let Err(StoreError::Invalid(m)) = &refused else {
            panic!("{refused:?}");
        };
        assert!(
            m.contains(
                "nodes \"node0\" is forbidden: User \"system:serviceaccount:podnet-system:podnet\" \
                 cannot patch resource \"nodes/status\" in API group \"\" at the cluster scope"
            ),
            "{m}"
        );
        assert!(m.contains("deploy/rbac.yaml"), "{m}");
    });
}

/// One long watch: a kubelet's status updates of other Nodes neither end
/// it nor cost a request, and a change podnet reads ends it at once.
#[test]
fn privileged_status_only_updates_of_other_nodes_are_not_changes() {
    in_ns(async {
        let api = emulator(None).await;
        for i in 0..3 {
            api.register(i, &[&format!("10.244.{i}.0/24")]);
        }
        let store = Arc::new(api.store().await);
        store
            .acquire("node0", &conformance::attrs(0), &conformance::conf(), ttl())
            .await
            .unwrap();
        let first = store.list().await.unwrap();
        // The watch opens.
        let quiet = store
            .watch(&first.revision, Duration::from_millis(200))
            .await
            .unwrap();
        assert_eq!(quiet.revision, first.revision);
        let requests = api.emu.shared.requests();
        let churn = {
            let shared = api.emu.shared.clone();
            tokio::spawn(async move {
                for beat in 0..40 {
                    let heartbeat = json!({"status": {"conditions": [{
                        "type": "Ready", "status": "True",
                        "lastHeartbeatTime": format!("2026-12-05T00:00:{:02}Z", beat % 60),
                    }], "images": [{"names": [format!("img{beat}")], "sizeBytes": beat}]}});
                    shared
                        .change(|w| {
                            w.patch(
                                "node1",
                                podnet_kube_emu::world::PatchKind::Strategic,
                                &heartbeat,
                                true,
                            )
                        })
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        for _ in 0..4 {
            let seen = store
                .watch(&first.revision, Duration::from_millis(250))
                .await
                .unwrap();
            assert_eq!(seen.revision, first.revision, "no change podnet reads");
        }
        churn.await.unwrap();
        assert_eq!(
            api.emu.shared.requests(),
            requests,
            "the same watch, no request"
        );
        // node2 announces itself: that is a change.
        let other = api.store().await;
        other
            .acquire("node2", &conformance::attrs(2), &conformance::conf(), ttl())
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let seen = store
            .watch(&first.revision, Duration::from_secs(20))
            .await
            .unwrap();
        assert_ne!(seen.revision, first.revision);
        assert!(seen.leases.contains_key("node2"));
        eprintln!("the change seen after {:?}", started.elapsed());
    });
}

/// A server that accepts a request and never answers it: each kind of
/// call fails as an outage within its deadline, rather than hanging.
#[test]
fn privileged_a_server_that_never_answers_is_an_outage_within_a_deadline() {
    in_ns(async {
        let api = emulator(None).await;
        api.register(0, &["10.244.0.0/24"]);
        let store = api.store().await;
        store
            .acquire("node0", &conformance::attrs(0), &conformance::conf(), ttl())
            .await
            .unwrap();
        let (lister, watcher, attrs) =
            (api.store().await, api.store().await, conformance::attrs(0));
        // The watcher has its list: what hangs is the watch it opens.
        let since = watcher.list().await.unwrap().revision;
        api.emu.shared.hang(&["get", "list", "watch"]);
        let started = std::time::Instant::now();
        let (renewed, listed, watched) = tokio::join!(
            store.renew("node0", &attrs, ttl()),
            lister.list(),
            watcher.watch(&since, Duration::from_secs(1)),
        );
        let took = started.elapsed();
        eprintln!("three hung calls failed within {took:?}");
        for (what, result) in [
            ("a Node read", renewed.map(drop)),
            ("a list", listed.map(drop)),
            ("a watch", watched.map(drop)),
        ] {
            assert!(
                matches!(&result, Err(StoreError::Unavailable(m)) if m.contains("no answer")),
                "{what}: {result:?}"
            );
        }
        assert!(took < Duration::from_secs(30), "{took:?}");
        api.emu.shared.hang(&[]);
        store
            .renew("node0", &conformance::attrs(0), ttl())
            .await
            .unwrap();
    });
}

/// NetworkPolicy's records from the API: the lab writes them as objects
/// (as the admin), podnet's service account lists and watches them, held
/// to deploy/rbac.yaml; a compaction and cut watches make it list again.
#[test]
fn privileged_policy_records_are_the_apis_objects() {
    use crate::records::RecordStore;
    use podnet_core::policy::source::{NamespaceRecord, PodRecord, read};
    in_ns(async {
        let api = emulator(None).await;
        let admin = KubeStore::connect(Some(&api.emu.kubeconfig("admin")))
            .await
            .unwrap();
        let podnet = api.store().await;
        let ns = NamespaceRecord {
            name: "x".into(),
            labels: [("team".to_owned(), "a".to_owned())].into(),
        };
        let pod = PodRecord {
            namespace: "x".into(),
            name: "a".into(),
            node: "node1".into(),
            labels: [("pod".to_owned(), "a".to_owned())].into(),
            ips: vec!["10.244.1.2".parse().unwrap()],
            ports: Vec::new(),
        };
        let put = |key: &'static str, v: Vec<u8>| {
            let admin = &admin;
            async move { admin.put_record(key, &v).await.unwrap() }
        };
        let empty = podnet.records().await.unwrap();
        assert!(empty.items.is_empty());
        put("namespaces/x", serde_json::to_vec(&ns).unwrap()).await;
        put("pods/x/a", serde_json::to_vec(&pod).unwrap()).await;
        let policy = r#"{"kind":"NetworkPolicy","metadata":{"name":"deny","namespace":"x"},"spec":{"podSelector":{}}}"#;
        put("policies/x/deny", policy.as_bytes().to_vec()).await;
        // Each change seen by the watch, until all three are in, the pod
        // with its addresses (its status, written after it).
        let mut seen = podnet.watch_records(&empty.revision, ttl()).await.unwrap();
        while seen.items.len() < 3
            || !seen.items["pods/x/a"]
                .windows(10)
                .any(|w| w == b"10.244.1.2")
        {
            seen = podnet.watch_records(&seen.revision, ttl()).await.unwrap();
        }
        let c = read(&seen.items, &Default::default(), "node1").cluster;
        assert_eq!(c.namespaces["x"]["team"], "a");
        assert_eq!(
            c.namespaces["x"]["kubernetes.io/metadata.name"], "x",
            "set by the server"
        );
        assert_eq!(c.pods[0].ips, pod.ips);
        assert_eq!(c.policies[0].name, "deny");
        // A relabel is one change; a quiet watch returns the same view.
        let mut relabelled = pod.clone();
        relabelled.labels.insert("pod".into(), "b".into());
        put("pods/x/a", serde_json::to_vec(&relabelled).unwrap()).await;
        let changed = podnet.watch_records(&seen.revision, ttl()).await.unwrap();
        let c = read(&changed.items, &Default::default(), "node1").cluster;
        assert_eq!(c.pods[0].labels["pod"], "b");
        assert_eq!(c.pods[0].ips, pod.ips, "a replace keeps the status");
        let quiet = podnet
            .watch_records(&changed.revision, Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(quiet.revision, changed.revision);
        // Compacted and cut: the watch lists again, and misses nothing.
        api.emu.shared.compact();
        api.emu.shared.cut_watches();
        assert!(admin.delete_record("policies/x/deny").await.unwrap());
        let mut after = podnet
            .watch_records(&changed.revision, ttl())
            .await
            .unwrap();
        while after.items.contains_key("policies/x/deny") {
            after = podnet.watch_records(&after.revision, ttl()).await.unwrap();
        }
        assert_eq!(after.items.len(), 2);
        // podnet's account may not write.
        let refused = podnet
            .put_record("policies/x/deny", policy.as_bytes())
            .await;
        assert!(
            matches!(refused, Err(StoreError::Invalid(ref m)) if m.contains("forbidden")),
            "{refused:?}"
        );
    });
}
