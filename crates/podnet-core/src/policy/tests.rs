//! The semantics of networking.k8s.io/v1 NetworkPolicy, each test citing
//! the part of the API reference (NetworkPolicySpec and the types under
//! it) that it checks, on the upstream e2e suite's model: namespaces x, y
//! and z, pods a, b and c in each, serving TCP and UDP on 80 and 81.

use super::api::{NetworkPolicy, Protocol};
use super::model::{Cluster, Connection, Endpoint, NamedPort, Pod};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

fn model(policies: &str) -> Cluster {
    let mut c = Cluster::default();
    for (n, ns) in NAMESPACES.iter().enumerate() {
        c.namespaces.insert(
            (*ns).into(),
            [("kubernetes.io/metadata.name".to_owned(), (*ns).to_owned())].into(),
        );
        for (p, pod) in PODS.iter().enumerate() {
            let ports = [80, 81]
                .into_iter()
                .flat_map(|port| {
                    [(Protocol::TCP, "tcp"), (Protocol::UDP, "udp")].map(|(protocol, name)| {
                        NamedPort {
                            name: format!("serve-{port}-{name}"),
                            port,
                            protocol,
                        }
                    })
                })
                .collect();
            c.pods.push(Pod {
                namespace: (*ns).into(),
                name: (*pod).into(),
                node: format!("node{}", p % 2 + 1),
                labels: [("pod".to_owned(), (*pod).to_owned())].into(),
                ips: vec![format!("10.244.{}.{}", n + 1, p + 2).parse().unwrap()],
                ports,
            });
        }
    }
    c.policies = NetworkPolicy::parse_all(policies).unwrap();
    c
}

fn pod<'a>(c: &'a Cluster, id: &str) -> Endpoint<'a> {
    let (ns, name) = id.split_once('/').unwrap();
    let p = c
        .pods
        .iter()
        .find(|p| p.namespace == ns && p.name == name)
        .unwrap();
    Endpoint::Pod(p, p.ips[0])
}

fn tcp(c: &Cluster, from: &str, to: &str, port: u16) -> bool {
    conn(c, pod(c, from), pod(c, to), Some(Protocol::TCP), port)
}

fn conn(
    c: &Cluster,
    src: Endpoint<'_>,
    dst: Endpoint<'_>,
    protocol: Option<Protocol>,
    port: u16,
) -> bool {
    c.allows(&Connection {
        src,
        dst,
        protocol,
        port,
    })
}

/// Every ordered pair of pods on TCP `port`, as the allowed ones.
fn reachable(c: &Cluster, port: u16) -> Vec<String> {
    let ids: Vec<String> = NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |p| format!("{ns}/{p}")))
        .collect();
    let mut out = Vec::new();
    for from in &ids {
        for to in &ids {
            if from != to && tcp(c, from, to, port) {
                out.push(format!("{from}->{to}"));
            }
        }
    }
    out
}

const DENY_ALL_INGRESS_X: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}}
"#;

#[test]
fn no_policy_allows_everything() {
    let c = model("");
    assert_eq!(reachable(&c, 80).len(), 9 * 8);
}

#[test]
fn an_empty_pod_selector_selects_every_pod_of_its_namespace() {
    // podSelector: an empty selector selects all pods in the namespace.
    let c = model(DENY_ALL_INGRESS_X);
    for to in ["x/a", "x/b", "x/c"] {
        assert!(!tcp(&c, "y/a", to, 80), "{to}");
        assert!(!tcp(&c, "x/b", to, 80) || to == "x/b", "{to}");
    }
    assert!(tcp(&c, "x/a", "y/a", 80), "egress is not isolated");
    assert!(
        tcp(&c, "z/a", "y/b", 80),
        "other namespaces are not touched"
    );
}

#[test]
fn policy_types_default_from_the_rules() {
    // policyTypes: unset, Ingress always; Egress only if the policy has
    // egress rules. `egress: []` is Ingress only.
    let ingress_only = NetworkPolicy::parse_all(
        "kind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, egress: []}",
    )
    .unwrap();
    assert!(ingress_only[0].ingress.is_some() && ingress_only[0].egress.is_none());
    let both = NetworkPolicy::parse_all(
        "kind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, egress: [{}]}",
    )
    .unwrap();
    assert!(both[0].ingress.is_some() && both[0].egress.is_some());
    let egress_only = NetworkPolicy::parse_all(
        "kind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, policyTypes: [Egress]}",
    )
    .unwrap();
    assert!(egress_only[0].ingress.is_none() && egress_only[0].egress == Some(vec![]));
    let c = model(
        "kind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}, policyTypes: [Egress]}",
    );
    assert!(!tcp(&c, "x/a", "y/a", 80), "egress denied");
    assert!(tcp(&c, "y/a", "x/a", 80), "ingress untouched");
}

#[test]
fn policies_add_up_and_a_connection_needs_both_ends() {
    // Policies are additive: a pod isolated by several is allowed the union
    // of their rules. Source egress and destination ingress must both allow.
    let c = model(
        r#"
kind: NetworkPolicy
metadata: {name: from-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
---
kind: NetworkPolicy
metadata: {name: from-c, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: c}}}]}]
---
kind: NetworkPolicy
metadata: {name: c-egress, namespace: x}
spec:
  podSelector: {matchLabels: {pod: c}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {pod: b}}}]}]
"#,
    );
    assert!(tcp(&c, "x/b", "x/a", 80));
    assert!(
        !tcp(&c, "x/c", "x/a", 80),
        "x/a allows c, but c's egress does not"
    );
    assert!(tcp(&c, "x/c", "x/b", 80));
    assert!(
        !tcp(&c, "y/b", "x/a", 80),
        "podSelector alone: the policy's namespace"
    );
}

#[test]
fn empty_lists_allow_nothing_and_empty_fields_match_everything() {
    // ingress absent or empty in an isolating policy: nothing allowed;
    // `from` absent or empty: every source; `ports` absent or empty: every
    // port.
    let c = model(
        r#"
kind: NetworkPolicy
metadata: {name: all, namespace: x}
spec: {podSelector: {matchLabels: {pod: a}}, ingress: [{}]}
---
kind: NetworkPolicy
metadata: {name: none, namespace: x}
spec: {podSelector: {matchLabels: {pod: b}}, ingress: []}
---
kind: NetworkPolicy
metadata: {name: empty-from, namespace: x}
spec: {podSelector: {matchLabels: {pod: c}}, ingress: [{from: [], ports: []}]}
"#,
    );
    assert!(tcp(&c, "z/c", "x/a", 81));
    assert!(!tcp(&c, "x/a", "x/b", 80));
    assert!(tcp(&c, "y/b", "x/c", 81));
    assert!(
        conn(&c, pod(&c, "y/b"), pod(&c, "x/a"), None, 0),
        "ICMP too"
    );
}

#[test]
fn namespace_selectors_and_selectors_anded_or_ored() {
    // namespaceSelector alone: all pods of the selected namespaces (`{}`:
    // every namespace); with podSelector in the same peer: both must match;
    // separate peers: either.
    let c = model(
        r#"
kind: NetworkPolicy
metadata: {name: and, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}
      podSelector: {matchLabels: {pod: b}}
---
kind: NetworkPolicy
metadata: {name: or, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}
    - podSelector: {matchLabels: {pod: c}}
---
kind: NetworkPolicy
metadata: {name: every-namespace, namespace: x}
spec:
  podSelector: {matchLabels: {pod: c}}
  ingress: [{from: [{namespaceSelector: {}}]}]
"#,
    );
    assert!(tcp(&c, "y/b", "x/a", 80));
    assert!(!tcp(&c, "y/a", "x/a", 80) && !tcp(&c, "x/b", "x/a", 80));
    assert!(tcp(&c, "y/a", "x/b", 80) && tcp(&c, "x/c", "x/b", 80));
    assert!(!tcp(&c, "z/c", "x/b", 80), "pod c, but not of x");
    assert!(tcp(&c, "z/a", "x/c", 80) && tcp(&c, "x/a", "x/c", 80));
}

#[test]
fn match_expressions_take_all_four_operators() {
    let c = model(
        r#"
kind: NetworkPolicy
metadata: {name: exprs, namespace: x}
spec:
  podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b]}]}
  ingress:
  - from:
    - podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [a]}]}
      namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: Exists}]}
---
kind: NetworkPolicy
metadata: {name: absent, namespace: y}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {matchExpressions: [{key: team, operator: DoesNotExist}]}}]}]
"#,
    );
    assert!(!tcp(&c, "x/a", "x/b", 80), "NotIn a");
    assert!(tcp(&c, "x/c", "x/b", 80) && tcp(&c, "x/c", "x/a", 80));
    assert!(tcp(&c, "y/a", "x/c", 80), "x/c is not selected (In a, b)");
    assert!(tcp(&c, "y/a", "y/b", 80), "no pod has a team label");
}

#[test]
fn ip_blocks_with_except_apply_to_pod_addresses_too() {
    let c = model(
        r#"
kind: NetworkPolicy
metadata: {name: block, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.2.0/24]}}]}]
"#,
    );
    assert!(tcp(&c, "z/a", "x/a", 80), "10.244.3.x");
    assert!(!tcp(&c, "y/a", "x/a", 80), "10.244.2.x is excepted");
    let outside = Endpoint::External("192.168.1.254".parse().unwrap());
    assert!(!conn(&c, outside, pod(&c, "x/a"), Some(Protocol::TCP), 80));
}

#[test]
fn ports_by_protocol_number_range_and_name() {
    let c = model(
        r#"
kind: NetworkPolicy
metadata: {name: ports, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - ports: [{protocol: UDP}]
  - ports: [{port: 80}]
  - ports: [{protocol: SCTP, port: 1000, endPort: 2000}]
---
kind: NetworkPolicy
metadata: {name: named, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{ports: [{port: serve-81-tcp}]}]
"#,
    );
    let (y, xa, xb) = (pod(&c, "y/a"), pod(&c, "x/a"), pod(&c, "x/b"));
    assert!(conn(&c, y, xa, Some(Protocol::UDP), 81), "UDP, any port");
    assert!(conn(&c, y, xa, Some(Protocol::TCP), 80) && !conn(&c, y, xa, Some(Protocol::TCP), 81));
    assert!(
        conn(&c, y, xa, Some(Protocol::SCTP), 1500) && !conn(&c, y, xa, Some(Protocol::SCTP), 2001)
    );
    assert!(!conn(&c, y, xa, None, 0), "ICMP matches no port rule");
    assert!(conn(&c, y, xb, Some(Protocol::TCP), 81));
    assert!(!conn(&c, y, xb, Some(Protocol::TCP), 80));
    assert!(
        !conn(&c, y, xb, Some(Protocol::UDP), 81),
        "the name's protocol is TCP"
    );
}

#[test]
fn egress_named_ports_resolve_on_the_destination_pod() {
    let c = model(
        r#"
kind: NetworkPolicy
metadata: {name: egress-named, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{ports: [{port: serve-80-udp, protocol: UDP}]}]
"#,
    );
    let (xa, yb) = (pod(&c, "x/a"), pod(&c, "y/b"));
    assert!(conn(&c, xa, yb, Some(Protocol::UDP), 80));
    assert!(
        !conn(&c, xa, yb, Some(Protocol::UDP), 81) && !conn(&c, xa, yb, Some(Protocol::TCP), 80)
    );
    let outside = Endpoint::External("192.168.1.254".parse().unwrap());
    assert!(
        !conn(&c, xa, outside, Some(Protocol::UDP), 80),
        "no pod, no named port"
    );
}

#[test]
fn a_pod_reaches_itself_and_a_node_its_own_pods() {
    let c = model(DENY_ALL_INGRESS_X);
    assert!(tcp(&c, "x/a", "x/a", 80));
    let xa = pod(&c, "x/a");
    let Endpoint::Pod(p, _) = xa else {
        unreachable!()
    };
    let own = Endpoint::Node(&p.node, "192.168.1.2".parse().unwrap());
    let other = Endpoint::Node("node9", "192.168.1.9".parse().unwrap());
    assert!(
        conn(&c, own, xa, Some(Protocol::TCP), 80),
        "kubelet's probes"
    );
    assert!(!conn(&c, other, xa, Some(Protocol::TCP), 80));
}

#[test]
fn what_the_api_server_refuses_is_refused_naming_the_field() {
    for (spec, field) in [
        (
            "{podSelector: {}, ingress: [{from: [{}]}]}",
            "peers[0]: names no peer",
        ),
        (
            "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}",
            "ipBlock goes alone",
        ),
        (
            "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/8]}}]}]}",
            "except 11.0.0.0/8",
        ),
        (
            "{podSelector: {}, ingress: [{ports: [{endPort: 90}]}]}",
            "endPort needs a numeric port",
        ),
        (
            "{podSelector: {}, ingress: [{ports: [{port: 90, endPort: 80}]}]}",
            "endPort 80 is below",
        ),
        (
            "{podSelector: {}, ingress: [{ports: [{port: 90, protocol: ICMP}]}]}",
            "protocol",
        ),
        (
            "{podSelector: {matchExpressions: [{key: a, operator: In}]}}",
            "spec.podSelector",
        ),
    ] {
        let e = NetworkPolicy::parse_all(&format!(
            "kind: NetworkPolicy\nmetadata: {{name: bad, namespace: x}}\nspec: {spec}"
        ))
        .unwrap_err();
        assert!(e.to_string().contains(field), "{spec}: {e}");
        assert!(
            e.to_string().contains("x/bad") || e.to_string().contains("spec."),
            "{e}"
        );
    }
    let e = NetworkPolicy::parse_all("kind: Pod\nmetadata: {name: p}").unwrap_err();
    assert!(e.to_string().contains("only NetworkPolicy"), "{e}");
}

mod compiled {
    //! The compiled ruleset, evaluated purely, against the model; and its
    //! size against the number of pods.

    use std::net::IpAddr;

    use proptest::prelude::*;

    use super::super::api::{NetworkPolicy, Protocol};
    use super::super::compile::{Packet, compile, subtract};
    use super::super::model::{Cluster, Connection, Endpoint, NamedPort, Pod};
    use super::super::random::{NS, Rng, labels, pod_labels, policy};

    fn cluster(seed: u64) -> Cluster {
        let mut r = Rng(seed | 1);
        let mut c = Cluster::default();
        for ns in NS {
            c.namespaces
                .insert(ns.into(), labels(&[("kubernetes.io/metadata.name", ns)]));
        }
        for i in 0..(4 + r.below(5)) {
            let ns = *r.pick(&NS);
            let l = pod_labels(&mut r);
            let ports = [(80, Protocol::TCP, "tcp"), (81, Protocol::UDP, "udp")]
                .into_iter()
                .filter(|_| r.chance(3))
                .map(|(port, protocol, p)| NamedPort {
                    name: format!("serve-{port}-{p}"),
                    port,
                    protocol,
                })
                .collect();
            c.pods.push(Pod {
                namespace: ns.into(),
                name: format!("p{i}"),
                node: format!("node{}", 1 + r.below(2)),
                labels: l,
                ips: vec![format!("10.244.{}.{}", 1 + i % 3, 2 + i).parse().unwrap()],
                ports,
            });
        }
        for i in 0..r.below(5) {
            // What the API server would refuse never reaches a node.
            if let Ok(p) = policy(&mut r, &format!("np{i}")).validate() {
                c.policies.push(p);
            }
        }
        c
    }

    /// The verdict of the two nodes' compiled rulesets.
    fn compiled_allows(
        c: &Cluster,
        src: &Endpoint<'_>,
        dst: &Endpoint<'_>,
        protocol: Option<Protocol>,
        port: u16,
    ) -> bool {
        let ip = |e: &Endpoint<'_>| match *e {
            Endpoint::Pod(_, ip) | Endpoint::Node(_, ip) | Endpoint::External(ip) => ip,
        };
        let packet = Packet {
            src: ip(src),
            dst: ip(dst),
            protocol,
            port,
        };
        let egress = match src {
            Endpoint::Pod(p, _) => compile(c, &p.node).egress_allows(&packet),
            _ => true,
        };
        let ingress = match (dst, src) {
            (Endpoint::Pod(d, _), Endpoint::Node(n, _)) if *n == d.node => true,
            (Endpoint::Pod(d, _), _) => compile(c, &d.node).ingress_allows(&packet),
            _ => true,
        };
        egress && ingress
    }

    fn check(seed: u64) -> Result<usize, String> {
        let c = cluster(seed);
        let external: IpAddr = "192.168.1.254".parse().unwrap();
        let mut ends: Vec<Endpoint<'_>> =
            c.pods.iter().map(|p| Endpoint::Pod(p, p.ips[0])).collect();
        ends.push(Endpoint::External(external));
        ends.push(Endpoint::Node("node1", "192.168.1.2".parse().unwrap()));
        let mut checked = 0;
        for src in &ends {
            for dst in &ends {
                for (protocol, port) in [
                    (Some(Protocol::TCP), 80),
                    (Some(Protocol::TCP), 81),
                    (Some(Protocol::UDP), 81),
                    (Some(Protocol::SCTP), 80),
                    (None, 0),
                ] {
                    let model = c.allows(&Connection {
                        src: *src,
                        dst: *dst,
                        protocol,
                        port,
                    });
                    let compiled = compiled_allows(&c, src, dst, protocol, port);
                    if model != compiled {
                        return Err(format!(
                            "seed {seed}: {src:?} -> {dst:?} {protocol:?}/{port}: model {model}, compiled {compiled}\n{:#?}",
                            c.policies
                        ));
                    }
                    checked += 1;
                }
            }
        }
        Ok(checked)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn the_compiled_ruleset_decides_as_the_model(seed in any::<u64>()) {
            check(seed).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn a_hundred_more_pods_under_the_same_selectors_add_no_rule() {
        let mut c = cluster(7);
        c.policies = NetworkPolicy::parse_all(
            r#"
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {role: web}}
  ingress: [{from: [{podSelector: {matchLabels: {role: db}}}], ports: [{port: 80}, {port: serve-81-udp, protocol: UDP}]}]
  egress: [{to: [{namespaceSelector: {}}]}]
"#,
        )
        .unwrap();
        let before = compile(&c, "node1");
        for i in 0..100 {
            c.pods.push(Pod {
                namespace: "x".into(),
                name: format!("more{i}"),
                node: "node1".into(),
                labels: labels(&[("role", if i % 2 == 0 { "web" } else { "db" })]),
                ips: vec![format!("10.244.9.{}", i + 2).parse().unwrap()],
                ports: vec![NamedPort {
                    name: "serve-81-udp".into(),
                    port: 81,
                    protocol: Protocol::UDP,
                }],
            });
        }
        let after = compile(&c, "node1");
        assert_eq!(after.rule_count(), before.rule_count());
        assert!(after.element_count() >= before.element_count() + 100);
        eprintln!(
            "rules {} -> {}, set elements {} -> {}",
            before.rule_count(),
            after.rule_count(),
            before.element_count(),
            after.element_count()
        );
    }

    #[test]
    fn an_except_leaves_the_fewest_prefixes() {
        let left = subtract(
            "10.0.0.0/8".parse().unwrap(),
            &["10.1.0.0/16".parse().unwrap()],
        );
        assert_eq!(left.len(), 8);
        assert!(
            !left
                .iter()
                .any(|n| n.contains(&"10.1.2.3".parse::<IpAddr>().unwrap()))
        );
        assert!(
            left.iter()
                .any(|n| n.contains(&"10.2.0.1".parse::<IpAddr>().unwrap()))
        );
        assert_eq!(
            subtract(
                "10.1.0.0/16".parse().unwrap(),
                &["10.0.0.0/8".parse().unwrap()]
            ),
            vec![]
        );
    }
}
