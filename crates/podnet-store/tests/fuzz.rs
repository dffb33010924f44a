//! The stores' record parsers, fuzzed (see podnet_testkit::fuzz): etcd
//! keys and values in flannel's layout, and a Node as the Kubernetes store
//! reads it.

#![allow(clippy::unwrap_used)]

use podnet_store::etcd::layout::{DEFAULT_PREFIX, parse_lease, parse_subnet_key};
use podnet_store::kube::slim_node::{SlimNode, lease};
use podnet_testkit::fuzz::{config, input};
use proptest::prelude::*;

const KEY: &[u8] = b"/podnet.io/network/subnets/10.244.3.0-24&fd00:244:0:3::-64";
const VALUE: &[u8] = br#"{"PublicIP":"192.168.1.4","PublicIPv6":"fd00:1::4","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"},"node":"node3"}"#;
const NODE: &[u8] = br#"{"metadata":{"name":"node3","resourceVersion":"7","annotations":{"podnet.io/backend-type":"vxlan","podnet.io/backend-data":"{\"VNI\":1}","podnet.io/public-ip":"192.168.1.4","podnet.io/public-ipv6":"fd00:1::4"}},"spec":{"podCIDRs":["10.244.3.0/24","fd00:244:0:3::/64"]},"status":{"images":[{"names":["x"],"sizeBytes":1}]}}"#;

proptest! {
    #![proptest_config(config())]

    #[test]
    fn etcd_key(k in input(KEY)) {
        let _ = parse_subnet_key(DEFAULT_PREFIX, &String::from_utf8_lossy(&k));
    }

    #[test]
    fn etcd_value(v in input(VALUE)) {
        let key = String::from_utf8_lossy(KEY);
        let _ = parse_lease(DEFAULT_PREFIX, &key, &v);
    }

    #[test]
    fn kube_node(n in input(NODE)) {
        if let Ok(node) = serde_json::from_slice::<SlimNode>(&n) {
            let _ = lease(&node);
        }
    }
}

/// The samples are valid: the mutations start from real inputs.
#[test]
fn the_samples_parse() {
    let key = String::from_utf8_lossy(KEY);
    assert_eq!(parse_subnet_key(DEFAULT_PREFIX, &key).unwrap().len(), 2);
    parse_lease(DEFAULT_PREFIX, &key, VALUE).unwrap();
    let node: SlimNode = serde_json::from_slice(NODE).unwrap();
    lease(&node).unwrap().unwrap();
}
