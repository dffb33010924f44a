//! NetworkPolicy cases ported from the Kubernetes e2e suite
//! (`test/e2e/network/netpol/network_policy.go`, kubernetes/kubernetes at
//! commit 9db638c0807a720aa050ebcef69c32e4d4cce280): its policies as YAML,
//! and its expected truth tables as the same operations upstream writes
//! them (`NewReachability`, `ExpectPeer`, `ExpectAllIngress`,
//! `ExpectAllEgress`, `Expect`), applied in order. Data only: nothing here
//! is computed by podnet's model. The model is upstream's: namespaces x,
//! y and z (labelled `kubernetes.io/metadata.name=<ns>`), pods a, b and c
//! in each (labelled `pod=<name>`), each serving TCP and UDP on 80 and 81
//! with container ports `serve-<port>-<tcp|udp>`. Upstream ignores a pod's
//! connections to itself; so do the runners.

/// Pods an expectation covers: `None` is any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sel {
    pub namespace: Option<&'static str>,
    pub pod: Option<&'static str>,
}

/// Any pod.
pub const ANY: Sel = Sel {
    namespace: None,
    pod: None,
};

/// Every pod of a namespace.
pub const fn ns(namespace: &'static str) -> Sel {
    Sel {
        namespace: Some(namespace),
        pod: None,
    }
}

/// One pod.
pub const fn pod(namespace: &'static str, pod: &'static str) -> Sel {
    Sel {
        namespace: Some(namespace),
        pod: Some(pod),
    }
}

/// One of upstream's reachability operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `ExpectPeer(from, to, allowed)`: every pair the two select.
    Peer(Sel, Sel, bool),
    /// `ExpectAllIngress(pod, allowed)`: every pod to this one.
    AllIngress(Sel, bool),
    /// `ExpectAllEgress(pod, allowed)`: this pod to every pod.
    AllEgress(Sel, bool),
    /// `Expect(from, to, allowed)`: one pair.
    One(Sel, Sel, bool),
}

/// A label change on the model between steps: `(kind, name, key, value)`
/// with kind `"pod"` (name `ns/pod`) or `"namespace"`; `None` removes it.
pub type Relabel = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

/// One validation of a case: the policies in effect (every one, as YAML
/// documents), the label changes in effect (every one), the port and
/// protocol probed, and the expected table.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub policies: &'static str,
    pub relabel: &'static [Relabel],
    pub protocol: &'static str,
    pub port: u16,
    /// `NewReachability(pods, default)`.
    pub default: bool,
    pub expect: &'static [Expect],
}

#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Upstream's test name.
    pub name: &'static str,
    pub steps: &'static [Step],
}

/// Every ported case, in upstream's order.
pub fn cases() -> Vec<Case> {
    CASES.to_vec()
}

// A const, not a `vec!` of borrows in the function: `ns()` and `pod()` are
// const fn calls, which a function body does not promote to `'static`.
const CASES: &[Case] = &[
    // ---- Netpol: NetworkPolicy between server and client ----
    Case {
        name: "should support a 'default-deny-ingress' policy",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: deny-ingress, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress: []
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[Expect::Peer(ANY, ns("x"), false)],
        }],
    },
    Case {
        name: "should support a 'default-deny-all' policy",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: deny-all, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: []
  egress: []
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[
                Expect::Peer(ANY, ns("x"), false),
                Expect::Peer(ns("x"), ANY, false),
            ],
        }],
    },
    Case {
        name: "should enforce policy to allow traffic from pods within server namespace based on PodSelector",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: x-a-allows-x-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {pod: b}}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[
                Expect::AllIngress(pod("x", "a"), false),
                Expect::One(pod("x", "b"), pod("x", "a"), true),
            ],
        }],
    },
    Case {
        name: "should enforce policy to allow ingress traffic for a target",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: deny-all, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress: []
---
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-all-to-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {}
      namespaceSelector: {}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[
                Expect::AllIngress(pod("x", "a"), true),
                Expect::AllIngress(pod("x", "b"), false),
                Expect::AllIngress(pod("x", "c"), false),
            ],
        }],
    },
    Case {
        name: "should enforce policy to allow ingress traffic from pods in all namespaces",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-from-another-ns, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {}}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[],
        }],
    },
    Case {
        name: "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-ns-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[
                Expect::Peer(ns("x"), pod("x", "a"), false),
                Expect::Peer(ns("z"), pod("x", "a"), false),
            ],
        }],
    },
    Case {
        name: "should enforce policy based on PodSelector with MatchExpressions",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: x-a-allows-x-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector:
        matchExpressions:
        - {key: pod, operator: In, values: [b]}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[
                Expect::AllIngress(pod("x", "a"), false),
                Expect::One(pod("x", "b"), pod("x", "a"), true),
            ],
        }],
    },
    Case {
        name: "should enforce policy based on NamespaceSelector with MatchExpressions",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-ns-y-match-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector:
        matchExpressions:
        - {key: kubernetes.io/metadata.name, operator: In, values: ["y"]}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[
                Expect::Peer(ns("x"), pod("x", "a"), false),
                Expect::Peer(ns("z"), pod("x", "a"), false),
            ],
        }],
    },
    Case {
        name: "should enforce policy based on PodSelector or NamespaceSelector",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-ns-y-match-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector:
        matchExpressions:
        - {key: kubernetes.io/metadata.name, operator: NotIn, values: ["x"]}
    - podSelector: {matchLabels: {pod: b}}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[
                Expect::One(pod("x", "a"), pod("x", "a"), false),
                Expect::One(pod("x", "c"), pod("x", "a"), false),
            ],
        }],
    },
    Case {
        name: "should enforce policy based on PodSelector and NamespaceSelector",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-ns-y-podselector-and-nsselector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector:
        matchExpressions:
        - {key: kubernetes.io/metadata.name, operator: NotIn, values: ["x"]}
      podSelector: {matchLabels: {pod: b}}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[
                Expect::AllIngress(pod("x", "a"), false),
                Expect::One(pod("y", "b"), pod("x", "a"), true),
                Expect::One(pod("z", "b"), pod("x", "a"), true),
            ],
        }],
    },
    Case {
        name: "should enforce policy based on Multiple PodSelectors and NamespaceSelectors",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-ns-y-z-pod-b-c, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector:
        matchExpressions:
        - {key: kubernetes.io/metadata.name, operator: NotIn, values: ["x"]}
      podSelector:
        matchExpressions:
        - {key: pod, operator: In, values: [b, c]}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[
                Expect::Peer(ns("x"), pod("x", "a"), false),
                Expect::One(pod("y", "a"), pod("x", "a"), false),
                Expect::One(pod("z", "a"), pod("x", "a"), false),
            ],
        }],
    },
    Case {
        name: "should enforce policy based on any PodSelectors",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-ns-x-pod-b-c, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {pod: b}}
    - podSelector: {matchLabels: {pod: c}}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[
                Expect::AllIngress(pod("x", "a"), false),
                Expect::One(pod("x", "b"), pod("x", "a"), true),
                Expect::One(pod("x", "c"), pod("x", "a"), true),
            ],
        }],
    },
    Case {
        name: "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-ns-y-pod-a-via-namespace-pod-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}
      podSelector: {matchLabels: {pod: a}}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[
                Expect::AllIngress(pod("x", "a"), false),
                Expect::One(pod("y", "a"), pod("x", "a"), true),
            ],
        }],
    },
    Case {
        name: "should enforce policy based on Ports",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-ns-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}
    ports:
    - {port: 81, protocol: TCP}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 81,
            default: true,
            expect: &[
                Expect::Peer(ns("x"), pod("x", "a"), false),
                Expect::Peer(ns("y"), pod("x", "a"), true),
                Expect::Peer(ns("z"), pod("x", "a"), false),
            ],
        }],
    },
    Case {
        name: "should enforce multiple, stacked policies with overlapping podSelectors",
        steps: &[
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-ns-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}
    ports:
    - {port: 81, protocol: TCP}
"#,
                relabel: &[],
                protocol: "TCP",
                port: 81,
                default: true,
                expect: &[
                    Expect::Peer(ns("x"), pod("x", "a"), false),
                    Expect::Peer(ns("y"), pod("x", "a"), true),
                    Expect::Peer(ns("z"), pod("x", "a"), false),
                ],
            },
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-ns-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}
    ports:
    - {port: 81, protocol: TCP}
"#,
                relabel: &[],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[Expect::AllIngress(pod("x", "a"), false)],
            },
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-ns-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}
    ports:
    - {port: 81, protocol: TCP}
---
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-ns-selector-80, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}
    ports:
    - {port: 80, protocol: TCP}
"#,
                relabel: &[],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[
                    Expect::Peer(ns("x"), pod("x", "a"), false),
                    Expect::Peer(ns("y"), pod("x", "a"), true),
                    Expect::Peer(ns("z"), pod("x", "a"), false),
                ],
            },
        ],
    },
    Case {
        name: "should support allow-all policy",
        steps: &[
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-all, namespace: x}
spec:
  podSelector: {matchLabels: {}}
  policyTypes: [Ingress]
  ingress:
  - {}
"#,
                relabel: &[],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[],
            },
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-all, namespace: x}
spec:
  podSelector: {matchLabels: {}}
  policyTypes: [Ingress]
  ingress:
  - {}
"#,
                relabel: &[],
                protocol: "TCP",
                port: 81,
                default: true,
                expect: &[],
            },
        ],
    },
    Case {
        name: "should allow ingress access on one named port",
        steps: &[
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-all, namespace: x}
spec:
  podSelector: {matchLabels: {}}
  policyTypes: [Ingress]
  ingress:
  - ports:
    - port: serve-81-tcp
"#,
                relabel: &[],
                protocol: "TCP",
                port: 81,
                default: true,
                expect: &[],
            },
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-all, namespace: x}
spec:
  podSelector: {matchLabels: {}}
  policyTypes: [Ingress]
  ingress:
  - ports:
    - port: serve-81-tcp
"#,
                relabel: &[],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[Expect::Peer(ANY, ns("x"), false)],
            },
        ],
    },
    Case {
        name: "should allow ingress access from namespace on one named port",
        steps: &[
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-ns-selector-80, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}
    ports:
    - {port: serve-80-tcp, protocol: TCP}
"#,
                relabel: &[],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[
                    Expect::Peer(ns("x"), pod("x", "a"), false),
                    Expect::Peer(ns("z"), pod("x", "a"), false),
                ],
            },
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-ns-selector-80, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}
    ports:
    - {port: serve-80-tcp, protocol: TCP}
"#,
                relabel: &[],
                protocol: "TCP",
                port: 81,
                default: true,
                expect: &[Expect::AllIngress(pod("x", "a"), false)],
            },
        ],
    },
    Case {
        name: "should allow egress access on one named port",
        steps: &[
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-egress, namespace: x}
spec:
  podSelector: {matchLabels: {}}
  policyTypes: [Egress]
  egress:
  - ports:
    - port: serve-80-tcp
"#,
                relabel: &[],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[],
            },
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-egress, namespace: x}
spec:
  podSelector: {matchLabels: {}}
  policyTypes: [Egress]
  egress:
  - ports:
    - port: serve-80-tcp
"#,
                relabel: &[],
                protocol: "TCP",
                port: 81,
                default: true,
                expect: &[Expect::Peer(ns("x"), ANY, false)],
            },
        ],
    },
    Case {
        name: "should enforce updated policy",
        steps: &[
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-all-mutate-to-deny-all, namespace: x}
spec:
  podSelector: {matchLabels: {}}
  policyTypes: [Ingress]
  ingress:
  - {}
"#,
                relabel: &[],
                protocol: "TCP",
                port: 81,
                default: true,
                expect: &[],
            },
            // The same policy updated: its ingress rules emptied.
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-all-mutate-to-deny-all, namespace: x}
spec:
  podSelector: {matchLabels: {}}
  policyTypes: [Ingress]
  ingress: []
"#,
                relabel: &[],
                protocol: "TCP",
                port: 81,
                default: true,
                expect: &[Expect::Peer(ANY, ns("x"), false)],
            },
        ],
    },
    Case {
        name: "should allow ingress access from updated namespace",
        steps: &[
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-ns-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {ns2: updated}}
"#,
                relabel: &[],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[Expect::AllIngress(pod("x", "a"), false)],
            },
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-ns-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {ns2: updated}}
"#,
                relabel: &[("namespace", "y", "ns2", Some("updated"))],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[
                    Expect::AllIngress(pod("x", "a"), false),
                    Expect::Peer(ns("y"), ANY, true),
                ],
            },
        ],
    },
    Case {
        name: "should allow ingress access from updated pod",
        steps: &[
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-pod-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {pod: b, pod2: updated}}
"#,
                relabel: &[],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[Expect::AllIngress(pod("x", "a"), false)],
            },
            // Upstream adds {pod: b, pod2: updated} to x/b; pod=b it has already.
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-pod-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {pod: b, pod2: updated}}
"#,
                relabel: &[("pod", "x/b", "pod2", Some("updated"))],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[
                    Expect::AllIngress(pod("x", "a"), false),
                    Expect::One(pod("x", "b"), pod("x", "a"), true),
                ],
            },
        ],
    },
    Case {
        name: "should deny ingress from pods on other namespaces",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: deny-empty-policy, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {}}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[
                Expect::Peer(ns("y"), ns("x"), false),
                Expect::Peer(ns("z"), ns("x"), false),
            ],
        }],
    },
    Case {
        name: "should deny ingress access to updated pod",
        steps: &[
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: deny-ingress-via-label-selector, namespace: x}
spec:
  podSelector: {matchLabels: {target: isolated}}
  policyTypes: [Ingress]
  ingress: []
"#,
                relabel: &[],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[],
            },
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: deny-ingress-via-label-selector, namespace: x}
spec:
  podSelector: {matchLabels: {target: isolated}}
  policyTypes: [Ingress]
  ingress: []
"#,
                relabel: &[("pod", "x/a", "target", Some("isolated"))],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[Expect::AllIngress(pod("x", "a"), false)],
            },
        ],
    },
    Case {
        name: "should deny egress from pods based on PodSelector",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: deny-egress-pod-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: []
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[Expect::AllEgress(pod("x", "a"), false)],
        }],
    },
    Case {
        name: "should deny egress from all pods in a namespace",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: deny-egress-ns-x, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: []
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[Expect::Peer(ns("x"), ANY, false)],
        }],
    },
    Case {
        name: "should work with Ingress, Egress specified together",
        steps: &[
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-pod-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress, Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {pod: b}}
  egress:
  - ports:
    - port: 80
"#,
                relabel: &[],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[
                    Expect::AllIngress(pod("x", "a"), false),
                    Expect::One(pod("x", "b"), pod("x", "a"), true),
                ],
            },
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-pod-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress, Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {pod: b}}
  egress:
  - ports:
    - port: 80
"#,
                relabel: &[],
                protocol: "TCP",
                port: 81,
                default: true,
                expect: &[
                    Expect::AllIngress(pod("x", "a"), false),
                    Expect::AllEgress(pod("x", "a"), false),
                    Expect::One(pod("x", "b"), pod("x", "a"), true),
                ],
            },
        ],
    },
    Case {
        name: "should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-to-ns-y-pod-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}
      podSelector: {matchLabels: {pod: a}}
---
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-from-xa-on-ya-match-selector, namespace: "y"}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "x"}}
      podSelector: {matchLabels: {pod: a}}
---
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-from-xa-on-yb-match-selector, namespace: "y"}
spec:
  podSelector: {matchLabels: {pod: b}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "x"}}
      podSelector: {matchLabels: {pod: a}}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[
                Expect::Peer(pod("x", "a"), ANY, false),
                Expect::Peer(ANY, pod("y", "a"), false),
                Expect::Peer(pod("x", "a"), pod("y", "a"), true),
                Expect::Peer(ANY, pod("y", "b"), false),
            ],
        }],
    },
    Case {
        name: "should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-to-ns-y-pod-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}
      podSelector: {matchLabels: {pod: a}}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[
                Expect::AllEgress(pod("x", "a"), false),
                Expect::One(pod("x", "a"), pod("y", "a"), true),
            ],
        }],
    },
    Case {
        name: "should enforce ingress policy allowing any port traffic to a server on a specific protocol",
        steps: &[
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-ingress-by-proto, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - ports:
    - protocol: TCP
"#,
                relabel: &[],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[],
            },
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-ingress-by-proto, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - ports:
    - protocol: TCP
"#,
                relabel: &[],
                protocol: "UDP",
                port: 80,
                default: true,
                expect: &[Expect::Peer(ANY, pod("x", "a"), false)],
            },
        ],
    },
    Case {
        name: "should enforce multiple ingress policies with ingress allow-all policy taking precedence",
        steps: &[
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-ingress-port-80, namespace: x}
spec:
  podSelector: {matchLabels: {}}
  policyTypes: [Ingress]
  ingress:
  - ports:
    - port: 80
"#,
                relabel: &[],
                protocol: "TCP",
                port: 81,
                default: true,
                expect: &[Expect::Peer(ANY, ns("x"), false)],
            },
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-ingress-port-80, namespace: x}
spec:
  podSelector: {matchLabels: {}}
  policyTypes: [Ingress]
  ingress:
  - ports:
    - port: 80
---
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-ingress, namespace: x}
spec:
  podSelector: {matchLabels: {}}
  policyTypes: [Ingress]
  ingress:
  - {}
"#,
                relabel: &[],
                protocol: "TCP",
                port: 81,
                default: true,
                expect: &[],
            },
        ],
    },
    Case {
        name: "should enforce multiple egress policies with egress allow-all policy taking precedence",
        steps: &[
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-egress-port-80, namespace: x}
spec:
  podSelector: {matchLabels: {}}
  policyTypes: [Egress]
  egress:
  - ports:
    - port: 80
"#,
                relabel: &[],
                protocol: "TCP",
                port: 81,
                default: true,
                expect: &[Expect::Peer(ns("x"), ANY, false)],
            },
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-egress-port-80, namespace: x}
spec:
  podSelector: {matchLabels: {}}
  policyTypes: [Egress]
  egress:
  - ports:
    - port: 80
---
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-egress, namespace: x}
spec:
  podSelector: {matchLabels: {}}
  policyTypes: [Egress]
  egress:
  - {}
"#,
                relabel: &[],
                protocol: "TCP",
                port: 81,
                default: true,
                expect: &[],
            },
        ],
    },
    Case {
        name: "should stop enforcing policies after they are deleted",
        steps: &[
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: deny-all, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: []
  egress: []
"#,
                relabel: &[],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[
                    Expect::Peer(ns("x"), ANY, false),
                    Expect::Peer(ANY, ns("x"), false),
                ],
            },
            // Upstream deletes every policy (cleanNetworkPolicies): none left.
            Step {
                policies: "",
                relabel: &[],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[],
            },
        ],
    },
    // Upstream's CIDR is y/b's pod IP /32: here y/b's fixed address.
    Case {
        name: "should allow egress access to server in CIDR block",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-cidr-egress-rule, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 10.250.1.3/32}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[
                Expect::AllEgress(pod("x", "a"), false),
                Expect::One(pod("x", "a"), pod("y", "b"), true),
            ],
        }],
    },
    // Upstream's CIDR is "<x/a's IP>/4" (a block holding every pod) and its
    // except x/b's IP /32: here 10.250.0.0/16 and x/b's fixed address.
    Case {
        name: "should enforce except clause while egress access to server in CIDR block",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-cidr-egress-rule, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock:
        cidr: 10.250.0.0/16
        except: [10.250.0.3/32]
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[Expect::One(pod("x", "a"), pod("x", "b"), false)],
        }],
    },
    // As the case above (CIDR 10.250.0.0/16 for "<x/a's IP>/4", x/b's fixed
    // address for its IP); step 2 is the same policy updated to x/b's /32.
    Case {
        name: "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed",
        steps: &[
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-cidr-egress-rule, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock:
        cidr: 10.250.0.0/16
        except: [10.250.0.3/32]
"#,
                relabel: &[],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[Expect::One(pod("x", "a"), pod("x", "b"), false)],
            },
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-cidr-egress-rule, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 10.250.0.3/32}
"#,
                relabel: &[],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[
                    Expect::AllEgress(pod("x", "a"), false),
                    Expect::One(pod("x", "a"), pod("x", "b"), true),
                ],
            },
        ],
    },
    Case {
        name: "should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector",
        steps: &[
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-egress-for-target, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - {}
"#,
                relabel: &[],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[],
            },
            Step {
                policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-egress-for-target, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - {}
---
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: deny-ingress-via-label-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress: []
"#,
                relabel: &[],
                protocol: "TCP",
                port: 80,
                default: true,
                expect: &[Expect::AllIngress(pod("x", "a"), false)],
            },
        ],
    },
    Case {
        name: "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: deny-ingress, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress: []
---
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-only-sctp-ingress-on-port-81, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - ports:
    - {port: 81, protocol: SCTP}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 81,
            default: true,
            expect: &[Expect::Peer(ANY, ns("x"), false)],
        }],
    },
    Case {
        name: "should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-only-sctp-ingress-on-port-80, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - ports:
    - {port: 80, protocol: SCTP}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 81,
            default: true,
            expect: &[Expect::AllIngress(pod("x", "a"), false)],
        }],
    },
    Case {
        name: "should not allow access by TCP when a policy specifies only UDP",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-only-udp-ingress-on-port-81, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - ports:
    - {port: 81, protocol: UDP}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 81,
            default: true,
            expect: &[Expect::AllIngress(pod("x", "a"), false)],
        }],
    },
    Case {
        name: "should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-client-a-via-ns-selector-for-immutable-ns-label, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[
                Expect::Peer(ns("x"), pod("x", "a"), false),
                Expect::Peer(ns("z"), pod("x", "a"), false),
            ],
        }],
    },
    Case {
        name: "should enforce policy based on NamespaceSelector with MatchExpressions using default ns label",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-ns-y-match-selector-for-immutable-ns-label, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector:
        matchExpressions:
        - {key: kubernetes.io/metadata.name, operator: NotIn, values: ["y"]}
"#,
            relabel: &[],
            protocol: "TCP",
            port: 80,
            default: true,
            expect: &[Expect::Peer(pod("x", "a"), ns("y"), false)],
        }],
    },
    // ---- Netpol [LinuxOnly]: NetworkPolicy between server and client using UDP ----
    // Same It title as the TCP case above; this is upstream's UDP context.
    Case {
        name: "should support a 'default-deny-ingress' policy",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: deny-all, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress: []
"#,
            relabel: &[],
            protocol: "UDP",
            port: 80,
            default: true,
            expect: &[Expect::Peer(ANY, ns("x"), false)],
        }],
    },
    // Same It title as the TCP case above; this is upstream's UDP context.
    Case {
        name: "should enforce policy based on Ports",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-ingress-on-port-81-ns-x, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}
    ports:
    - {port: 81, protocol: UDP}
"#,
            relabel: &[],
            protocol: "UDP",
            port: 81,
            default: true,
            expect: &[
                Expect::Peer(ns("x"), pod("x", "a"), false),
                Expect::Peer(ns("z"), pod("x", "a"), false),
            ],
        }],
    },
    // Same It title as the TCP case above; this is upstream's UDP context.
    Case {
        name: "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
        steps: &[Step {
            policies: r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-ns-y-pod-a-via-namespace-pod-selector, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}
      podSelector: {matchLabels: {pod: a}}
"#,
            relabel: &[],
            protocol: "UDP",
            port: 80,
            default: true,
            expect: &[
                Expect::AllIngress(pod("x", "a"), false),
                Expect::One(pod("y", "a"), pod("x", "a"), true),
            ],
        }],
    },
];
