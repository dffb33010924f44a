//! 32 ADDs at once, then 32 DELs at once, against one node: every call
//! succeeds, no address is handed out twice, and nothing is left behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Instant;

use common::{Node, TestNetns, first_ip};

const PODS: usize = 32;

#[test]
fn privileged_32_concurrent_adds_then_dels() {
    let node = Node::new();
    let conf = node.conf("10.244.20.0/24");
    let pods: Vec<TestNetns> = (0..PODS).map(|_| TestNetns::new("pntest-pod")).collect();

    let started = Instant::now();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let (node, conf) = (&node, &conf);
                s.spawn(move || node.add(&format!("ctr-{i}"), pod, conf))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!("{PODS} concurrent ADDs took {:?}", started.elapsed());

    let ips: Vec<String> = results
        .into_iter()
        .map(|o| first_ip(&o.expect_ok().json()))
        .collect();
    let unique: HashSet<&String> = ips.iter().collect();
    assert_eq!(unique.len(), PODS, "duplicate addresses: {ips:?}");
    assert_eq!(node.allocated().len(), PODS);
    assert_eq!(node.pod_veths().len(), PODS);
    // Every pod is really attached: the first reaches the last.
    assert!(pods[0].ping(&ips[PODS - 1]));

    let started = Instant::now();
    std::thread::scope(|s| {
        for (i, pod) in pods.iter().enumerate() {
            let (node, conf) = (&node, &conf);
            s.spawn(move || node.del(&format!("ctr-{i}"), &pod.path(), conf).expect_ok());
        }
    });
    eprintln!("{PODS} concurrent DELs took {:?}", started.elapsed());
    assert!(node.allocated().is_empty(), "{:?}", node.allocated());
    assert!(node.pod_veths().is_empty(), "{:?}", node.pod_veths());
    for pod in &pods {
        assert_eq!(pod.links(), ["lo"]);
    }
}
