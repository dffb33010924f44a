use super::*;
use crate::conformance::{self, Backend, Cluster, attrs, conf, name};
use std::os::unix::fs::PermissionsExt;

const TTL: Duration = Duration::from_secs(3600);

/// The file store under the Store conformance suite: one temp directory
/// per case, one `FileStore` per client.
struct Files;

struct Dir(tempfile::TempDir);

impl Cluster for Dir {
    type S = FileStore;
    async fn client(&self) -> FileStore {
        FileStore::open(self.0.path()).unwrap()
    }
    async fn corrupt(&self, node: &str) {
        corrupt_lease_file(self.0.path(), node).unwrap();
    }
}

impl Backend for Files {
    type C = Dir;
    async fn fresh(&self) -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_file_store_keeps_the_store_contract() {
    conformance::run(&Files).await;
}

#[test]
fn expired_leases_are_taken_over_only_when_full() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::open(tmp.path()).unwrap();
    let small = conformance::small_conf();
    let take = |i: usize, ttl| store.acquire_blocking(&name(i), &attrs(i), &small, ttl);
    for i in 0..4 {
        take(i, TTL).unwrap();
    }
    assert!(matches!(take(9, TTL), Err(StoreError::Exhausted { .. })));
    let expired = take(3, Duration::ZERO).unwrap();
    // A young claim is never taken over: its taker may be mid-acquire.
    assert!(matches!(take(9, TTL), Err(StoreError::Exhausted { .. })));
    let claim = std::fs::File::options()
        .write(true)
        .open(store.claim_path(&expired.subnets[0]))
        .unwrap();
    claim
        .set_modified(SystemTime::now() - ORPHAN_GRACE * 2)
        .unwrap();
    let taker = take(9, TTL).unwrap();
    assert_eq!(taker.subnets, expired.subnets);
    let snap = store.snapshot().unwrap();
    assert!(snap.leases.values().all(|l| l.node != "node3"));
    // The loser learns it on its next renewal: its lease is gone.
    assert!(matches!(
        store.renew_blocking(&name(3), &attrs(3), TTL),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn a_lease_whose_subnet_another_node_claims_is_a_conflict() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::open(tmp.path()).unwrap();
    let lease = store
        .acquire_blocking(&name(0), &attrs(0), &conf(), TTL)
        .unwrap();
    std::fs::write(store.claim_path(&lease.subnets[0]), "node5").unwrap();
    match store.renew_blocking(&name(0), &attrs(0), TTL) {
        Err(StoreError::Conflict { subnet, holder }) => {
            assert_eq!((subnet, holder.as_str()), (lease.subnets[0], "node5"));
        }
        other => panic!("want Conflict, got {other:?}"),
    }
}

#[test]
fn a_node_with_a_corrupt_lease_gets_its_claimed_subnet_back() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::open(tmp.path()).unwrap();
    let first = store
        .acquire_blocking(&name(0), &attrs(0), &conf(), TTL)
        .unwrap();
    corrupt_lease_file(tmp.path(), &name(0)).unwrap();
    let again = store
        .acquire_blocking(&name(0), &attrs(0), &conf(), TTL)
        .unwrap();
    assert_eq!(again.subnets, first.subnets);
    assert!(store.snapshot().unwrap().corrupt.is_empty(), "rewritten");
}

#[test]
fn a_missing_store_is_unavailable_not_an_empty_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = FileStore::open(&dir).unwrap();
    store
        .acquire_blocking(&name(0), &attrs(0), &conf(), TTL)
        .unwrap();
    std::fs::rename(&dir, tmp.path().join("away")).unwrap();
    for result in [
        store.renew_blocking(&name(0), &attrs(0), TTL).map(|_| ()),
        store.snapshot().map(|_| ()),
        store
            .acquire_blocking(&name(1), &attrs(1), &conf(), TTL)
            .map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
    }
}

#[test]
fn net_conf_is_written_once_and_files_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::open(tmp.path().join("s")).unwrap();
    assert_eq!(
        store.net_conf_blocking(Some("{\"a\":1}")).unwrap(),
        "{\"a\":1}"
    );
    assert_eq!(
        store.net_conf_blocking(Some("{\"b\":2}")).unwrap(),
        "{\"a\":1}"
    );
    assert_eq!(store.net_conf_blocking(None).unwrap(), "{\"a\":1}");
    store
        .acquire_blocking(&name(0), &attrs(0), &conf(), TTL)
        .unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tmp.path().join("s/leases")), 0o700);
    assert_eq!(mode(&tmp.path().join("s/leases/node0.json")), 0o600);
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("s/leases"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["node0.json"], "no temp files left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_store_keeps_policy_records() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        FileStore::open(dir.path()).unwrap(),
        FileStore::open(dir.path()).unwrap(),
    );
    crate::records::conformance(&a, &b).await;
}
