//! The ONE error type of the trainer library. Every message names the file involved and says
//! what to do about it; the binary only adds context and prints it.
//! (Shared by all trainer modules: add variants, never remove or rename one.)

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    #[error("cannot read or write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error(
        "no space left on the device holding {path}: free some space (or write to another disk) and run the \
         command again; `trainer fit --resume` continues a run from its last complete checkpoint"
    )]
    NoSpace { path: PathBuf },

    #[error(transparent)]
    Models(#[from] models::ModelsError),

    // ---- backbone weights (trainer::backbone) ----
    #[error(
        "weights file {path} not found: pass --weights-dir DIR (or set PERCH_WEIGHTS=DIR) \
         to a folder holding {file}"
    )]
    WeightsMissing { path: PathBuf, file: String },

    #[error(
        "cannot download {file} from {url}: {reason}. Without internet, copy {file} into a folder \
         and pass --weights-dir DIR (or set PERCH_WEIGHTS=DIR); PERCH_WEIGHTS_URL changes the download URL"
    )]
    WeightsDownload { file: String, url: String, reason: String },

    #[error(
        "weights file {path} has sha256 {actual}, expected {expected}: the file is corrupt or a different model; delete it and fetch it again"
    )]
    WeightsChecksum { path: PathBuf, expected: String, actual: String },

    #[error(
        "weights file {path} does not fit {backbone}: tensor '{tensor}' has shape {found:?}, the model needs {expected:?}"
    )]
    WeightsShape { path: PathBuf, backbone: String, tensor: String, expected: Vec<usize>, found: Vec<usize> },

    #[error("weights file {path} does not fit {backbone}: tensor '{tensor}' is missing{hint}")]
    WeightsTensorMissing { path: PathBuf, backbone: String, tensor: String, hint: String },

    #[error("cannot load weights file {path}: {reason}")]
    WeightsFormat { path: PathBuf, reason: String },

    #[error("{backbone} has no ImageNet classifier loaded (it was built without ImageNet weights)")]
    NoImagenetClassifier { backbone: String },

    // ---- data, fitting, checkpoints, runs (trainer::{data,fit,checkpoint,run}) ----
    #[error("dataset {path}: {reason}")]
    Dataset { path: PathBuf, reason: String },

    #[error("invalid setting: {0}")]
    InvalidArgument(String),

    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },

    #[error("run {path}: {reason}")]
    Run { path: PathBuf, reason: String },

    #[error("feature cache {path}: {reason}")]
    Cache { path: PathBuf, reason: String },

    #[error("cannot draw {path}: {reason}")]
    Plot { path: PathBuf, reason: String },

    #[error("--frozen-engine {engine}: {reason}")]
    FrozenEngine { engine: String, reason: String },

    #[error("--device {device}: {reason}")]
    Device { device: String, reason: String },

    // ---- export (trainer::export) ----
    #[error("cannot export: {0}")]
    ExportInvalid(String),

    #[error(
        "no calibration images: none of the run's training images in {dir} could be read ({skipped} skipped); \
         int8 export calibrates on them: check the run's data folder or export with --precision fp32"
    )]
    CalibrationEmpty { dir: PathBuf, skipped: usize },

    #[error("tract cannot run the exported model ({what}): {reason}")]
    ExportTract { what: String, reason: String },

    #[error(
        "accuracy gate failed: {form} scores {accuracy:.2}% on the validation set vs {reference:.2}% for fp32, \
         a drop of {drop:.2} points > --max-drop {max_drop}; nothing was written to {out}. Try \
         --calibration-method percentile or entropy, more --calibration-images, or --precision fp32"
    )]
    AccuracyGate { form: String, accuracy: f64, reference: f64, drop: f64, max_drop: f64, out: PathBuf },
}

impl TrainerError {
    /// An I/O error on `path` (keeps call sites short: `.map_err(TrainerError::io(path))`); a
    /// full disk becomes [`TrainerError::NoSpace`].
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainerError {
        let path = path.into();
        move |source| match source.kind() {
            std::io::ErrorKind::StorageFull => TrainerError::NoSpace { path },
            _ => TrainerError::Io { path, source },
        }
    }

    /// Whether a message from a library that only hands out text (burn's recorders) reports a
    /// full disk (ENOSPC).
    pub fn is_no_space(reason: &str) -> bool {
        reason.contains("os error 28") || reason.contains("No space left on device")
    }
}
