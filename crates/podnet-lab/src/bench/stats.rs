//! Summary statistics of a sample of durations.

use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub median: Duration,
    pub p95: Duration,
    pub min: Duration,
    pub max: Duration,
}

impl Summary {
    /// None for an empty sample. Percentiles are nearest-rank.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let mut sorted = samples.to_vec();
        sorted.sort();
        let rank = |p: f64| {
            let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[idx - 1]
        };
        Some(Summary {
            n: sorted.len(),
            median: median(&sorted)?,
            p95: rank(0.95),
            min: *sorted.first()?,
            max: *sorted.last()?,
        })
    }
}

/// The median of a sorted sample (the mean of the middle two if even).
fn median(sorted: &[Duration]) -> Option<Duration> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:8.2} ms {:8.2} ms   {:6.2} .. {:6.2} ms",
            ms(self.median),
            ms(self.p95),
            ms(self.min),
            ms(self.max)
        )
    }
}

/// `a / b` as a float, for ratios of medians.
pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// The median of a few rates.
pub fn median_rate(rates: &[f64]) -> f64 {
    let mut sorted = rates.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The median of per-pair ratios `a[i] / b[i]`, with its uncertainty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedRatio {
    pub median: f64,
    /// A distribution-free ~95% confidence interval for the median (the
    /// order statistics of a sign test); `None` below 6 pairs, where no
    /// such interval exists.
    pub ci95: Option<(f64, f64)>,
}

/// For runs measured in alternating pairs, each ratio compares two runs
/// made back to back, so the machine's slow drift cancels out of it; the
/// interval says how far the run-to-run noise leaves the median uncertain.
pub fn paired_ratio(a: &[f64], b: &[f64]) -> PairedRatio {
    let mut ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| x / y.max(f64::MIN_POSITIVE))
        .collect();
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    // Normal approximation of the binomial: the k-th smallest and k-th
    // largest ratio bracket the median with ~95% confidence.
    let k = ((n as f64 - 1.96 * (n as f64).sqrt()) / 2.0).floor() as usize;
    PairedRatio {
        median: median_rate(&ratios),
        ci95: (k >= 1).then(|| (ratios[k - 1], ratios[n - k])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn summary_of_odd_and_even_samples() {
        let s = Summary::of(&ms_list(&[5, 1, 3])).unwrap();
        assert_eq!(s.median, Duration::from_millis(3));
        assert_eq!(
            (s.min, s.max),
            (Duration::from_millis(1), Duration::from_millis(5))
        );
        let s = Summary::of(&ms_list(&[4, 1, 3, 2])).unwrap();
        assert_eq!(s.median, Duration::from_micros(2500));
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn p95_is_nearest_rank() {
        let samples: Vec<u64> = (1..=100).collect();
        let s = Summary::of(&ms_list(&samples)).unwrap();
        assert_eq!(s.p95, Duration::from_millis(95));
        assert_eq!(
            Summary::of(&ms_list(&[7])).unwrap().p95,
            Duration::from_millis(7)
        );
    }

    #[test]
    fn ratios_and_rates() {
        assert!((ratio(Duration::from_millis(1), Duration::from_millis(4)) - 0.25).abs() < 1e-9);
        assert_eq!(median_rate(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_rate(&[]), 0.0);
        // Drift: b doubles over the run, a tracks it at 0.9.
        let drift = paired_ratio(&[0.9, 1.8, 3.6], &[1.0, 2.0, 4.0]);
        assert!((drift.median - 0.9).abs() < 1e-9);
        assert_eq!(drift.ci95, None, "3 pairs are too few for an interval");
    }

    #[test]
    fn paired_ratio_interval_brackets_the_median() {
        // Ratios 0.80, 0.81, .. 1.09 in a scrambled order.
        let a: Vec<f64> = (0..30)
            .map(|i| 0.80 + f64::from((i * 7) % 30) / 100.0)
            .collect();
        let b = vec![1.0; 30];
        let r = paired_ratio(&a, &b);
        assert!((r.median - 0.945).abs() < 1e-9);
        // n = 30: k = floor((30 - 1.96 * 5.48) / 2) = 9, so the 9th smallest
        // and the 9th largest ratio.
        let (lo, hi) = r.ci95.unwrap();
        assert!(
            (lo - 0.88).abs() < 1e-9 && (hi - 1.01).abs() < 1e-9,
            "{lo} {hi}"
        );
    }
}
