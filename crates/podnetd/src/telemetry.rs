//! Health and Prometheus metrics. The agent and the reclaimer record what
//! they do here; a small HTTP server answers `/healthz` (the loop is
//! alive), `/readyz` (lease held, subnet file written, peers converged)
//! and `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

pub struct Telemetry {
    registry: Registry,
    pub reconcile_seconds: Histogram,
    last_success: Gauge<f64, AtomicU64>,
    pub peers: Gauge,
    pub routes: Gauge,
    pub neighbours: Gauge,
    store_errors: Family<Labels, Counter>,
    lease_expiry: Gauge<f64, AtomicU64>,
    pub drift_repairs: Counter,
    reconciles: Family<Labels, Counter>,
    /// Guarded ports found without their elements or hook, re-admitted.
    pub guard_readmitted: Counter,
    guard_drops: Family<Labels, Counter>,
    ipam_pool: Family<Labels, Gauge>,
    ipam_allocated: Family<Labels, Gauge>,
    pub policy_generation: Gauge,
    pub policy_rules: Gauge,
    pub policy_elements: Gauge,
    policy_updates: Family<Labels, Counter>,
    policy_handoffs: Family<Labels, Counter>,
    started: Instant,
    /// When the loop last turned, in ms since `started` (0: not running).
    heartbeat_ms: AtomicU64,
    /// The loop may be this long without turning before it counts as hung.
    stall: Duration,
    ready: AtomicBool,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Telemetry {
    /// `resync`: how often the loop turns at the least.
    pub fn new(resync: Duration) -> Arc<Telemetry> {
        let mut registry = Registry::with_prefix("podnet");
        let t = Telemetry {
            registry: Registry::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            last_success: Gauge::default(),
            peers: Gauge::default(),
            routes: Gauge::default(),
            neighbours: Gauge::default(),
            store_errors: Family::default(),
            lease_expiry: Gauge::default(),
            drift_repairs: Counter::default(),
            reconciles: Family::default(),
            guard_readmitted: Counter::default(),
            guard_drops: Family::default(),
            ipam_pool: Family::default(),
            ipam_allocated: Family::default(),
            policy_generation: Gauge::default(),
            policy_rules: Gauge::default(),
            policy_elements: Gauge::default(),
            policy_updates: Family::default(),
            policy_handoffs: Family::default(),
            started: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            stall: (resync * 5).max(Duration::from_secs(30)),
            ready: AtomicBool::new(false),
        };
        registry.register(
            "reconcile_duration_seconds",
            "Time to compute and apply the datapath",
            t.reconcile_seconds.clone(),
        );
        registry.register(
            "reconcile_last_success_timestamp_seconds",
            "When a reconcile last succeeded (Unix time)",
            t.last_success.clone(),
        );
        registry.register("peers", "Peers this node routes to", t.peers.clone());
        registry.register("routes", "Peer routes programmed", t.routes.clone());
        registry.register(
            "neighbour_entries",
            "vxlan neighbour and FDB entries programmed",
            t.neighbours.clone(),
        );
        registry.register(
            "store_errors",
            "Store errors, by kind",
            t.store_errors.clone(),
        );
        registry.register(
            "lease_expiry_timestamp_seconds",
            "When this node's lease expires unless renewed (Unix time)",
            t.lease_expiry.clone(),
        );
        registry.register(
            "drift_repairs",
            "Kernel objects restored after they drifted from the desired state",
            t.drift_repairs.clone(),
        );
        registry.register(
            "reconciles",
            "Full reconciles (the kernel read and compared), by what caused them",
            t.reconciles.clone(),
        );
        registry.register(
            "guard_readmitted_ports",
            "Guarded ports found without their anti-spoofing elements or hook, and re-admitted",
            t.guard_readmitted.clone(),
        );
        registry.register(
            "guard_dropped_frames",
            "Frames the anti-spoofing guard dropped, by reason",
            t.guard_drops.clone(),
        );
        registry.register(
            "ipam_pool_addresses",
            "Addresses the built-in IPAM can hand out, per network",
            t.ipam_pool.clone(),
        );
        registry.register(
            "ipam_allocated_addresses",
            "Addresses the built-in IPAM has handed out, per network",
            t.ipam_allocated.clone(),
        );
        registry.register(
            "policy_generation",
            "NetworkPolicy rulesets written since podnetd started",
            t.policy_generation.clone(),
        );
        registry.register(
            "policy_rules",
            "NetworkPolicy rules in this node's table",
            t.policy_rules.clone(),
        );
        registry.register(
            "policy_set_elements",
            "NetworkPolicy set elements in this node's table",
            t.policy_elements.clone(),
        );
        registry.register(
            "policy_updates",
            "NetworkPolicy table updates, by how (elements, whole)",
            t.policy_updates.clone(),
        );
        registry.register(
            "policy_handoffs",
            "Pods the plugin's ADD handed over, by outcome (placed, refused)",
            t.policy_handoffs.clone(),
        );
        let build: Family<Labels, Gauge> = Family::default();
        build
            .get_or_create(&vec![("version".into(), env!("CARGO_PKG_VERSION").into())])
            .set(1);
        registry.register("build_info", "podnetd's version", build);
        Arc::new(Telemetry { registry, ..t })
    }

    pub fn beat(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.heartbeat_ms.store(ms.max(1), Ordering::Relaxed);
    }

    pub fn reconciled(&self, took: Duration) {
        self.reconcile_seconds.observe(took.as_secs_f64());
        self.last_success.set(unix_now());
        self.ready.store(true, Ordering::Relaxed);
    }

    /// Counts a full reconcile, by its cause.
    pub fn reconcile_caused(&self, cause: &str) {
        self.reconciles
            .get_or_create(&vec![("cause".into(), cause.into())])
            .inc();
    }

    /// Adds `frames` dropped for `reason` since the last call.
    pub fn guard_dropped(&self, reason: &str, frames: u64) {
        self.guard_drops
            .get_or_create(&vec![("reason".into(), reason.into())])
            .inc_by(frames);
    }

    /// Counts a policy table update, by how it was made.
    pub fn policy_updated(&self, how: &str) {
        self.policy_updates
            .get_or_create(&vec![("how".into(), how.into())])
            .inc();
    }

    /// Counts an ADD's handoff, by its outcome.
    pub fn policy_handoff(&self, outcome: &str) {
        self.policy_handoffs
            .get_or_create(&vec![("outcome".into(), outcome.into())])
            .inc();
    }

    pub fn store_error(&self, kind: &str) {
        self.store_errors
            .get_or_create(&vec![("kind".into(), kind.into())])
            .inc();
    }

    /// The lease's expiry (Unix seconds); a lease that never expires on
    /// its own (the Kubernetes store) leaves the gauge alone.
    pub fn lease_expires(&self, at: u64) {
        if at != u64::MAX {
            self.lease_expiry.set(at as f64);
        }
    }

    pub fn ipam(&self, network: &str, pool: u64, allocated: u64) {
        let label = vec![("network".into(), network.into())];
        self.ipam_pool.get_or_create(&label).set(pool as i64);
        self.ipam_allocated
            .get_or_create(&label)
            .set(allocated as i64);
    }

    /// Alive: starting up (waiting for the store or podCIDRs is not
    /// death), or the loop turned recently.
    fn alive(&self) -> bool {
        let beat = self.heartbeat_ms.load(Ordering::Relaxed);
        let now = self.started.elapsed().as_millis() as u64;
        beat == 0 || Duration::from_millis(now.saturating_sub(beat)) < self.stall
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves health on `health` and metrics on `metrics` (either may be off).
pub async fn serve(t: Arc<Telemetry>, health: Listen, metrics: Listen) -> Result<()> {
    let health_app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(t.clone());
    let metrics_app = Router::new()
        .route("/metrics", get(metrics_page))
        .with_state(t);
    for (Listen(addr), app, what) in [
        (health, health_app, "--health-addr"),
        (metrics, metrics_app, "--metrics-addr"),
    ] {
        let Some(addr) = addr else { continue };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("{what} {addr}"))?;
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    Ok(())
}

async fn healthz(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    match t.alive() {
        true => (StatusCode::OK, "ok\n"),
        false => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent's loop has not turned\n",
        ),
    }
}

async fn readyz(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    match t.ready.load(Ordering::Relaxed) {
        true => (StatusCode::OK, "ok\n"),
        false => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not yet: lease, subnet file or routes to peers pending\n",
        ),
    }
}

async fn metrics_page(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        t.encode(),
    )
}

/// A listen address that may be off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

/// `--health-addr`, `--metrics-addr`: `0` turns it off; `:9412` listens
/// on every address.
pub fn parse_addr(s: &str) -> Result<Listen, String> {
    let addr = match s {
        "0" | "" => return Ok(Listen(None)),
        _ if s.starts_with(':') => format!("0.0.0.0{s}").parse(),
        _ => s.parse(),
    };
    addr.map(|a| Listen(Some(a)))
        .map_err(|e| format!("{s}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_off() {
        let on = |a: &str| Listen(Some(a.parse().unwrap()));
        assert_eq!(parse_addr("0").unwrap(), Listen(None));
        assert_eq!(parse_addr(":9412").unwrap(), on("0.0.0.0:9412"));
        assert_eq!(parse_addr("127.0.0.1:9411").unwrap(), on("127.0.0.1:9411"));
        assert!(parse_addr("nope").is_err());
    }

    #[test]
    fn the_page_names_every_metric_with_the_prefix() {
        let t = Telemetry::new(Duration::from_secs(1));
        t.store_error("unavailable");
        t.ipam("podnet", 253, 2);
        t.lease_expires(2_000_000_000);
        t.reconciled(Duration::from_millis(3));
        let page = t.encode();
        for name in [
            "podnet_reconcile_duration_seconds_bucket",
            "podnet_reconcile_last_success_timestamp_seconds",
            "podnet_peers",
            "podnet_routes",
            "podnet_neighbour_entries",
            "podnet_store_errors_total{kind=\"unavailable\"} 1",
            "podnet_lease_expiry_timestamp_seconds 2000000000",
            "podnet_drift_repairs_total",
            "podnet_ipam_pool_addresses{network=\"podnet\"} 253",
            "podnet_ipam_allocated_addresses{network=\"podnet\"} 2",
            "podnet_build_info{version=",
        ] {
            assert!(page.contains(name), "{name} missing from:\n{page}");
        }
    }

    #[test]
    fn alive_while_starting_and_while_the_loop_turns() {
        let t = Telemetry::new(Duration::from_secs(1));
        assert!(t.alive());
        t.beat();
        assert!(t.alive());
        t.heartbeat_ms.store(1, Ordering::Relaxed);
        let t2 = Telemetry {
            stall: Duration::ZERO,
            ..Arc::try_unwrap(t).ok().unwrap()
        };
        assert!(!t2.alive());
    }
}
