//! A training run on disk: `RUN_DIR/run.json` ([`RunInfo`]: what was trained on what, with
//! which settings, and how well), `RUN_DIR/best.bpk` (the best model by val accuracy),
//! `checkpoints/`, `history.{csv,json}`, `metrics.json` and the plots.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use models::{Backbone, Labels, Preprocessing};
use serde::{Deserialize, Serialize};

use crate::error::TrainerError;

pub use crate::checkpoint::{TrainedModel, load_best};

/// Hyper-parameters of a run. Stored in run.json; `--resume` refuses a different set
/// (a resumed run must equal an uninterrupted one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: OptimizerKind,
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
        let path = run_dir.join(RUN_JSON);
        common::write_atomic(&path, &json).map_err(TrainerError::io(path))
    }
}

/// `--optimizer`: stored in run.json as `"adam"` or `"sgd"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    #[default]
    Adam,
    /// SGD with momentum (`FitConfig::momentum`).
    Sgd,
}

impl OptimizerKind {
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Adam => "adam",
            OptimizerKind::Sgd => "sgd",
        }
    }
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The compute device: `flex` (pure-Rust CPU, default) or `cuda` (builds with `--features cuda`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimizer_keeps_its_run_json_spelling() {
        let config = FitConfig {
            epochs: 1,
            batch_size: 8,
            lr: 1e-3,
            optimizer: OptimizerKind::Sgd,
            momentum: 0.9,
            label_smoothing: 0.1,
            dropout: 0.2,
            augment: Vec::new(),
            augment_views: 1,
            fine_tune_layers: 0,
            fine_tune_epochs: 0,
            fine_tune_lr_factor: 0.1,
        };
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains("\"optimizer\":\"sgd\""), "{json}");
        // A run.json written when the optimizer was a free string still loads.
        let old = json.replace("\"sgd\"", "\"adam\"");
        assert_eq!(serde_json::from_str::<FitConfig>(&old).unwrap().optimizer, OptimizerKind::Adam);
        assert_eq!(serde_json::from_str::<FitConfig>(&json).unwrap(), config);
    }
}
