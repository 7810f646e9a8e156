//! Before the first epoch: the run folder claimed (or the run to resume checked), the image
//! folder opened, the backbone loaded, and every image's backbone features (and, when
//! fine-tuning, its activations at the freeze boundary) computed once or read from the cache.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use models::{Labels, Preprocessing};

use super::FitOptions;
use super::epoch::bar;
use crate::augment::Augment;
use crate::backbone::BackboneNet;
use crate::cache::{CacheKeyBase, Extracted, FeatureCache, dataset_fingerprint, extract};
use crate::data::{Splits, open_image_folder};
use crate::error::TrainerError;
use crate::frozen::{FrozenEngine, FrozenRequest, LazyFrozen};
use crate::run::{FitConfig, RUN_JSON, RunInfo};

/// Everything the epochs train on.
pub(super) struct Prepared {
    pub device: Device,
    /// The backbone without its ImageNet classifier (the fine-tune phase trains a copy).
    pub backbone: BackboneNet,
    /// `backbone` in inference mode: what the features come from and what the head phase's
    /// best model holds.
    pub frozen: BackboneNet,
    /// First fine-tuned stage (`None`: no fine-tuning).
    pub boundary: Option<usize>,
    pub labels: Labels,
    pub preprocessing: Preprocessing,
    pub train: Extracted,
    pub val: Extracted,
    /// `DIR/test/` (empty without one): scored once, on the best model.
    pub test: Extracted,
    /// What ran the frozen pass (None: all features were cached).
    pub frozen_engine: Option<FrozenEngine>,
    /// Every skipped image (folder scan and decoding), with why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Creates `run_dir`; refuses a folder that already holds a run unless resuming it with the
/// same settings.
pub(super) fn claim_run_dir(run_dir: &Path, opts: &FitOptions, cfg: &FitConfig) -> Result<(), TrainerError> {
    std::fs::create_dir_all(run_dir).map_err(TrainerError::io(run_dir))?;
    let previous = run_dir.join(RUN_JSON).is_file().then(|| RunInfo::read(run_dir)).transpose()?;
    match (&previous, opts.resume) {
        (Some(_), false) => Err(TrainerError::Run {
            path: run_dir.to_path_buf(),
            reason: "already holds a run: pass --resume to continue it, or choose another --out".into(),
        }),
        (Some(p), true)
            if p.config != *cfg
                || p.backbone != opts.backbone
                || p.seed != opts.seed
                || p.limit_per_class != opts.limit_per_class =>
        {
            Err(TrainerError::Run {
                path: run_dir.to_path_buf(),
                reason: format!(
                    "--resume needs the same settings as the run it continues (backbone {}, seed {}, {:?}); \
                     pass those or choose another --out",
                    p.backbone, p.seed, p.config
                ),
            })
        }
        (Some(_), true) => {
            let removed = crate::checkpoint::remove_leftovers(run_dir);
            if removed > 0 {
                tracing::info!("removed {removed} half-written file(s) of the interrupted run");
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Opens the data, loads the backbone and extracts the features.
pub(super) fn prepare(
    opts: &FitOptions,
    cfg: &FitConfig,
    run_dir: &Path,
    device: Device,
) -> Result<Prepared, TrainerError> {
    let splits = open_image_folder(&opts.data, opts.val_split, opts.seed)?.limited(opts.limit_per_class);
    let (backbone, boundary) = load_backbone(opts, cfg, &device)?;
    let frozen = backbone.valid();
    let (train, val, test, frozen_engine) = extract_features(opts, cfg, run_dir, &frozen, boundary, &splits, &device)?;
    let mut skipped = splits.skipped.clone();
    skipped.extend(train.skipped.iter().cloned());
    skipped.extend(val.skipped.iter().cloned());
    skipped.extend(test.skipped.iter().cloned());
    // A folder of sidecar files (annotations, notes) would otherwise print a line each.
    const SHOWN: usize = 10;
    for (path, why) in skipped.iter().take(SHOWN) {
        tracing::warn!("skipped {}: {why}", path.display());
    }
    if skipped.len() > SHOWN {
        tracing::warn!(
            "... and {} more skipped files (all {} are listed in run.json)",
            skipped.len() - SHOWN,
            skipped.len()
        );
    }
    check_readable(&opts.data, &splits.labels, &train, &val)?;
    let preprocessing = opts.backbone.preprocessing();
    Ok(Prepared {
        device,
        backbone,
        frozen,
        boundary,
        labels: splits.labels,
        preprocessing,
        train,
        val,
        test,
        frozen_engine,
        skipped,
    })
}

/// The backbone (ImageNet classifier dropped) and the fine-tuning boundary stage.
fn load_backbone(
    opts: &FitOptions,
    cfg: &FitConfig,
    device: &Device,
) -> Result<(BackboneNet, Option<usize>), TrainerError> {
    let kind = opts.backbone;
    let backbone = match &opts.weights {
        Some(file) => BackboneNet::load_file(kind, file, device)?,
        None => BackboneNet::load(kind, opts.weights_dir.as_deref(), device)?,
    };
    let stages = backbone.num_stages();
    if cfg.fine_tune_layers >= stages {
        return Err(TrainerError::InvalidArgument(format!(
            "--fine-tune-layers {} must be below {kind}'s {stages} stages",
            cfg.fine_tune_layers
        )));
    }
    let boundary = (cfg.fine_tune_layers > 0).then(|| stages - cfg.fine_tune_layers);
    Ok((backbone.without_imagenet_classifier(), boundary))
}

/// Features (and boundary activations) of the splits: computed once, then read from the cache.
fn extract_features(
    opts: &FitOptions,
    cfg: &FitConfig,
    run_dir: &Path,
    frozen: &BackboneNet,
    boundary: Option<usize>,
    splits: &Splits,
    device: &Device,
) -> Result<(Extracted, Extracted, Extracted, Option<FrozenEngine>), TrainerError> {
    let augment: Augment = opts.augment.parse()?;
    let cache = FeatureCache::open(&opts.cache_dir.clone().unwrap_or_else(|| run_dir.join("cache")))?;
    let kind = opts.backbone;
    let key_base = CacheKeyBase {
        model_id: format!(
            "{kind}|{}|{}",
            frozen.weights_sha256().unwrap_or_else(|| format!("random-init-{}", opts.seed)),
            serde_json::to_string(&kind.preprocessing()).unwrap_or_default()
        ),
        augment,
        seed: opts.seed,
    };
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let req =
        FrozenRequest { engine: opts.frozen_engine, device: opts.device, ort_lib: opts.ort_lib.as_deref(), workers };
    let lazy = LazyFrozen::new(req, frozen, device, boundary);
    let pb = bar(splits.train.len() + splits.val.len() + splits.test.len(), "features");
    let batch = cfg.batch_size.min(32);
    let train = extract(&lazy, &splits.train, cfg.augment_views, &key_base, &cache, batch, &pb)?;
    // --refit trains on val too, so its images get the augmented views as well (view 0, the
    // plain image, is what validation looks at).
    let val_views = if cfg.refit { cfg.augment_views } else { 1 };
    let val = extract(&lazy, &splits.val, val_views, &key_base, &cache, batch, &pb)?;
    let test = extract(&lazy, &splits.test, 1, &key_base, &cache, batch, &pb)?;
    pb.finish_and_clear();
    tracing::info!(
        computed = train.computed + val.computed + test.computed,
        from_cache = train.from_cache + val.from_cache + test.from_cache,
        engine = lazy.chosen().map_or("none (all cached)", FrozenEngine::name),
        "backbone features ready"
    );
    Ok((train, val, test, lazy.chosen()))
}

/// Every class needs a readable training image, and the validation split one image at all.
fn check_readable(data: &Path, labels: &Labels, train: &Extracted, val: &Extracted) -> Result<(), TrainerError> {
    for (c, name) in labels.0.iter().enumerate() {
        if !train.samples.iter().any(|s| s.label == c) {
            return Err(TrainerError::Dataset {
                path: data.to_path_buf(),
                reason: format!(
                    "class '{name}' has no readable training image (all skipped): add images or remove the folder"
                ),
            });
        }
    }
    if val.samples.is_empty() {
        return Err(TrainerError::Dataset { path: data.to_path_buf(), reason: "no readable validation image".into() });
    }
    Ok(())
}

impl Prepared {
    /// run.json before the first epoch of this process (accuracy and best epoch filled in later).
    pub(super) fn run_info(&self, opts: &FitOptions, cfg: &FitConfig) -> RunInfo {
        RunInfo {
            backbone: opts.backbone,
            labels: self.labels.clone(),
            preprocessing: self.preprocessing,
            val_accuracy: 0.0,
            best_epoch: 0,
            dataset_fingerprint: dataset_fingerprint(&opts.data, &[&self.train, &self.val]),
            weights_sha256: self.frozen.weights_sha256(),
            data_dir: opts.data.clone(),
            val_split: opts.val_split,
            seed: opts.seed,
            limit_per_class: opts.limit_per_class,
            config: cfg.clone(),
            skipped: self.skipped.clone(),
            train_images: self.train.samples.len(),
            val_images: self.val.samples.len(),
            finished: false,
            test_images: self.test.samples.len(),
            test_accuracy: None,
            class_weights: Vec::new(),
            frozen_engine: self.frozen_engine,
            split_version: crate::run::SPLIT_VERSION,
            refit_epochs: None,
        }
    }
}
