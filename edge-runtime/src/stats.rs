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

/// Frames per second over the last [`FpsMeter::WINDOW`] frames (what `--mqtt` state and the
/// `--http` page show: the current rate, not the run's average).
#[derive(Debug, Clone, Default)]
pub struct FpsMeter {
    recent: std::collections::VecDeque<std::time::Instant>,
}

impl FpsMeter {
    pub const WINDOW: usize = 30;

    pub fn tick(&mut self, now: std::time::Instant) {
        if self.recent.len() == Self::WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
    }

    pub fn fps(&self) -> f64 {
        match (self.recent.front(), self.recent.back()) {
            (Some(a), Some(b)) if self.recent.len() > 1 && b > a => {
                (self.recent.len() - 1) as f64 / b.duration_since(*a).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}
