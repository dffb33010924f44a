//! The etcd store against a real etcd, in a namespace of the test's own.

use std::sync::atomic::{AtomicUsize, Ordering};

use podnet_testkit::TestNetns;
use podnet_testkit::etcd::{Certs, EtcdMember};

use super::*;
use crate::conformance::{self, Backend, Cluster};

/// One etcd; every conformance case gets a prefix of its own.
struct Etcd {
    endpoint: String,
    cases: AtomicUsize,
}

struct Prefix {
    endpoint: String,
    prefix: String,
}

impl Cluster for Prefix {
    type S = EtcdStore;

    async fn client(&self) -> EtcdStore {
        let opts = EtcdOptions {
            prefix: self.prefix.clone(),
            ..EtcdOptions::default()
        };
        EtcdStore::connect(std::slice::from_ref(&self.endpoint), &opts)
            .await
            .unwrap()
    }

    async fn corrupt(&self, node: &str) {
        let store = self.client().await;
        let (_, records) = store.records().await.unwrap();
        let key = records
            .iter()
            .find(|r| r.lease.as_ref().is_ok_and(|l| l.node == node))
            .map(|r| r.key.clone())
            .unwrap();
        store.members[0]
            .clone()
            .put(key, "{ not json", None)
            .await
            .unwrap();
    }
}

impl Backend for Etcd {
    type C = Prefix;
    async fn fresh(&self) -> Prefix {
        let n = self.cases.fetch_add(1, Ordering::Relaxed);
        Prefix {
            endpoint: self.endpoint.clone(),
            prefix: format!("/podnet-test/{n}"),
        }
    }
}

/// Runs `test` on a runtime whose one thread lives in `ns`, so every
/// connection it makes stays in the namespace.
fn in_ns<T: Send>(ns: &TestNetns, test: impl Future<Output = T> + Send) -> T {
    ns.in_ns(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test)
    })
}

/// Runs `test` with a store on a fresh single-member etcd (prefix `prefix`),
/// inside the member's namespace.
fn on_etcd<F: Future<Output = ()> + Send>(prefix: &str, test: impl FnOnce(EtcdStore) -> F + Send) {
    let ns = TestNetns::new("pnetcd");
    let member = EtcdMember::start(&ns, 2379);
    let endpoint = member.client_url.clone();
    let opts = EtcdOptions {
        prefix: prefix.to_owned(),
        ..EtcdOptions::default()
    };
    in_ns(&ns, async move {
        let store = EtcdStore::connect(&[endpoint], &opts).await.unwrap();
        test(store).await;
    });
}

#[test]
fn privileged_the_etcd_store_keeps_the_store_contract() {
    let ns = TestNetns::new("pnetcd");
    let member = EtcdMember::start(&ns, 2379);
    let backend = Etcd {
        endpoint: member.client_url.clone(),
        cases: AtomicUsize::new(0),
    };
    in_ns(&ns, conformance::run(&backend));
}

/// A prefix flannel wrote, as its documentation shows it, read as it is.
#[test]
fn privileged_a_flannel_prefix_is_read_as_it_is() {
    on_etcd("/coreos.com/network", |store| async move {
        let mut c = store.members[0].clone();
        let conf = r#"{"Network":"10.5.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#;
        c.put("/coreos.com/network/config", conf, None)
            .await
            .unwrap();
        c.put(
            "/coreos.com/network/subnets/10.5.34.0-24",
            r#"{"PublicIP":"172.17.8.101","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"ae:8f:a3:9b:21:5c"}}"#,
            None,
        )
        .await
        .unwrap();
        assert_eq!(store.net_conf(Some("{}")).await.unwrap(), conf, "kept");
        let snap = store.list().await.unwrap();
        let lease = &snap.leases["/coreos.com/network/subnets/10.5.34.0-24"];
        assert_eq!(lease.attrs.public_ip.to_string(), "172.17.8.101");
        assert_eq!(lease.subnets[0].to_string(), "10.5.34.0/24");

        // podnet's own lease goes beside it, in the same layout.
        let conf = ClusterConf::parse(conf).unwrap();
        let mine = store
            .acquire(
                "node1",
                &conformance::attrs(1),
                &conf,
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_ne!(mine.subnets, lease.subnets);
        let key = layout::subnet_key("/coreos.com/network", &mine.subnets);
        let raw = c.get(key, None).await.unwrap();
        let value: serde_json::Value = serde_json::from_slice(raw.kvs()[0].value()).unwrap();
        assert_eq!(value["PublicIP"], "192.168.0.3");
        assert_eq!(value["BackendType"], "host-gw");
        assert_eq!(value["node"], "node1");
        assert_ne!(raw.kvs()[0].lease(), 0, "the key lives on an etcd lease");
    });
}

/// 100 agents, each with its own client, lease at once: no subnet twice.
#[test]
fn privileged_a_hundred_racing_agents_never_share_a_subnet() {
    let ns = TestNetns::new("pnetcd");
    let member = EtcdMember::start(&ns, 2379);
    let endpoint = member.client_url.clone();
    in_ns(&ns, async move {
        let opts = EtcdOptions {
            prefix: "/race".into(),
            ..EtcdOptions::default()
        };
        let conf = conformance::conf();
        let started = std::time::Instant::now();
        let mut agents = Vec::new();
        for i in 0..100 {
            let store = EtcdStore::connect(std::slice::from_ref(&endpoint), &opts)
                .await
                .unwrap();
            let conf = conf.clone();
            agents.push(tokio::spawn(async move {
                let name = conformance::name(i);
                // As podnetd does at start: an unavailable store (a
                // connection reset under this load) is tried again.
                let mut tries = 0;
                let lease = loop {
                    let attempt = store
                        .acquire(
                            &name,
                            &conformance::attrs(i),
                            &conf,
                            Duration::from_secs(60),
                        )
                        .await;
                    match attempt {
                        Err(StoreError::Unavailable(why)) if tries < 5 => {
                            eprintln!("{name}: {why}; trying again");
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        other => break other.unwrap(),
                    }
                };
                (lease.subnets, store.conflicts())
            }));
        }
        let mut subnets = std::collections::BTreeSet::new();
        let mut conflicts = 0;
        for a in agents {
            let (got, lost) = a.await.unwrap();
            conflicts += lost;
            for s in got {
                assert!(subnets.insert(s), "{s} leased twice");
            }
        }
        eprintln!(
            "100 agents leased 100 distinct subnets in {:?}, {conflicts} lost races retried",
            started.elapsed()
        );
        assert_eq!(subnets.len(), 100);
    });
}

/// Nothing listens: every call is Unavailable, promptly, never a panic.
#[test]
fn privileged_unreachable_endpoints_are_unavailable() {
    let ns = TestNetns::new("pnetcd");
    ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
    in_ns(&ns, async {
        let endpoints = [
            "http://127.0.0.1:1".to_owned(),
            "http://127.0.0.1:2".to_owned(),
        ];
        let store = EtcdStore::connect(&endpoints, &EtcdOptions::default())
            .await
            .unwrap();
        for result in [
            store.list().await.map(drop),
            store.net_conf(Some("{}")).await.map(drop),
            store
                .acquire(
                    "n",
                    &conformance::attrs(0),
                    &conformance::conf(),
                    Duration::from_secs(9),
                )
                .await
                .map(drop),
        ] {
            assert!(
                matches!(result, Err(StoreError::Unavailable(_))),
                "{result:?}"
            );
        }
    });
    let bad = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(EtcdStore::connect(
            &["not a url".to_owned()],
            &EtcdOptions::default(),
        ));
    assert!(
        matches!(bad, Err(StoreError::Invalid(_))),
        "a bad endpoint is configuration"
    );
}

/// TLS with client certificates made by the test; a client without one,
/// and TLS files that are missing or not PEM, are refused clearly.
#[test]
fn privileged_tls_with_client_certificates() {
    let ns = TestNetns::new("pnetcd");
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let member = EtcdMember::start_tls(&ns, 2379, &certs);
    let endpoint = member.client_url.clone();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    in_ns(&ns, async move {
        let connect = |tls: TlsFiles| {
            let endpoint = endpoint.clone();
            async move {
                let opts = EtcdOptions {
                    prefix: "/tls".into(),
                    tls,
                };
                EtcdStore::connect(&[endpoint], &opts).await
            }
        };
        let full = TlsFiles {
            ca: Some(certs.ca.clone()),
            cert: Some(certs.client_cert.clone()),
            key: Some(certs.client_key.clone()),
        };
        let store = connect(full).await.unwrap();
        store.net_conf(Some("{}")).await.unwrap();
        let lease = store
            .acquire(
                "node1",
                &conformance::attrs(1),
                &conformance::conf(),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_eq!(store.list().await.unwrap().leases.len(), 1, "{lease:?}");

        let anonymous = TlsFiles {
            ca: Some(certs.ca.clone()),
            ..TlsFiles::default()
        };
        let refused = match connect(anonymous).await {
            Ok(s) => s.list().await.map(drop),
            Err(e) => Err(e),
        };
        assert!(refused.is_err(), "a client without a certificate got in");

        let missing = TlsFiles {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        match connect(missing).await {
            Err(StoreError::Invalid(why)) => assert!(why.contains("--etcd-cafile"), "{why}"),
            Err(e) => panic!("a missing CA file: want Invalid, got {e}"),
            Ok(_) => panic!("a missing CA file was accepted"),
        }
        let half = TlsFiles {
            cert: Some(certs.client_cert.clone()),
            ..TlsFiles::default()
        };
        assert!(matches!(connect(half).await, Err(StoreError::Invalid(_))));
        let not_pem = TlsFiles {
            ca: Some(garbage),
            ..TlsFiles::default()
        };
        match connect(not_pem).await {
            Err(StoreError::Invalid(why)) => assert!(why.contains("not a PEM file"), "{why}"),
            Err(e) => panic!("a CA file that is not PEM: want Invalid, got {e}"),
            Ok(_) => panic!("a CA file that is not PEM was accepted"),
        }
    });
}

/// Partitioned past its TTL: the node's lease is gone (NotFound), and it
/// gets its own subnet back while nobody took it.
#[test]
fn privileged_an_expired_node_gets_its_free_subnet_back() {
    on_etcd(layout::DEFAULT_PREFIX, |store| async move {
        let conf = conformance::conf();
        let attrs = conformance::attrs(1);
        let first = store
            .acquire("node1", &attrs, &conf, Duration::from_secs(1))
            .await
            .unwrap();
        let t = std::time::Instant::now();
        while !store.list().await.unwrap().leases.is_empty() {
            assert!(t.elapsed() < Duration::from_secs(30), "never expired");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let renewed = store.renew("node1", &attrs, Duration::from_secs(60)).await;
        assert!(
            matches!(renewed, Err(StoreError::NotFound(_))),
            "{renewed:?}"
        );
        let again = store
            .acquire("node1", &attrs, &conf, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(again.subnets, first.subnets, "taken back");
    });
}

/// A watch from a revision etcd compacted away lists again, promptly.
#[test]
fn privileged_a_watch_from_a_compacted_revision_lists_again() {
    on_etcd(layout::DEFAULT_PREFIX, |store| async move {
        let conf = conformance::conf();
        let old = store.list().await.unwrap().revision;
        for i in 0..3 {
            store
                .acquire(
                    &conformance::name(i),
                    &conformance::attrs(i),
                    &conf,
                    Duration::from_secs(60),
                )
                .await
                .unwrap();
        }
        let now = store.list().await.unwrap().revision;
        let mut c = store.members[0].clone();
        c.compact(now.as_str().parse().unwrap(), None)
            .await
            .unwrap();
        let cap = Duration::from_secs(60);
        let t = std::time::Instant::now();
        let snap = store.watch(&old, cap).await.unwrap();
        assert!(t.elapsed() < cap, "waited out the timeout");
        assert_eq!(snap.leases.len(), 3);
    });
}

/// A client that leased for many nodes looks again before it says
/// Exhausted: a subnet may have been freed since it last listed.
#[test]
fn privileged_a_freed_subnet_is_found_before_exhausted() {
    on_etcd(layout::DEFAULT_PREFIX, |store| async move {
        let conf = conformance::small_conf();
        let ttl = Duration::from_secs(60);
        for i in 0..4 {
            let attrs = conformance::attrs(i);
            store
                .acquire(&conformance::name(i), &attrs, &conf, ttl)
                .await
                .unwrap();
        }
        let full = store
            .acquire("node9", &conformance::attrs(9), &conf, ttl)
            .await;
        assert!(
            matches!(full, Err(StoreError::Exhausted { .. })),
            "{full:?}"
        );
        // node0's subnet is given back; what this client knew still holds
        // it as taken.
        store.release("node0").await.unwrap();
        let got = store
            .acquire("node9", &conformance::attrs(9), &conf, ttl)
            .await;
        assert!(got.is_ok(), "{got:?}");
    });
}

/// A claim whose answer was lost is retried on another member, where it
/// finds its own key: that is a won claim, not a lost race that would
/// make the node claim a second subnet.
#[test]
fn privileged_a_retried_claim_finds_its_own_key() {
    on_etcd(layout::DEFAULT_PREFIX, |store| async move {
        let conf = conformance::conf();
        let subnets = EtcdStore::pick(&conf, &[]).unwrap();
        let lease = lease_for(
            "node1",
            subnets,
            &conformance::attrs(1),
            Duration::from_secs(60),
        );
        let mut c = store.members[0].clone();
        let mine = c.lease_grant(60, None).await.unwrap().id();
        // The first attempt landed; its answer never came back.
        let key = layout::subnet_key(layout::DEFAULT_PREFIX, &lease.subnets);
        let value = serde_json::to_vec(&lease).unwrap();
        c.put(key.clone(), value, Some(PutOptions::new().with_lease(mine)))
            .await
            .unwrap();
        assert!(store.claim(&lease, mine).await.unwrap(), "its own key");
        let other = c.lease_grant(60, None).await.unwrap().id();
        assert!(!store.claim(&lease, other).await.unwrap(), "another's key");
        assert_eq!(store.conflicts(), 0, "claim() itself counts nothing");
        assert_eq!(store.list().await.unwrap().leases.len(), 1);
    });
}

/// A key under `subnets/` that names no subnet is listed as corrupt, by
/// name, beside the good leases: never dropped unseen, never fatal.
#[test]
fn privileged_a_key_that_names_no_subnet_is_listed_as_corrupt() {
    on_etcd(layout::DEFAULT_PREFIX, |store| async move {
        let conf = conformance::conf();
        let ttl = Duration::from_secs(60);
        store
            .acquire("node1", &conformance::attrs(1), &conf, ttl)
            .await
            .unwrap();
        let bad = format!(
            "{}not-a-subnet",
            layout::subnets_prefix(layout::DEFAULT_PREFIX)
        );
        store.members[0]
            .clone()
            .put(bad.clone(), "{}", None)
            .await
            .unwrap();
        let snap = store.list().await.unwrap();
        assert_eq!(snap.leases.len(), 1, "{snap:?}");
        let why = snap.corrupt.get(&bad).expect("the bad key is named");
        assert!(why.contains("not a subnet key"), "{why}");
        // It takes no subnet from anyone.
        store
            .acquire("node2", &conformance::attrs(2), &conf, ttl)
            .await
            .unwrap();
    });
}

/// A member that hangs (stopped, not gone) holds a watch no longer than
/// its timeout and the calls' own, and the store works again once the
/// member does.
#[test]
fn privileged_a_watch_on_a_hung_member_returns() {
    let ns = TestNetns::new("pnetcd");
    let member = EtcdMember::start(&ns, 2379);
    let endpoint = member.client_url.clone();
    in_ns(&ns, async move {
        let store = EtcdStore::connect(&[endpoint], &EtcdOptions::default())
            .await
            .unwrap();
        let since = store.list().await.unwrap().revision;
        let frozen = member.freeze();
        let started = std::time::Instant::now();
        let cap = Duration::from_secs(60);
        let watched = tokio::time::timeout(cap, store.watch(&since, Duration::from_secs(1))).await;
        eprintln!(
            "the watch on a hung member returned after {:?}",
            started.elapsed()
        );
        let watched = watched.expect("the watch returned");
        assert!(
            matches!(watched, Err(StoreError::Unavailable(_))),
            "{watched:?}"
        );
        drop(frozen);
        let conf = conformance::conf();
        let lease = store
            .acquire(
                "node1",
                &conformance::attrs(1),
                &conf,
                Duration::from_secs(60),
            )
            .await;
        assert!(lease.is_ok(), "{lease:?}");
    });
}

/// Node `node`'s dual-stack lease on 10.244.`v4`.0/24 and
/// fd00:244:0:`v6`::/64.
fn dual_lease(node: usize, v4: u8, v6: u8) -> Lease {
    let subnets: Vec<IpNet> = vec![
        format!("10.244.{v4}.0/24").parse().unwrap(),
        format!("fd00:244:0:{v6}::/64").parse().unwrap(),
    ];
    lease_for(
        &conformance::name(node),
        subnets,
        &conformance::attrs(node),
        Duration::from_secs(60),
    )
}

/// Writes `lease`'s key on a fresh etcd lease, as a claim that landed
/// does; returns the etcd lease and the key.
async fn put_on_a_lease(c: &mut Client, lease: &Lease) -> (i64, String) {
    let id = c.lease_grant(60, None).await.unwrap().id();
    let key = layout::subnet_key(layout::DEFAULT_PREFIX, &lease.subnets);
    c.put(
        key.clone(),
        serde_json::to_vec(lease).unwrap(),
        Some(PutOptions::new().with_lease(id)),
    )
    .await
    .unwrap();
    (id, key)
}

/// Dual-stack: a claim that finds its own key already there (its first
/// attempt landed, the answer was lost) still checks that no other node's
/// key holds one of its subnets, and gives the key back if one does.
#[test]
fn privileged_an_adopted_dual_stack_key_is_checked_for_a_shared_subnet() {
    on_etcd(layout::DEFAULT_PREFIX, |store| async move {
        let lease = dual_lease(1, 7, 7);
        let mut c = store.members[0].clone();
        // Another node holds the same IPv6 subnet with another IPv4 one.
        let (theirs, _) = put_on_a_lease(&mut c, &dual_lease(2, 8, 7)).await;
        // Our first attempt landed; its answer never came back.
        let (mine, key) = put_on_a_lease(&mut c, &lease).await;
        assert!(
            !store.claim(&lease, mine).await.unwrap(),
            "a shared subnet is no win"
        );
        assert!(
            c.get(key, None).await.unwrap().kvs().is_empty(),
            "our key given back"
        );
        // Without the other key, the same adopted claim wins.
        c.lease_revoke(theirs).await.unwrap();
        let (again, _) = put_on_a_lease(&mut c, &lease).await;
        assert!(store.claim(&lease, again).await.unwrap());
    });
}

/// Dual-stack, through a failover: the first member this client tries is
/// dead, so the claim and the shared-subnet check both go to the next
/// one; the check still holds.
#[test]
fn privileged_the_dual_stack_shared_subnet_check_holds_through_a_failover() {
    let ns = TestNetns::new("pnetcd");
    let member = EtcdMember::start(&ns, 2379);
    let live = member.client_url.clone();
    in_ns(&ns, async move {
        // Nothing listens on port 1: every call to it fails at once.
        let dead = "http://127.0.0.1:1".to_owned();
        let store = EtcdStore::connect(&[dead, live.clone()], &EtcdOptions::default())
            .await
            .unwrap();
        let direct = EtcdStore::connect(&[live], &EtcdOptions::default())
            .await
            .unwrap();
        let mut c = direct.members[0].clone();
        put_on_a_lease(&mut c, &dual_lease(2, 8, 7)).await;
        let lease = dual_lease(1, 7, 7);
        let mine = c.lease_grant(60, None).await.unwrap().id();
        store.current.store(0, Ordering::Relaxed);
        assert!(
            !store.claim(&lease, mine).await.unwrap(),
            "a shared subnet is no win"
        );
        let key = layout::subnet_key(layout::DEFAULT_PREFIX, &lease.subnets);
        assert!(
            c.get(key, None).await.unwrap().kvs().is_empty(),
            "nothing of ours left"
        );
    });
}

#[test]
fn privileged_the_etcd_store_keeps_policy_records() {
    let ns = TestNetns::new("pnetcd");
    let member = EtcdMember::start(&ns, 2379);
    let endpoint = member.client_url.clone();
    in_ns(&ns, async move {
        let opts = EtcdOptions::default();
        let a = EtcdStore::connect(std::slice::from_ref(&endpoint), &opts)
            .await
            .unwrap();
        let b = EtcdStore::connect(&[endpoint], &opts).await.unwrap();
        crate::records::conformance(&a, &b).await;
    });
}
