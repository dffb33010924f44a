//! Failing well: retries that back off, and logs that say a repeated
//! failure once, with a count, instead of once per try.

use std::time::Duration;

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
/// its reason changes and when it ends, never once per retry.
#[derive(Debug, Default)]
pub struct Repeated {
    reason: Option<String>,
    count: u64,
}

impl Repeated {
    pub fn failed(&mut self, reason: String) -> Option<Report> {
        self.count += 1;
        let report = match &self.reason {
            None => Report::Began(reason.clone()),
            Some(r) if *r != reason => Report::Changed {
                now: reason.clone(),
                after: self.count - 1,
            },
            Some(_) => return None,
        };
        self.reason = Some(reason);
        Some(report)
    }

    pub fn succeeded(&mut self) -> Option<Report> {
        self.reason.take()?;
        let failures = std::mem::take(&mut self.count);
        Some(Report::Ended { failures })
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
        assert_eq!(r.failed("down".into()), Some(Report::Began("down".into())));
        assert_eq!(r.failed("down".into()), None);
        assert_eq!(r.failed("down".into()), None);
        assert_eq!(
            r.failed("refused".into()),
            Some(Report::Changed {
                now: "refused".into(),
                after: 3
            })
        );
        assert_eq!(r.succeeded(), Some(Report::Ended { failures: 4 }));
        assert_eq!(r.succeeded(), None);
    }
}
