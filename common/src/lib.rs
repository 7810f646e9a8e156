//! perch's small neutral crate (like ripgrep's `cli`): helpers that both halves need and that
//! belong to neither. Atomic, fsync-correct file writes; softmax, top-k and argmax; nearest-rank
//! percentiles; the embedded plot font. No engine, no model format: those live in `models`,
//! `edge-runtime` and `trainer`.

pub mod fs;
pub mod math;
pub mod plot;
pub mod stats;

pub use fs::{AtomicFile, write_atomic};

/// The message of a caught panic (`catch_unwind`'s payload): the loaders turn panics of the
/// engines they drive (tract, burn) on malformed files into errors that quote it.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}
pub use math::{argmax, softmax, top_k};

/// Locks `m`, recovering the data when another thread panicked while holding it: the values
/// perch shares between threads (counters, status, queues) stay meaningful after such a panic,
/// and one failed thread must not turn every later lock into a second panic.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
pub use stats::{LatencyStats, percentile};
