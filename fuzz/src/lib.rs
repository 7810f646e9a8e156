//! perch's fuzz targets: every loader that reads bytes a user, a file or a camera hands in,
//! each as `fn(&[u8])` that must return (an error is fine) and never panic, abort or hang.
//! The runner (`perch-fuzz`, see `main.rs` and `scripts/fuzz.sh`) mutates a seed corpus of real
//! files (`fuzz/corpus/TARGET/`) and replays the crashes found so far (`fuzz/regressions/`).
//!
//! Stable Rust has no coverage-guided engine without extra tooling (cargo-fuzz and
//! cargo-bolero's libFuzzer need nightly sanitizer flags), so the runner is a plain mutator
//! ([`mutate`]) over real files: structure comes from the seeds, breadth from the executions.

pub mod mutate;
pub mod seeds;
pub mod targets;

pub use targets::{TARGETS, Target, find};
