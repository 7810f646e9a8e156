//! `trainer fit`: transfer learning in two phases, Keras-style.
//!
//! Phase 1 ("head"): the ImageNet backbone is frozen; its pooled features are computed once
//! (epoch 1) through the on-disk feature cache, and every epoch trains only the new head
//! (dropout -> dense) on them. Phase 2 ("fine-tune", `--fine-tune-layers N`): the top N backbone
//! stages are trained too, at `lr * factor`, BatchNorm kept in inference mode; the cache then
//! also holds the activations at the freeze boundary so an epoch runs only the top N stages.
//! Epoch numbers continue across phases. Every epoch is checkpointed (see `checkpoint`);
//! `--resume` continues from the last checkpoint and gives the same result as an uninterrupted
//! run (shuffling, augmentation views and dropout are seeded from seed + epoch).
//!
//! Layout: `setup` claims the run folder, opens the data and extracts the features;
//! `phase` holds the phases and the one epoch loop that runs each; `epoch` one pass over
//! cached rows; `summary` what is printed at the end.

mod epoch;
mod phase;
mod refit;
mod setup;
mod summary;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use common::math::argmax_rows;
use models::Backbone;

use crate::augment::Augment;
use crate::checkpoint::{self, CheckpointState};
use crate::error::TrainerError;
use crate::frozen::FrozenEngine;
use crate::metrics::Metrics;
use crate::run::{ClassWeights, DeviceKind, FitConfig};
use epoch::{Pass, Rows, evaluate, head_forward, top_forward};
use phase::{Phase, Session};
use setup::Prepared;

pub use crate::run::OptimizerKind;
pub use refit::{REFIT_DIR, SELECTED_MODEL};
pub use summary::FitSummary;

/// What `trainer fit` trains (the flags of `trainer fit --help`, defaults filled in).
#[derive(Debug, Clone)]
pub struct FitOptions {
    pub backbone: Backbone,
    /// DIR/train/<class>/* + DIR/val/<class>/* (or test/), or DIR/<class>/* with `val_split`.
    pub data: PathBuf,
    /// Run folder: checkpoints/, history.csv/json, run.json, best.bpk, metrics.json, *.png.
    pub out: PathBuf,
    /// Epochs of phase 1 (frozen backbone, new head).
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: OptimizerKind,
    /// SGD momentum (unused by Adam).
    pub momentum: f64,
    pub label_smoothing: f32,
    /// Dropout before the dense layer of the head.
    pub dropout: f64,
    /// Comma list of flip,rotate,zoom,crop ("" or "none": no augmentation).
    pub augment: String,
    /// Cached views per training image when `augment` is set.
    pub augment_views: usize,
    /// Phase 2: unfreeze the top N backbone stages (0: no fine-tuning).
    pub fine_tune_layers: usize,
    /// Epochs of phase 2 (numbered after phase 1's).
    pub fine_tune_epochs: usize,
    /// Phase 2 learning rate = `lr` x this.
    pub fine_tune_lr_factor: f64,
    /// Continue the run in `out` from its last checkpoint (same settings required).
    pub resume: bool,
    pub seed: u64,
    /// Folder with the ImageNet weights (None: $PERCH_WEIGHTS, else a download attempt).
    pub weights_dir: Option<PathBuf>,
    /// An explicit safetensors weights file (efficientnet-b0 user weights).
    pub weights: Option<PathBuf>,
    /// Fraction of each class held out for validation when `data` has no val/ or test/.
    pub val_split: Option<f32>,
    /// Use only the first N images of each class (train and val).
    pub limit_per_class: Option<usize>,
    /// Feature cache folder (None: RUN_DIR/cache).
    pub cache_dir: Option<PathBuf>,
    pub device: DeviceKind,
    /// What runs the frozen backbone pass (see `frozen`).
    pub frozen_engine: FrozenEngine,
    /// libonnxruntime for `frozen_engine` ort/auto (None: ORT_DYLIB_PATH, system, pip).
    pub ort_lib: Option<PathBuf>,
    /// Loss weights per class (`auto`: by 1/class size).
    pub class_weights: ClassWeights,
    /// After val has chosen the best epoch, train the same schedule again from scratch on
    /// train + val; that model is the run's `best.bpk` (see `refit`).
    pub refit: bool,
}

/// `--recipe`: a documented set of defaults. `linear` trains the new head on frozen features
/// (the flags' own defaults); `finetune` adds cached augmented views and a second phase that
/// fine-tunes the top backbone stages at a tenth of the learning rate. Flags given on the
/// command line win over a recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recipe {
    #[default]
    Linear,
    Finetune,
}

impl Recipe {
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Linear => "linear",
            Recipe::Finetune => "finetune",
        }
    }

    /// Sets the recipe's value of every setting `given` (a flag id such as `fine_tune_layers`)
    /// says the user did not set.
    pub fn apply(self, opts: &mut FitOptions, given: impl Fn(&str) -> bool) {
        if self != Recipe::Finetune {
            return;
        }
        if !given("epochs") {
            opts.epochs = FINETUNE_HEAD_EPOCHS;
        }
        if !given("augment") {
            opts.augment = FINETUNE_AUGMENT.into();
        }
        if !given("augment_views") {
            opts.augment_views = FINETUNE_VIEWS;
        }
        if !given("fine_tune_layers") {
            opts.fine_tune_layers = FINETUNE_LAYERS;
        }
        if !given("fine_tune_epochs") {
            opts.fine_tune_epochs = FINETUNE_EPOCHS;
        }
        if !given("fine_tune_lr_factor") {
            opts.fine_tune_lr_factor = FINETUNE_LR_FACTOR;
        }
    }
}

/// `--recipe finetune`: head epochs (each draws a fresh cached view of every image, so more
/// epochs than without augmentation) ...
pub const FINETUNE_HEAD_EPOCHS: usize = 30;
/// ... on augmentations cached per training image ...
pub const FINETUNE_AUGMENT: &str = "flip,rotate,crop";
/// ... in this many views (view 0 is the plain image) ...
pub const FINETUNE_VIEWS: usize = 5;
/// ... then the top 4 stages fine-tuned (the last three inverted-residual / MBConv blocks and
/// the 1x1 head conv, all at 7x7, so the cached boundary activations stay small) ...
pub const FINETUNE_LAYERS: usize = 4;
/// ... for this many epochs ...
pub const FINETUNE_EPOCHS: usize = 10;
/// ... at `--lr` x this.
pub const FINETUNE_LR_FACTOR: f64 = 0.3;

impl FitOptions {
    /// The validated hyper-parameters stored in run.json.
    fn config(&self) -> Result<FitConfig, TrainerError> {
        let bad = |m: String| Err(TrainerError::InvalidArgument(m));
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("--batch-size must be at least 1".into());
        }
        let lr_ok = self.lr > 0.0 && self.lr.is_finite();
        let factor_ok = self.fine_tune_lr_factor > 0.0;
        if !lr_ok || !factor_ok {
            return bad(format!(
                "--lr {} and --fine-tune-lr-factor {} must be positive",
                self.lr, self.fine_tune_lr_factor
            ));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!("--label-smoothing {} must be in [0, 1)", self.label_smoothing));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("--dropout {} must be in [0, 1)", self.dropout));
        }
        let augment: Augment = self.augment.parse()?;
        Ok(FitConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            optimizer: self.optimizer,
            momentum: self.momentum,
            label_smoothing: self.label_smoothing,
            dropout: self.dropout,
            augment: augment.names(),
            augment_views: if augment.is_none() { 1 } else { self.augment_views.max(1) },
            fine_tune_layers: self.fine_tune_layers,
            fine_tune_epochs: if self.fine_tune_layers > 0 { self.fine_tune_epochs } else { 0 },
            fine_tune_lr_factor: self.fine_tune_lr_factor,
            class_weights: self.class_weights,
            refit: self.refit,
        })
    }
}

/// Trains (or resumes) a run. Returns the summary `trainer fit` prints.
pub fn run(opts: &FitOptions) -> Result<FitSummary, TrainerError> {
    let cfg = opts.config()?;
    // The device first: a GPU that is not there fails before the run folder is claimed.
    let device = opts.device.device()?;
    let run_dir = opts.out.clone();
    setup::claim_run_dir(&run_dir, opts, &cfg)?;
    let started = Instant::now();
    let data = setup::prepare(opts, &cfg, &run_dir, device)?;

    // Where to start: the last complete checkpoint when resuming.
    let resume = if opts.resume { checkpoint::latest(&run_dir)? } else { None };
    let resumed_from = resume.as_ref().map(|(_, s)| s.epoch);
    if let Some(e) = resumed_from {
        tracing::info!("resuming after epoch {e}");
    }
    let resumed: Option<CheckpointState> = resume.as_ref().map(|(_, s)| s.clone());
    let info = data.run_info(opts, &cfg);
    let mut session = Session::start(&run_dir, opts.seed, &cfg, &data, info, resumed, started)?;
    let head = phase::train_head(&mut session, &cfg, &data, resume.as_ref())?;
    if let (Some(fine), Some(boundary)) = (Phase::fine_tune(&cfg), data.boundary) {
        phase::fine_tune(&mut session, &cfg, &fine, boundary, head, &data, resume.as_ref())?;
    }

    // The best model on the validation set (the one val chose: before a refit replaces it).
    let preds = best_predictions(&refit::selected_model(&run_dir), &data, &data.val, &session)?;
    let truth: Vec<usize> = data.val.samples.iter().map(|s| s.label).collect();
    let metrics = Metrics::compute(&data.labels, &truth, &preds);
    metrics.write(&run_dir.join("metrics.json"))?;
    crate::plots::write_all(&run_dir, &session.state.history, &metrics, &data.val.samples, &preds, &data.labels)?;
    if cfg.refit {
        session.info.refit_epochs = Some(refit::run(opts, &cfg, &data, session.state.best_epoch)?);
    }
    // test/ is scored once, on the run's model (the one val chose, or its refit).
    let test_metrics = if data.test.samples.is_empty() {
        None
    } else {
        let preds = best_predictions(&run_dir.join(crate::run::BEST_MODEL), &data, &data.test, &session)?;
        let truth: Vec<usize> = data.test.samples.iter().map(|s| s.label).collect();
        let m = Metrics::compute(&data.labels, &truth, &preds);
        m.write(&run_dir.join(TEST_METRICS))?;
        Some(m)
    };
    session.info.val_accuracy = metrics.accuracy;
    session.info.test_accuracy = test_metrics.as_ref().map(|m| m.accuracy);
    session.info.finished = true;
    session.info.write(&run_dir)?;

    let timing = &session.timing;
    let later = &timing.later_head;
    Ok(FitSummary {
        run_dir: run_dir.clone(),
        backbone: opts.backbone,
        classes: data.labels.len(),
        train_images: data.train.samples.len(),
        val_images: data.val.samples.len(),
        features_computed: data.train.computed + data.val.computed + data.test.computed,
        features_from_cache: data.train.from_cache + data.val.from_cache + data.test.from_cache,
        skipped: data.skipped,
        epochs_run: timing.epochs_run,
        resumed_from,
        first_epoch_seconds: timing.first_epoch_seconds.unwrap_or(0.0),
        later_head_epoch_seconds: (!later.is_empty()).then(|| later.iter().sum::<f64>() / later.len() as f64),
        best_epoch: session.state.best_epoch,
        metrics,
        test_metrics,
        test_images: data.test.samples.len(),
        frozen_engine: session.info.frozen_engine,
        refit_epochs: session.info.refit_epochs,
        history: session.state.history,
    })
}

/// The best model's scores on the test split.
pub const TEST_METRICS: &str = "test_metrics.json";

/// Predicted class of every image of `set` (val or test) by the model saved at `model`.
fn best_predictions(
    model: &Path,
    data: &Prepared,
    set: &crate::cache::Extracted,
    session: &Session,
) -> Result<Vec<usize>, TrainerError> {
    let device = &session.device;
    let best = checkpoint::TrainedModel::load(&session.info, model, device)?;
    let logits = match data.boundary {
        Some(b) => {
            let shape = set.act_shape.clone();
            let forward = move |m: &checkpoint::TrainedModel, x: Vec<f32>, n: usize, d: &Device| {
                top_forward(m, b, &shape, x, n, d)
            };
            let pass = Pass { forward: &forward, loss: &session.loss_val, device, batch: 64 };
            evaluate(&best, &Rows::activations(set), &pass).1
        }
        None => {
            let pass = Pass { forward: &head_forward, loss: &session.loss_val, device, batch: 256 };
            evaluate(&best.head, &Rows::features(set), &pass).1
        }
    };
    Ok(argmax_rows(&logits, data.labels.len()))
}
