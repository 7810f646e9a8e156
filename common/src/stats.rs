//! Latency statistics: one nearest-rank percentile for bench reports, run summaries and
//! classify's summary line.

/// Nearest-rank percentile (`p` in 0..=100) of an ascending, non-empty list: the smallest sample
/// with at least p % of the samples at or below it (always a measured value, never interpolated).
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Nearest-rank percentile of unsorted values; 0 when empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile_sorted(&v, p)
}

/// Latency summary of a list of samples (ms).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyStats {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl LatencyStats {
    /// None when no sample is finite.
    pub fn from_samples(samples: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|s| s.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        Some(LatencyStats {
            p50: percentile_sorted(&sorted, 50.0),
            p90: percentile_sorted(&sorted, 90.0),
            p99: percentile_sorted(&sorted, 99.0),
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn nearest_rank_percentiles_of_a_shuffled_list() {
        // 1..=100 ms in a scrambled order (37 is coprime with 100, so i*37 % 100 hits every value).
        let samples: Vec<f64> = (0..100).map(|i| ((i * 37) % 100 + 1) as f64).collect();
        let s = LatencyStats::from_samples(&samples).unwrap();
        assert_eq!((s.p50, s.p90, s.p99), (50.0, 90.0, 99.0));
        assert_eq!((s.min, s.max), (1.0, 100.0));
        assert!((s.mean - 50.5).abs() < 1e-12);
        // Ten samples: p99 is the largest, p50 the 5th.
        let ten: Vec<f64> = vec![9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0, 10.0];
        let s = LatencyStats::from_samples(&ten).unwrap();
        assert_eq!((s.p50, s.p90, s.p99), (5.0, 9.0, 10.0));
        assert_eq!(LatencyStats::from_samples(&[4.2]).unwrap().p99, 4.2);
        assert!(LatencyStats::from_samples(&[]).is_none());
    }

    #[test]
    fn stats_skip_non_finite_samples() {
        let s = LatencyStats::from_samples(&[3.0, f64::NAN, 1.0, 2.0]).unwrap();
        assert_eq!((s.min, s.p50, s.max, s.mean), (1.0, 2.0, 3.0, 2.0));
        assert!(LatencyStats::from_samples(&[f64::INFINITY]).is_none());
    }
}
