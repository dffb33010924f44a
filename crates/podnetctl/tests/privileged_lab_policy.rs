//! NetworkPolicy enforced by podnetd on a lab: upstream's e2e cases
//! (kubernetes `network_policy.go` at 9db638c, ported as data in
//! `podnet_testkit::netpol_cases`) on the policy model's 9 pods spread
//! over two nodes, so both same-node (bridged) and cross-node (routed)
//! pairs are judged. Each step's policies and labels are written to the
//! lab's store as records; the test waits for every node's podnetd to
//! report them in place (no retries), probes every ordered pair, and
//! holds the table to upstream's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::TestLab;
use podnet_core::policy::Protocol;
use podnet_core::policy::source::{Kind, NamespaceRecord, PodRecord};
use podnet_lab::policy::{model_ports, observe, wait_enforced};
use podnet_lab::record::Lab;
use podnet_store::records::RecordStore;
use podnet_testkit::netpol::{self, NAMESPACES, PODS};
use podnet_testkit::netpol_cases::{Step, cases};

/// The cases' addresses (10.250.n.(p+2), and 10.250.0.0/16 for "every
/// pod") made the lab's: each pod's own, and the lab's pod network.
fn localized(policies: &str, lab: &Lab) -> String {
    let mut text = policies.replace("10.250.0.0/16", "10.244.0.0/16");
    for (n, ns) in NAMESPACES.iter().enumerate() {
        for (p, pod) in PODS.iter().enumerate() {
            let ip = lab
                .pods
                .iter()
                .find(|x| x.namespace == *ns && x.name == *pod)
                .unwrap()
                .ips[0];
            text = text.replace(
                &format!("{}/32", netpol::address(n, p)),
                &format!("{ip}/32"),
            );
        }
    }
    text
}

/// Every record a step stands for: the model's namespaces and pods with
/// the step's labels, and its policies.
fn records(step: &Step, lab: &Lab) -> BTreeMap<String, Vec<u8>> {
    let text = localized(step.policies, lab);
    let cluster = netpol::cluster(step.relabel, "", 1).unwrap();
    let mut out = BTreeMap::new();
    for (name, labels) in &cluster.namespaces {
        let r = NamespaceRecord {
            name: name.clone(),
            labels: labels.clone(),
        };
        out.insert(
            Kind::Namespace.key(name, name),
            serde_json::to_vec(&r).unwrap(),
        );
    }
    for pod in &cluster.pods {
        let there = lab
            .pods
            .iter()
            .find(|p| p.namespace == pod.namespace && p.name == pod.name)
            .unwrap();
        let r = PodRecord {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            node: there.node.clone(),
            labels: pod.labels.clone(),
            ips: there.ips.clone(),
            ports: model_ports(),
        };
        out.insert(
            Kind::Pod.key(&pod.namespace, &pod.name),
            serde_json::to_vec(&r).unwrap(),
        );
    }
    for (policy, doc) in podnet_core::policy::NetworkPolicy::documents(&text).unwrap() {
        out.insert(
            Kind::Policy.key(&policy.namespace, &policy.name),
            serde_json::to_vec(&doc).unwrap(),
        );
    }
    out
}

/// Makes the store hold exactly `want`.
fn sync(lab: &Lab, want: BTreeMap<String, Vec<u8>>) {
    lab.with_store(|s| async move {
        let have = s.records().await?.items;
        for key in have.keys().filter(|k| !want.contains_key(*k)) {
            s.delete_record(key).await?;
        }
        for (key, value) in want.iter().filter(|(k, v)| have.get(*k) != Some(v)) {
            s.put_record(key, value).await?;
        }
        Ok(())
    })
    .unwrap();
}

fn run_cases(extra: &[&str]) {
    let t = TestLab::up_with(2, 0, &[&["--policy-model"], extra].concat());
    let lab = Lab::load(&t.path()).unwrap().unwrap();
    let pods: Vec<_> = lab.pods.clone();
    assert_eq!(pods.len(), 9);
    let started = Instant::now();
    let (mut steps, mut skipped, mut waits) = (0, 0, Vec::new());
    let mut failures = Vec::new();
    for case in cases() {
        for (i, step) in case.steps.iter().enumerate() {
            let protocol = netpol::protocol(step.protocol);
            if protocol == Protocol::SCTP {
                skipped += 1;
                continue;
            }
            sync(&lab, records(step, &lab));
            waits.push(wait_enforced(&lab).unwrap());
            let observed = observe(&pods, protocol, step.port);
            let at = format!("{} step {i} ({} {})", case.name, step.protocol, step.port);
            failures.extend(netpol::compare(&at, &netpol::expected(step), &observed));
            steps += 1;
        }
    }
    waits.sort();
    eprintln!(
        "{} cases: {steps} steps on a 2-node lab {extra:?} ({skipped} SCTP steps skipped), \
         {} failed, in {:?}; enforced on both nodes in {:?} (median), {:?} (max)",
        cases().len(),
        failures.len(),
        started.elapsed(),
        waits[waits.len() / 2],
        waits[waits.len() - 1],
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn privileged_upstream_cases_hold_on_a_host_gw_lab() {
    run_cases(&[]);
}

/// The full run's (`--run-ignored all`): the overlay, where cross-node
/// packets leave through the vxlan device.
#[test]
#[ignore = "full run: vxlan"]
fn privileged_upstream_cases_hold_on_a_vxlan_lab() {
    run_cases(&["--backend", "vxlan"]);
}

/// The full run's: dual-stack nodes behind a router (the pods' IPv4
/// addresses are probed; IPv6 is held by the same sets' other family).
#[test]
#[ignore = "full run: vxlan, routed, dual-stack"]
fn privileged_upstream_cases_hold_on_a_routed_dual_stack_lab() {
    run_cases(&["--backend", "vxlan", "--routed", "--dual-stack"]);
}
