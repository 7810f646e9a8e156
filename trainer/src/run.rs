//! A training run on disk: `RUN_DIR/run.json` ([`RunInfo`]: what was trained on what, with
//! which settings, and how well), `RUN_DIR/best.bpk` (the best model by val accuracy),
//! `checkpoints/`, `history.{csv,json}`, `metrics.json` and the plots.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use models::{Backbone, Labels, Preprocessing};
use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomic;
use crate::error::TrainerError;

pub use crate::checkpoint::{TrainedModel, load_best};

/// Hyper-parameters of a run. Stored in run.json; `--resume` refuses a different set
/// (a resumed run must equal an uninterrupted one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: String,
    pub momentum: f64,
    pub label_smoothing: f32,
    pub dropout: f64,
    /// Augmentations (flip, rotate, zoom, crop); empty: none.
    pub augment: Vec<String>,
    /// Augmented views cached per training image (only with `augment`).
    pub augment_views: usize,
    pub fine_tune_layers: usize,
    pub fine_tune_epochs: usize,
    pub fine_tune_lr_factor: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub backbone: Backbone,
    pub labels: Labels,
    pub preprocessing: Preprocessing,
    /// Best val accuracy so far (final once `finished`).
    pub val_accuracy: f64,
    /// Epoch of `best.bpk` (0: none yet).
    pub best_epoch: usize,
    pub dataset_fingerprint: String,
    pub weights_sha256: Option<String>,
    pub data_dir: PathBuf,
    pub val_split: Option<f32>,
    pub seed: u64,
    pub limit_per_class: Option<usize>,
    pub config: FitConfig,
    /// Images skipped (not images, undecodable), listed in run.json for the user.
    pub skipped: Vec<(PathBuf, String)>,
    pub train_images: usize,
    pub val_images: usize,
    pub finished: bool,
}

pub const RUN_JSON: &str = "run.json";
pub const BEST_MODEL: &str = "best.bpk";

impl RunInfo {
    pub fn read(run_dir: &Path) -> Result<Self, TrainerError> {
        let path = run_dir.join(RUN_JSON);
        let text = std::fs::read_to_string(&path).map_err(|e| TrainerError::Run {
            path: path.clone(),
            reason: format!("{e}: is this a `trainer fit --out` folder? (run `trainer fit` first)"),
        })?;
        serde_json::from_str(&text).map_err(|e| TrainerError::Run { path, reason: format!("unreadable run.json: {e}") })
    }

    pub fn write(&self, run_dir: &Path) -> Result<(), TrainerError> {
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        write_atomic(&run_dir.join(RUN_JSON), &json)
    }
}

/// The compute device: `flex` (pure-Rust CPU, default) or `cuda` (builds with `--features cuda`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DeviceKind {
    #[default]
    Flex,
    #[cfg(feature = "cuda")]
    Cuda,
}

impl DeviceKind {
    pub fn device(self) -> Device {
        match self {
            DeviceKind::Flex => Device::flex(),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => Device::cuda(0),
        }
    }
}
