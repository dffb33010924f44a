//! Drift repair: what podnetd owns on its node, broken behind its back,
//! is back within a resync (`--resync-ms`, 1 s), and the pods reach each
//! other again: its vxlan device, its egress table, the anti-spoofing
//! table with every live pod's port in it, and a bridge gateway of a
//! subnet the node does not hold. The lab's pods are attached with no
//! `nft` on the plugin's PATH.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestLab, Thaw, log_lines, ns_of, sh, signal, wait_for};

#[test]
fn privileged_a_deleted_vxlan_device_and_egress_table_come_back() {
    let lab = TestLab::up_with(2, 1, &["--backend", "vxlan"]);
    lab.check_until_ok("vxlan lab");
    let node1 = ns_of(&lab, "nodes", 0);
    sh(&node1, "ip link del podnet.vxlan");
    wait_for("podnet.vxlan made again", || {
        sh(&node1, "ip -d link show podnet.vxlan 2>/dev/null").contains("vxlan id 1")
    });
    lab.check_until_ok("after the vxlan device was deleted");
    // Made again by hand with another VNI (its MAC and address as they
    // were): podnetd's own is put back.
    let mac = sh(&node1, "cat /sys/class/net/podnet.vxlan/address");
    let local = lab.record()["nodes"][0]["addrs"][0]
        .as_str()
        .unwrap()
        .to_owned();
    // The agent paused meanwhile: it would put its own back at once.
    let agent = lab.record()["nodes"][0]["pid"].as_i64().unwrap();
    let thaw = Thaw(vec![agent]);
    signal(&[agent], "-STOP");
    let made = sh(
        &node1,
        &format!(
            "ip link del podnet.vxlan; ip link add podnet.vxlan address {mac} \
             type vxlan id 99 dstport 8472 local {local} dev eth0 nolearning; \
             ip link set podnet.vxlan up; ip -d link show podnet.vxlan"
        ),
    );
    assert!(made.contains("vxlan id 99"), "{made}");
    drop(thaw);
    wait_for("a vxlan device with another VNI made again", || {
        sh(&node1, "ip -d link show podnet.vxlan 2>/dev/null").contains("vxlan id 1 ")
    });
    lab.check_until_ok("after the vxlan device was changed");
    assert_eq!(log_lines(&lab, "node1", "vxlan device made"), 3);

    let egress = || sh(&node1, "nft list table inet podnet 2>/dev/null");
    let whole = egress();
    assert!(
        whole.contains("masquerade") && whole.contains("notrack"),
        "{whole}"
    );
    sh(&node1, "nft flush table inet podnet");
    wait_for("a flushed egress table rewritten", || egress() == whole);
    sh(&node1, "nft delete table inet podnet");
    wait_for("a deleted egress table rewritten", || egress() == whole);
    assert_eq!(
        log_lines(&lab, "node1", "egress table was flushed or changed"),
        2
    );
    lab.check_until_ok("after the egress table was flushed and deleted");
}

#[test]
fn privileged_a_deleted_guard_table_comes_back_with_every_live_port() {
    let lab = TestLab::up(1, 2);
    let node = ns_of(&lab, "nodes", 0);
    let sets = || {
        let table = sh(&node, "nft list table bridge podnet-guard 2>/dev/null");
        // The elements, without the handles and the order nft prints them
        // in, nor the drop counters' values (a table made again counts
        // from zero).
        let mut lines: Vec<String> = table
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("packets "))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    let before = sets();
    assert!(
        before.iter().filter(|l| l.starts_with("elements")).count() >= 4,
        "{before:#?}"
    );
    sh(&node, "nft delete table bridge podnet-guard");
    wait_for("the guard table made again, both pods re-admitted", || {
        sets() == before
    });
    assert_eq!(
        log_lines(&lab, "node1", "anti-spoofing table was missing"),
        1
    );
    // A port from before ports carried their record: recorded from its
    // elements, and re-admitted like the others.
    let first_port = sh(
        &node,
        "ip -o link show | grep -o 'pn[0-9a-f]\\{12\\}' | head -1",
    );
    sh(&node, &format!("ip link set dev {first_port} alias ''"));
    wait_for("an older port's record written", || {
        sh(&node, &format!("ip link show dev {first_port}")).contains("alias podnet-guard")
    });
    sh(&node, "nft delete table bridge podnet-guard");
    wait_for("both pods re-admitted again", || sets() == before);
    // Its elements cut: put back too.
    sh(&node, "nft flush set bridge podnet-guard addrs4");
    wait_for("the cut elements re-admitted", || sets() == before);
    // Its input chain deleted: made again.
    sh(&node, "nft flush chain bridge podnet-guard input");
    sh(&node, "nft delete chain bridge podnet-guard input");
    wait_for("the input chain made again", || sets() == before);
    assert!(
        log_lines(&lab, "node1", "re-admitted from their records") >= 2,
        "each loss raised the alarm"
    );
    lab.check_until_ok("after the guard table was deleted");
}

#[test]
fn privileged_a_stale_gateway_on_the_bridge_is_removed() {
    let lab = TestLab::up(2, 1);
    let node1 = ns_of(&lab, "nodes", 0);
    // An address in the cluster CIDR, in no subnet of this node's.
    sh(&node1, "ip addr add 10.244.250.1/24 dev podnet0");
    wait_for("the stale gateway removed", || {
        !sh(&node1, "ip -o addr show dev podnet0").contains("10.244.250.1")
    });
    assert!(
        sh(&node1, "ip -o addr show dev podnet0").contains("inet "),
        "the node's own gateway stays"
    );
    lab.check_until_ok("after the stale gateway went");
}

#[test]
fn privileged_the_plugin_needs_no_nft_on_a_node_podnetd_runs() {
    // The lab attaches its pods with PATH=/nonexistent: each ADD admitted
    // its port to the table podnetd made before installing anything.
    let lab = TestLab::up(1, 2);
    let node = ns_of(&lab, "nodes", 0);
    let ports = sh(&node, "nft -j list set bridge podnet-guard macs");
    assert_eq!(
        ports.matches("\"pn").count(),
        2,
        "both ports admitted: {ports}"
    );
    let record = lab.record();
    let pods = record["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 2);
    for pod in pods {
        assert!(!pod["ips"].as_array().unwrap().is_empty(), "{pod}");
    }
    let aliases = sh(&node, "ip -o link show | grep -c 'alias podnet-guard'");
    assert_eq!(aliases, "2", "each port records its guard");
    lab.check_until_ok("pods attached without nft");
}
