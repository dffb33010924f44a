//! podnetctl's answers that need no root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const CTL: &str = env!("CARGO_BIN_EXE_podnetctl");

/// On the Kubernetes API a node leaves when its Node object is deleted:
/// `node remove` says so and changes nothing.
#[test]
fn node_remove_refuses_on_the_kubernetes_store() {
    let out = Command::new(CTL)
        .args(["node", "remove", "node1", "--store", "kube"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kubectl delete node node1"), "{err}");
}
