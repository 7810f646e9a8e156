//! Latency percentiles for run summaries (classify and the streaming loop), by the one
//! nearest-rank definition in `common::stats`.

/// Collected latencies in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<f64>);

impl Latencies {
    pub fn push(&mut self, ms: f64) {
        self.0.push(ms);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Nearest-rank percentile (`q` in 0..=100); 0 when empty.
    pub fn percentile(&self, q: f64) -> f64 {
        percentile(&self.0, q)
    }
}

pub use common::stats::percentile;
