//! Every lab agent's health and Prometheus metrics, scraped from inside
//! its node as Prometheus and kubelet's probes would, checked against
//! what the lab holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::TestLab;

/// `GET path` on 127.0.0.1:`port` inside node namespace `ns`.
fn get(ns: &str, port: u16, path: &str) -> (u16, String) {
    podnet_testkit::http_get(&format!("/var/run/netns/{ns}"), port, path)
        .unwrap_or_else(|| panic!("{ns}: nothing answered {path} on port {port}"))
}

/// The value of the sample named exactly `name` (with its labels).
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `ns`'s metrics until `ok` holds for every named sample.
fn until(ns: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let (code, page) = get(ns, 9412, "/metrics");
        if code == 200 && ok(&page) {
            eprintln!("{ns}: {what} after {:?}", started.elapsed());
            return page;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}:\n{page}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn privileged_every_agent_reports_health_and_metrics_that_match_the_lab() {
    let lab = TestLab::up(3, 2);
    lab.check_until_ok("3 x 2 lab");
    let record = lab.record();
    let nodes: Vec<String> = record["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["ns"].as_str().unwrap().to_owned())
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let build = format!(
        "podnet_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    for ns in &nodes {
        assert_eq!(get(ns, 9411, "/healthz").0, 200, "{ns} /healthz");
        assert_eq!(get(ns, 9411, "/readyz").0, 200, "{ns} /readyz");
        let page = until(ns, "pool and pods", |p| {
            sample(p, "podnet_ipam_allocated_addresses{network=\"podnet\"}") == Some(2.0)
        });
        assert_eq!(sample(&page, "podnet_peers"), Some(2.0), "{page}");
        assert_eq!(sample(&page, "podnet_routes"), Some(2.0), "{page}");
        assert_eq!(
            sample(&page, "podnet_ipam_pool_addresses{network=\"podnet\"}"),
            Some(253.0),
            "{page}"
        );
        assert_eq!(sample(&page, &build), Some(1.0), "{page}");
        assert!(sample(&page, "podnet_reconcile_duration_seconds_count").unwrap() >= 1.0);
        assert!(
            sample(&page, "podnet_reconcile_last_success_timestamp_seconds").unwrap() > now - 600.0
        );
        assert!(sample(&page, "podnet_lease_expiry_timestamp_seconds").unwrap() > now);
    }

    // A route deleted by hand is put back, and counted as a repair.
    let node1 = &nodes[0];
    let routes = common::sh(node1, "ip route show proto 112 | head -1 | cut -d' ' -f1");
    assert!(!routes.is_empty(), "node1 has no podnet route");
    common::sh(node1, &format!("ip route del {routes} proto 112"));
    until(node1, "a drift repair counted", |p| {
        sample(p, "podnet_drift_repairs_total").is_some_and(|v| v >= 1.0)
    });

    let (ok, status) = lab.json(&["status"]);
    assert!(ok, "{status:#}");
    for n in status["nodes"].as_array().unwrap() {
        assert_eq!(n["ready"], true, "{n:#}");
    }
}
