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
    /// Loss weights per class (run.json files from before the flag read as `none`).
    #[serde(default)]
    pub class_weights: ClassWeights,
    /// `--refit`: after val has chosen the epoch, train that schedule again on train + val.
    #[serde(default)]
    pub refit: bool,
}

/// `--class-weights`: `none`, or `auto` = total / (classes x class size) per class (rare
/// classes weigh more in the training loss), the "balanced" weighting of scikit-learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeights {
    #[default]
    None,
    Auto,
}

impl ClassWeights {
    /// The weights for these per-class training image counts (empty for `None`).
    pub fn weights(self, counts: &[usize]) -> Vec<f32> {
        match self {
            ClassWeights::None => Vec::new(),
            ClassWeights::Auto => {
                let total: usize = counts.iter().sum();
                let k = counts.len().max(1);
                counts.iter().map(|&n| total as f32 / (k * n.max(1)) as f32).collect()
            }
        }
    }
}

/// A warning when the largest class has at least `IMBALANCE_RATIO` times the images of the
/// smallest (None when the classes are close enough in size, or weights are on).
pub const IMBALANCE_RATIO: f64 = 3.0;

pub fn imbalance_warning(names: &[String], counts: &[usize], weights: ClassWeights) -> Option<String> {
    let (big, &nb) = counts.iter().enumerate().max_by_key(|(_, n)| **n)?;
    let (small, &ns) = counts.iter().enumerate().min_by_key(|(_, n)| **n)?;
    let ratio = nb as f64 / ns.max(1) as f64;
    (ratio >= IMBALANCE_RATIO && weights == ClassWeights::None).then(|| {
        format!(
            "classes differ a lot in size: '{}' has {nb} training images, '{}' {ns} ({ratio:.1}x); the model will \
             favour the large classes. --class-weights auto weighs the loss by 1/class size (per-class recall is in \
             metrics.json)",
            names[big], names[small]
        )
    })
}

/// A warning naming the classes that have no validation images: val accuracy, and so the
/// choice of the best epoch, cannot see how the model does on them.
pub fn unvalidated_warning(names: &[String], val_counts: &[usize]) -> Option<String> {
    let missing: Vec<&str> =
        names.iter().zip(val_counts).filter(|(_, n)| **n == 0).map(|(name, _)| name.as_str()).collect();
    (!missing.is_empty()).then(|| {
        format!(
            "no validation images for {}: val accuracy, which picks the best epoch, does not measure {}; put a few \
             photos in val/<class>/ (with --val-split a class needs at least 2 images to give one to val)",
            missing.iter().map(|m| format!("'{m}'")).collect::<Vec<_>>().join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        )
    })
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
    /// Images of `DIR/test/` (0 without one; older run.json files lack the field).
    #[serde(default)]
    pub test_images: usize,
    /// Accuracy of the best model on `DIR/test/`, scored once at the end (never used to choose).
    #[serde(default)]
    pub test_accuracy: Option<f64>,
    /// Class weights of the loss (`--class-weights auto`; empty: unweighted).
    #[serde(default)]
    pub class_weights: Vec<f32>,
    /// What ran the frozen backbone pass this time (None: every feature came from the cache).
    #[serde(default)]
    pub frozen_engine: Option<crate::frozen::FrozenEngine>,
    /// How the splits were formed: 0 (a run.json without the field, written before held-out
    /// validation) took `DIR/test/` as the validation split when `DIR/val/` was missing; 1
    /// ([`SPLIT_VERSION`]) holds validation out of `train/` and scores `test/` once.
    #[serde(default)]
    pub split_version: u32,
    /// `--refit`: `best.bpk` was trained again from scratch on train + val for this many epochs
    /// (the best epoch val chose); the model val chose is `selected.bpk`, and `val_accuracy` is
    /// its score. None: no refit (yet).
    #[serde(default)]
    pub refit_epochs: Option<usize>,
}

/// See [`RunInfo::split_version`].
pub const SPLIT_VERSION: u32 = 1;

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

/// The compute device: `flex` (pure-Rust CPU, default), `cuda` (NVIDIA, a build with
/// `--features cuda`) or `wgpu` (Vulkan/Metal, a build with `--features wgpu`). Every kind
/// exists in every build, so `--device cuda` on a CPU-only binary is a clear error, not an
/// unknown value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    #[default]
    Flex,
    Cuda,
    Wgpu,
}

impl DeviceKind {
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Flex => "flex",
            DeviceKind::Cuda => "cuda",
            DeviceKind::Wgpu => "wgpu",
        }
    }

    /// Whether this binary was built with the backend of `self`.
    pub fn compiled(self) -> bool {
        match self {
            DeviceKind::Flex => true,
            DeviceKind::Cuda => cfg!(feature = "cuda"),
            DeviceKind::Wgpu => cfg!(feature = "wgpu"),
        }
    }

    /// The burn device, checked: a GPU kind runs one small operation first, so a missing
    /// feature, driver or GPU is an error here rather than a panic in the middle of a run.
    pub fn device(self) -> Result<Device, TrainerError> {
        let err = |reason: String| TrainerError::Device { device: self.name().into(), reason };
        if !self.compiled() {
            let feature = self.name();
            let seed = if self == DeviceKind::Cuda { "bash scripts/seed-llvm.sh && " } else { "" };
            return Err(err(format!(
                "this trainer was built without the {feature} feature: build it with `{seed}cargo build --release \
                 -p trainer --features {feature}`, or use --device flex (CPU)"
            )));
        }
        match self {
            DeviceKind::Flex => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            DeviceKind::Wgpu => {
                let (device, setup) = Device::wgpu_options().init_with_setup().map_err(|e| {
                    err(format!("no usable GPU adapter ({e}): wgpu needs a Vulkan (Linux) or Metal (macOS) driver"))
                })?;
                let info = setup.adapter.get_info();
                tracing::info!(adapter = %info.name, backend = ?info.backend, kind = ?info.device_type, "wgpu device");
                if info.device_type == burn::tensor::wgpu::wgpu::DeviceType::Cpu {
                    // What wgpu falls back to on a box without the GPU's Vulkan driver (lavapipe,
                    // llvmpipe): it works, several times slower than --device flex.
                    tracing::warn!(
                        "wgpu found no GPU, only {} (a Vulkan driver that runs on the CPU, slower than --device flex): \
                         install the GPU's Vulkan driver (NVIDIA: its driver; AMD/Intel: mesa-vulkan-drivers), or \
                         use --device flex",
                        info.name
                    );
                }
                Ok(device)
            }
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => {
                let device = probe(Device::cuda(0)).map_err(|panic| {
                    err(format!(
                        "no CUDA GPU could be used ({panic}): cuda needs an NVIDIA GPU and its driver (libcuda.so); \
                         `nvidia-smi` should list the GPU"
                    ))
                })?;
                // The probe ran on GPU 0, so the driver is loaded: name it, as --device wgpu names
                // its adapter (a box with two GPUs shows which one trains).
                match cudarc::driver::CudaContext::new(0).and_then(|c| Ok((c.name()?, c.total_mem()?))) {
                    Ok((name, bytes)) => {
                        tracing::info!(gpu = %name, memory_gib = format!("{:.1}", bytes as f64 / (1u64 << 30) as f64), "cuda device 0")
                    }
                    Err(e) => tracing::warn!("cuda device 0 works but its name could not be read: {e}"),
                }
                Ok(device)
            }
            #[allow(unreachable_patterns)]
            _ => Err(err("not compiled in".into())),
        }
    }
}

/// Runs one tiny operation on `device`; burn's GPU runtimes panic when no driver or device is
/// there. The panic hook is replaced meanwhile, so the user sees an error, not a backtrace, and it
/// keeps the first panic's message from any thread: cubecl initialises CUDA on its own server
/// thread, and what reaches this one is only "RecvError" from the channel that thread dropped.
#[cfg(feature = "cuda")]
fn probe(device: Device) -> Result<Device, String> {
    use std::sync::{Arc, Mutex};
    let first: Arc<Mutex<Option<String>>> = Arc::default();
    let seen = Arc::clone(&first);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let mut slot = common::lock(&seen);
        if slot.is_none() {
            *slot = Some(common::panic_message(info.payload()));
        }
    }));
    let result =
        std::panic::catch_unwind(|| crate::head::tensor_values(burn::tensor::Tensor::<1>::ones([4], &device).sum()));
    std::panic::set_hook(hook);
    // cudarc's "cannot load libcuda" lists ~35 library names it tried; the first line says it.
    let first = common::lock(&first)
        .take()
        .map(|m| m.split(" - searched for library names").next().unwrap_or_default().to_string());
    match result {
        Ok(v) if v == [4.0] => Ok(device),
        Ok(other) => Err(format!("1+1+1+1 gave {other:?}")),
        Err(_) => Err(first.unwrap_or_else(|| "the runtime panicked".into())),
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
            class_weights: ClassWeights::None,
            refit: false,
        };
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains("\"optimizer\":\"sgd\""), "{json}");
        // A run.json written when the optimizer was a free string still loads.
        let old = json.replace("\"sgd\"", "\"adam\"");
        assert_eq!(serde_json::from_str::<FitConfig>(&old).unwrap().optimizer, OptimizerKind::Adam);
        assert_eq!(serde_json::from_str::<FitConfig>(&json).unwrap(), config);
        // run.json files from before --class-weights read as unweighted.
        let old = json.replace(",\"class_weights\":\"none\"", "");
        assert_ne!(old, json);
        assert_eq!(serde_json::from_str::<FitConfig>(&old).unwrap().class_weights, ClassWeights::None);
    }

    #[test]
    fn auto_class_weights_balance_the_classes_and_imbalance_is_warned() {
        let w = ClassWeights::Auto.weights(&[300, 100]);
        assert_eq!(w, vec![400.0 / 600.0, 2.0]);
        // Weighted counts are equal: 300 * 0.667 == 100 * 2.
        assert!((300.0 * w[0] - 100.0 * w[1]).abs() < 1e-3);
        assert!(ClassWeights::None.weights(&[3, 1]).is_empty());
        let names = vec!["cat".to_string(), "dog".to_string()];
        let warn = imbalance_warning(&names, &[300, 100], ClassWeights::None).unwrap();
        assert!(
            warn.contains("'cat' has 300") && warn.contains("'dog' 100") && warn.contains("--class-weights auto"),
            "{warn}"
        );
        assert!(imbalance_warning(&names, &[300, 100], ClassWeights::Auto).is_none());
        assert!(imbalance_warning(&names, &[120, 100], ClassWeights::None).is_none());
    }

    #[test]
    fn classes_without_validation_images_are_named() {
        let names: Vec<String> = ["ants", "bees", "wasps"].map(String::from).to_vec();
        assert!(unvalidated_warning(&names, &[3, 2, 1]).is_none());
        let warn = unvalidated_warning(&names, &[3, 0, 0]).unwrap();
        assert!(warn.starts_with("no validation images for 'bees', 'wasps':"), "{warn}");
        assert!(warn.contains("does not measure them"), "{warn}");
    }
}
