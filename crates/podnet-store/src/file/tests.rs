use super::*;
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;

fn conf() -> ClusterConf {
    ClusterConf::parse(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#).unwrap()
}

fn node(i: usize) -> NodeInfo {
    NodeInfo {
        name: format!("node{i}"),
        public_ip: format!("192.168.1.{}", i + 2).parse().unwrap(),
        public_ipv6: None,
        vtep_mac: None,
        vtep_mac6: None,
    }
}

const TTL: Duration = Duration::from_secs(3600);

#[test]
fn fifty_racing_acquirers_get_distinct_subnets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                // Each acquirer has its own handle, as separate agents would.
                let store = FileStore::open(&dir).unwrap();
                store.acquire(&node(i), &conf(), TTL).unwrap().subnets[0]
            })
        })
        .collect();
    let subnets: Vec<IpNet> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let unique: HashSet<&IpNet> = subnets.iter().collect();
    assert_eq!(unique.len(), 50, "duplicates among {subnets:?}");
    let store = FileStore::open(&dir).unwrap();
    assert_eq!(store.list().unwrap().len(), 50);
    assert_eq!(store.claims().unwrap().len(), 50);
}

#[test]
fn restart_reclaims_the_same_subnet_and_release_frees_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::open(tmp.path()).unwrap();
    let first = store.acquire(&node(0), &conf(), TTL).unwrap();
    let other = store.acquire(&node(1), &conf(), TTL).unwrap();
    assert_ne!(first.subnets, other.subnets);
    let again = store.acquire(&node(0), &conf(), TTL).unwrap();
    assert_eq!(first.subnets, again.subnets);
    store.release("node0").unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
    let third = store.acquire(&node(2), &conf(), TTL).unwrap();
    assert_eq!(
        third.subnets, first.subnets,
        "the freed subnet is reused first"
    );
}

#[test]
fn expired_leases_are_taken_over_only_when_full() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::open(tmp.path()).unwrap();
    let small =
        ClusterConf::parse(r#"{"Network":"10.0.0.0/22","SubnetLen":24,"SubnetMin":"10.0.0.0"}"#)
            .unwrap();
    for i in 0..4 {
        store.acquire(&node(i), &small, TTL).unwrap();
    }
    assert!(matches!(
        store.acquire(&node(9), &small, TTL),
        Err(StoreError::Exhausted(_))
    ));
    let expired = store.acquire(&node(3), &small, Duration::ZERO).unwrap();
    let taker = store.acquire(&node(9), &small, TTL).unwrap();
    assert_eq!(taker.subnets, expired.subnets);
    assert!(store.list().unwrap().iter().all(|l| l.node != "node3"));
}

#[test]
fn net_conf_is_written_once_and_files_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::open(tmp.path().join("s")).unwrap();
    assert_eq!(store.net_conf(Some("{\"a\":1}")).unwrap(), "{\"a\":1}");
    assert_eq!(store.net_conf(Some("{\"b\":2}")).unwrap(), "{\"a\":1}");
    assert_eq!(store.net_conf(None).unwrap(), "{\"a\":1}");
    store.acquire(&node(0), &conf(), TTL).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tmp.path().join("s/leases")), 0o700);
    assert_eq!(mode(&tmp.path().join("s/leases/node0.json")), 0o600);
}

#[test]
fn watch_returns_on_change_or_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::open(tmp.path()).unwrap();
    let (rev, leases) = store.watch(0, Duration::from_millis(10)).unwrap();
    assert!(leases.is_empty());
    let (same, _) = store.watch(rev, Duration::from_millis(150)).unwrap();
    assert_eq!(same, rev, "timed out without a change");
    store.acquire(&node(0), &conf(), TTL).unwrap();
    let (changed, leases) = store.watch(rev, Duration::from_secs(5)).unwrap();
    assert_ne!(changed, rev);
    assert_eq!(leases.len(), 1);
}
