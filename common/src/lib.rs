//! perch's small neutral crate (like ripgrep's `cli`): helpers that both halves need and that
//! belong to neither. Atomic, fsync-correct file writes; softmax, top-k and argmax; nearest-rank
//! percentiles; the embedded plot font. No engine, no model format: those live in `models`,
//! `edge-runtime` and `trainer`.

pub mod fs;
pub mod math;
pub mod plot;
pub mod stats;

pub use fs::{AtomicFile, write_atomic};
pub use math::{argmax, softmax, top_k};
pub use stats::{LatencyStats, percentile};
