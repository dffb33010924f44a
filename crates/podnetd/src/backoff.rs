//! Failing well: retries that back off, and logs that say a repeated
//! failure once, with a count, instead of once per try.

use std::future::Future;
use std::time::Duration;

use podnet_store::StoreError;

/// Retries after a failure start here and double up to the cap.
pub const BASE: Duration = Duration::from_millis(500);
pub const CAP: Duration = Duration::from_secs(10);

/// Exponential backoff, capped, with jitter; used only after failures
/// (a healthy agent keeps its normal resync period).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            failures: 0,
        }
    }

    /// The wait after one more failure: base × 2^failures, at most the
    /// cap, of which the last half is scaled by `jitter` (0..1), so that
    /// nodes that failed together do not retry together.
    pub fn failed(&mut self, jitter: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1 << self.failures.min(20))
            .min(self.cap);
        self.failures = self.failures.saturating_add(1);
        exp / 2 + exp.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
    }
}

/// What to log about one kind of failure, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// It began: log it.
    Began(String),
    /// It goes on, for another reason: log the new reason.
    Changed { now: String, after: u64 },
    /// It ended after this many failures in a row.
    Ended { failures: u64 },
}

/// Tracks one kind of failure so that it is logged when it begins, when
/// its kind changes and when it ends, never once per retry. The kind is a
/// coarse key (an error's kind, not its text, whose details may differ
/// from one try to the next).
#[derive(Debug, Default)]
pub struct Repeated {
    kind: Option<String>,
    count: u64,
}

impl Repeated {
    pub fn failed(&mut self, kind: &str, reason: String) -> Option<Report> {
        self.count += 1;
        let report = match &self.kind {
            None => Report::Began(reason),
            Some(k) if k != kind => Report::Changed {
                now: reason,
                after: self.count - 1,
            },
            Some(_) => return None,
        };
        self.kind = Some(kind.to_owned());
        Some(report)
    }

    pub fn succeeded(&mut self) -> Option<Report> {
        self.kind.take()?;
        let failures = std::mem::take(&mut self.count);
        Some(Report::Ended { failures })
    }
}

/// Runs `attempt` until the store answers: an Unavailable store is
/// retried with backoff and logged once; any other outcome is returned.
pub async fn until_available<T, F: Future<Output = Result<T, StoreError>>>(
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> Result<T, StoreError> {
    let mut backoff = Backoff::new(BASE, CAP);
    let mut failures = Repeated::default();
    loop {
        match attempt().await {
            Err(e @ StoreError::Unavailable(_)) => {
                log(what, failures.failed(e.kind(), e.to_string()));
                tokio::time::sleep(backoff.failed(fastrand::f64())).await;
            }
            other => {
                log(what, failures.succeeded());
                return other;
            }
        }
    }
}

/// Logs a [`Report`] about `what` at the right level.
pub fn log(what: &str, report: Option<Report>) {
    match report {
        Some(Report::Began(why)) => {
            tracing::warn!("{what}: {why} (retrying with backoff; repeats are counted, not logged)")
        }
        Some(Report::Changed { now, after }) => {
            tracing::warn!("{what}: now {now} (after {after} failures)")
        }
        Some(Report::Ended { failures }) => {
            tracing::info!("{what}: recovered after {failures} failures")
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(S / 2, S * 8);
        let waits: Vec<Duration> = (0..6).map(|_| b.failed(1.0)).collect();
        assert_eq!(waits, [S / 2, S, S * 2, S * 4, S * 8, S * 8]);
        assert_eq!(b.failed(0.0), S * 4, "jitter takes at most half");
        b.succeeded();
        assert_eq!(b.failed(1.0), S / 2);
    }

    #[test]
    fn a_repeated_failure_is_reported_once_per_change() {
        let mut r = Repeated::default();
        assert_eq!(r.succeeded(), None);
        assert_eq!(
            r.failed("unavailable", "down: 1".into()),
            Some(Report::Began("down: 1".into()))
        );
        assert_eq!(r.failed("unavailable", "down: 2".into()), None);
        assert_eq!(r.failed("unavailable", "down: 3".into()), None);
        assert_eq!(
            r.failed("corrupt", "bad".into()),
            Some(Report::Changed {
                now: "bad".into(),
                after: 3
            })
        );
        assert_eq!(r.succeeded(), Some(Report::Ended { failures: 4 }));
        assert_eq!(r.succeeded(), None);
    }
}
