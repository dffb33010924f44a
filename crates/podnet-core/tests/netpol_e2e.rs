//! The ported upstream e2e cases against podnet's model and against the
//! ruleset it compiles (evaluated purely, pods over two nodes): every
//! cell upstream states, for every step. The kernel runs them in
//! podnet-linux's `privileged_netpol_e2e`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use podnet_core::policy::compile::{Packet, compile};
use podnet_core::policy::{Cluster, Protocol};
use podnet_testkit::netpol::{self, Table};
use podnet_testkit::netpol_cases::cases;

/// The verdict of the source's node's egress and the destination's
/// node's ingress.
fn compiled_table(c: &Cluster, protocol: Protocol, port: u16) -> Table {
    let rulesets: Vec<_> = ["node1", "node2"]
        .iter()
        .map(|n| (*n, compile(c, n)))
        .collect();
    let of = |node: &str| &rulesets.iter().find(|(n, _)| *n == node).unwrap().1;
    netpol::table(|from, to| {
        let pod = |id: &str| {
            c.pods
                .iter()
                .find(|p| format!("{}/{}", p.namespace, p.name) == id)
                .unwrap()
        };
        let (a, b) = (pod(from), pod(to));
        let packet = Packet {
            src: a.ips[0],
            dst: b.ips[0],
            protocol: Some(protocol),
            port,
        };
        of(&a.node).egress_allows(&packet) && of(&b.node).ingress_allows(&packet)
    })
}

#[test]
fn upstream_cases_hold_in_the_model_and_the_compiled_ruleset() {
    let all = cases();
    assert!(all.len() >= 40, "{} cases", all.len());
    let (mut steps, mut cells) = (0, 0);
    let mut failures = Vec::new();
    for case in &all {
        for (i, step) in case.steps.iter().enumerate() {
            let c = netpol::cluster(step.relabel, step.policies, 2)
                .unwrap_or_else(|e| panic!("{} step {i}: {e}", case.name));
            let expected = netpol::expected(step);
            let protocol = netpol::protocol(step.protocol);
            for (what, observed) in [
                ("model", netpol::model_table(&c, protocol, step.port)),
                ("compiled", compiled_table(&c, protocol, step.port)),
            ] {
                let at = format!(
                    "{} step {i} ({what}, {} {})",
                    case.name, step.protocol, step.port
                );
                failures.extend(netpol::compare(&at, &expected, &observed));
            }
            steps += 1;
            cells += expected.len() - 9;
        }
    }
    eprintln!(
        "{} cases, {steps} steps, {cells} cells each in the model and compiled",
        all.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
