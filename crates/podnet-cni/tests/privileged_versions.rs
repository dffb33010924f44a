//! Every supported cniVersion end to end: ADD answers in that version's
//! format, CHECK and DEL accept that version's prevResult.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Node, TestNetns};
use serde_json::json;

#[test]
fn privileged_each_version_round_trips() {
    let node = Node::new();
    for (i, version) in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        .into_iter()
        .enumerate()
    {
        let mut conf = node.conf("10.244.70.0/24");
        conf["cniVersion"] = json!(version);
        // A conflist's version list may reach us; it is tolerated.
        conf["cniVersions"] = json!(["1.0.0", "1.1.0"]);
        let pod = TestNetns::new("pntest-pod");
        let cid = format!("v{i}");
        let r = node.add(&cid, &pod, &conf).expect_ok().json();
        assert_eq!(r["cniVersion"], version);
        let ip = &r["ips"][0];
        if version.starts_with("0.") {
            assert_eq!(ip["version"], "4", "{version}: {r}");
        } else {
            assert!(ip.get("version").is_none(), "{version}: {r}");
        }
        assert_eq!(
            r["interfaces"][2].get("mtu").is_some(),
            version == "1.1.0",
            "{version}: {r}"
        );
        node.check(&cid, &pod, &conf, &r).expect_ok();
        let mut del = conf.clone();
        del["prevResult"] = r;
        node.del(&cid, &pod.path(), &del).expect_ok();
    }
    assert!(node.allocated().is_empty());
}
