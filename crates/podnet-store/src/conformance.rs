//! The Store contract as a test suite, generic over the backend.
//!
//! A backend's tests implement [`Backend`] (how to make a fresh, empty
//! store, open another client on it, and spoil one record) and call
//! [`run`]. Cases that cannot apply to a backend (a store that does not
//! allocate has no exhaustion) are named in [`Backend::skips`], and [`run`]
//! says so rather than passing them silently.

// Test code, compiled only for tests: a failed expectation is a failed
// test, and its message says which.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use podnet_core::cluster::lease::{Lease, LeaseAttrs};
use podnet_core::cluster::netconf::ClusterConf;
use serde_json::Value;

use crate::{Revision, Snapshot, Store, StoreError, now};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    RacingAcquirers,
    RenewExpiryRelease,
    SameSubnetAfterRestart,
    WatchFromRevision,
    CorruptRecordAmongGood,
    PoolExhaustion,
}

pub const ALL: [Case; 6] = [
    Case::RacingAcquirers,
    Case::RenewExpiryRelease,
    Case::SameSubnetAfterRestart,
    Case::WatchFromRevision,
    Case::CorruptRecordAmongGood,
    Case::PoolExhaustion,
];

/// One fresh store, shared by the clients a case opens on it.
pub trait Cluster: Send + Sync {
    type S: Store + 'static;
    /// A new client, as another agent (or a restarted one) would open.
    fn client(&self) -> impl Future<Output = Self::S> + Send;
    /// Makes `node`'s record unreadable, as a bad write or a newer
    /// incompatible writer would.
    fn corrupt(&self, node: &str) -> impl Future<Output = ()> + Send;
    /// `node` leaves the cluster: its lease released, or, where a node is
    /// an object of its own (Kubernetes), that object deleted.
    fn leave(&self, node: &str) -> impl Future<Output = ()> + Send {
        async move {
            let store = self.client().await;
            store.release(node).await.expect("release");
        }
    }
}

pub trait Backend: Sync {
    type C: Cluster + 'static;
    fn fresh(&self) -> impl Future<Output = Self::C> + Send;
    /// The cases that do not apply to this backend.
    fn skips(&self) -> &'static [Case] {
        &[]
    }
}

/// Runs every case that applies, each on a fresh store.
pub async fn run<B: Backend>(backend: &B) {
    for case in ALL {
        if backend.skips().contains(&case) {
            eprintln!("conformance: {case:?}: does not apply to this backend, skipped");
            continue;
        }
        let cluster = backend.fresh().await;
        eprintln!("conformance: {case:?}");
        match case {
            Case::RacingAcquirers => racing_acquirers(&cluster).await,
            Case::RenewExpiryRelease => renew_expiry_release(&cluster).await,
            Case::SameSubnetAfterRestart => same_subnet_after_restart(&cluster).await,
            Case::WatchFromRevision => watch_from_revision(&cluster).await,
            Case::CorruptRecordAmongGood => corrupt_record_among_good(&cluster).await,
            Case::PoolExhaustion => pool_exhaustion(&cluster).await,
        }
    }
}

const LONG: Duration = Duration::from_secs(3600);

pub fn conf() -> ClusterConf {
    ClusterConf::parse(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#)
        .expect("a valid net-conf")
}

/// Four subnets in all: 10.0.0.0/24 .. 10.0.3.0/24.
pub fn small_conf() -> ClusterConf {
    ClusterConf::parse(
        r#"{"Network":"10.0.0.0/22","SubnetLen":24,"SubnetMin":"10.0.0.0","Backend":{"Type":"host-gw"}}"#,
    )
    .expect("a valid net-conf")
}

pub fn name(i: usize) -> String {
    format!("node{i}")
}

pub fn attrs(i: usize) -> LeaseAttrs {
    LeaseAttrs {
        public_ip: format!("192.168.{}.{}", i / 200, i % 200 + 2)
            .parse()
            .expect("an address"),
        public_ipv6: None,
        backend_type: "host-gw".into(),
        backend_data: Value::Null,
        backend_v6_data: Value::Null,
    }
}

fn by_node(snap: &Snapshot) -> Vec<&Lease> {
    let mut v: Vec<&Lease> = snap.leases.values().collect();
    v.sort_by(|a, b| a.node.cmp(&b.node));
    v
}

fn live_nodes(snap: &Snapshot, at: u64) -> Vec<String> {
    by_node(snap)
        .into_iter()
        .filter(|l| !l.expired(at))
        .map(|l| l.node.clone())
        .collect()
}

async fn acquire(store: &impl Store, i: usize, conf: &ClusterConf, ttl: Duration) -> Lease {
    store
        .acquire(&name(i), &attrs(i), conf, ttl)
        .await
        .unwrap_or_else(|e| panic!("acquire {}: {e}", name(i)))
}

async fn list(store: &impl Store) -> Snapshot {
    store.list().await.unwrap_or_else(|e| panic!("list: {e}"))
}

/// Agents starting together, each with its own client, never share a
/// subnet.
pub async fn racing_acquirers<C: Cluster + 'static>(cluster: &C) {
    const N: usize = 24;
    let mut tasks = Vec::new();
    for i in 0..N {
        let store = cluster.client().await;
        tasks.push(tokio::spawn(async move {
            acquire(&store, i, &conf(), LONG).await.subnets
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("an acquirer panicked"));
    }
    let unique: BTreeSet<&IpNet> = all.iter().collect();
    assert_eq!(unique.len(), N, "duplicate subnets among {all:?}");
    let snap = list(&cluster.client().await).await;
    assert_eq!(live_nodes(&snap, now()).len(), N);
}

/// Renew extends the lease and refreshes its node data; a lease left to
/// expire ends (listed as expired, or gone); a released lease is gone,
/// and renewing it is NotFound, which is what makes a node acquire again.
pub async fn renew_expiry_release<C: Cluster>(cluster: &C) {
    let store = cluster.client().await;
    let first = acquire(&store, 0, &conf(), Duration::from_secs(60)).await;
    let mut moved = attrs(0);
    moved.public_ip = "192.168.9.9".parse().expect("an address");
    let renewed = store
        .renew(&name(0), &moved, LONG)
        .await
        .unwrap_or_else(|e| panic!("renew: {e}"));
    assert_eq!(renewed.subnets, first.subnets);
    assert!(renewed.expires > first.expires, "renew extends the lease");
    let listed = list(&store).await;
    let mine = by_node(&listed)
        .into_iter()
        .find(|l| l.node == name(0))
        .expect("the renewed lease is listed");
    assert_eq!(mine.attrs.public_ip, moved.public_ip, "node data refreshed");

    // A store may round a short TTL up (etcd keeps a lease 2 s at least)
    // and expire it on its own schedule: poll, with a generous cap.
    acquire(&store, 1, &conf(), Duration::from_secs(1)).await;
    let t = Instant::now();
    while live_nodes(&list(&store).await, now()) != [name(0)] {
        assert!(t.elapsed() < Duration::from_secs(30), "node1 never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("  a 1 s lease expired after {:?}", t.elapsed());

    store.release(&name(0)).await.expect("release");
    store
        .release(&name(0))
        .await
        .expect("a second release is a no-op");
    assert!(
        by_node(&list(&store).await)
            .iter()
            .all(|l| l.node != name(0))
    );
    match store.renew(&name(0), &attrs(0), LONG).await {
        Err(StoreError::NotFound(node)) => assert_eq!(node, name(0)),
        other => panic!("renew after release: want NotFound, got {other:?}"),
    }
    match store.renew(&name(7), &attrs(7), LONG).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("renew of a node never seen: want NotFound, got {other:?}"),
    }
}

/// A restarted agent (a new client) gets its own subnets back, and a
/// released subnet goes to the next node.
pub async fn same_subnet_after_restart<C: Cluster>(cluster: &C) {
    let store = cluster.client().await;
    let first = acquire(&store, 0, &conf(), LONG).await;
    let other = acquire(&store, 1, &conf(), LONG).await;
    assert_ne!(first.subnets, other.subnets);
    drop(store);
    let restarted = cluster.client().await;
    let again = acquire(&restarted, 0, &conf(), LONG).await;
    assert_eq!(
        again.subnets, first.subnets,
        "the same subnet after a restart"
    );
    cluster.leave(&name(0)).await;
    let third = acquire(&restarted, 2, &conf(), LONG).await;
    assert!(
        !third.subnets.iter().any(|s| other.subnets.contains(s)),
        "a held subnet is never handed out twice"
    );
}

/// `watch(R)` returns as soon as anything committed after R is visible,
/// even a change made before the call; without a change it returns at
/// the timeout; from NONE it returns at once.
pub async fn watch_from_revision<C: Cluster>(cluster: &C) {
    let store = cluster.client().await;
    let writer = cluster.client().await;
    acquire(&writer, 0, &conf(), LONG).await;
    let start = store
        .watch(&Revision::NONE, Duration::from_secs(600))
        .await
        .expect("watch from NONE");
    assert_eq!(live_nodes(&start, now()), [name(0)]);

    let t = Instant::now();
    let quiet = store
        .watch(&start.revision, Duration::from_millis(300))
        .await
        .expect("a quiet watch");
    assert_eq!(live_nodes(&quiet, now()), [name(0)], "nothing changed");
    // Returning before the timeout without a change would make a watcher
    // spin; timers never fire early, so this cannot be flaky.
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "a quiet watch returned after {:?}",
        t.elapsed()
    );

    // Committed between two watches: the next watch must not miss it.
    acquire(&writer, 1, &conf(), LONG).await;
    let cap = Duration::from_secs(60);
    let t = Instant::now();
    let seen = store
        .watch(&quiet.revision, cap)
        .await
        .expect("watch after a commit");
    assert!(t.elapsed() < cap, "the watch waited out its timeout");
    assert_eq!(live_nodes(&seen, now()), [name(0), name(1)]);
    assert_ne!(seen.revision, quiet.revision);
    eprintln!("  a committed change was seen in {:?}", t.elapsed());

    // A change made while a watch waits ends the wait.
    let waiting = {
        let since = seen.revision.clone();
        let store = cluster.client().await;
        tokio::spawn(async move { store.watch(&since, cap).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.leave(&name(0)).await;
    let after = waiting
        .await
        .expect("the watcher panicked")
        .expect("watch during a change");
    assert_eq!(live_nodes(&after, now()), [name(1)]);
}

/// One record that does not parse is listed apart; the others list, and
/// its subnet is never handed to someone else.
pub async fn corrupt_record_among_good<C: Cluster>(cluster: &C) {
    let store = cluster.client().await;
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(acquire(&store, i, &conf(), LONG).await);
    }
    cluster.corrupt(&name(1)).await;
    let snap = list(&store).await;
    assert_eq!(live_nodes(&snap, now()), [name(0), name(2)]);
    assert_eq!(snap.corrupt.len(), 1, "the bad record is named: {snap:?}");
    let newcomer = acquire(&store, 3, &conf(), LONG).await;
    assert!(
        !held[1].subnets.iter().any(|s| newcomer.subnets.contains(s)),
        "the corrupt record's subnet is still held"
    );
    let rewatched = store
        .watch(&Revision::NONE, Duration::from_secs(1))
        .await
        .expect("watch with a corrupt record");
    assert_eq!(rewatched.leases.len(), 3);
    // Its node repairs it by renewing, and keeps its subnet.
    let repaired = store
        .renew(&name(1), &attrs(1), LONG)
        .await
        .unwrap_or_else(|e| panic!("renew of a corrupt record: {e}"));
    assert_eq!(repaired.subnets, held[1].subnets);
    let healed = list(&store).await;
    assert!(healed.corrupt.is_empty(), "{healed:?}");
    assert_eq!(live_nodes(&healed, now()).len(), 4);
}

/// A full cluster CIDR is Exhausted, naming the CIDR and subnet length.
pub async fn pool_exhaustion<C: Cluster>(cluster: &C) {
    let store = cluster.client().await;
    let conf = small_conf();
    for i in 0..4 {
        acquire(&store, i, &conf, LONG).await;
    }
    match store.acquire(&name(9), &attrs(9), &conf, LONG).await {
        Err(e @ StoreError::Exhausted { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("10.0.0.0/22") && msg.contains("/24"), "{msg}");
        }
        other => panic!("acquire in a full pool: want Exhausted, got {other:?}"),
    }
}
