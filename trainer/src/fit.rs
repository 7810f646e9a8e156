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

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use models::Backbone;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::augment::Augment;
use crate::backbone::BackboneNet;
use crate::cache::{CacheKeyBase, Extracted, FeatureCache, dataset_fingerprint, extract};
use crate::checkpoint::{self, CheckpointState, TrainedModel, load_module, save_module};
use crate::data::open_image_folder;
use crate::error::TrainerError;
use crate::head::{Head, tensor_values};
use crate::history::{self, EpochRow, PHASE_FINE_TUNE, PHASE_HEAD};
use crate::metrics::Metrics;
use crate::run::{BEST_MODEL, DeviceKind, FitConfig, RunInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

/// Train a classifier on an image folder (see `trainer fit --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct FitArgs {
    /// mobilenetv2 | efficientnet-lite0 | efficientnet-b0
    #[arg(long)]
    pub backbone: Backbone,
    /// DIR/train/<class>/* + DIR/val/<class>/* (or test/), or DIR/<class>/* with --val-split.
    #[arg(long)]
    pub data: PathBuf,
    /// Run folder: checkpoints/, history.csv/json, run.json, best.bpk, metrics.json, *.png.
    #[arg(long)]
    pub out: PathBuf,
    /// Epochs of phase 1 (frozen backbone, new head).
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    pub optimizer: OptimizerKind,
    /// SGD momentum (ignored by Adam).
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, default_value_t = 0.1)]
    pub label_smoothing: f32,
    /// Dropout before the dense layer of the head.
    #[arg(long, default_value_t = 0.2)]
    pub dropout: f64,
    /// Comma list of flip,rotate,zoom,crop. What is cached: --augment-views seeded views per
    /// training image (view 0 = the plain image), computed once in epoch 1; each epoch then
    /// draws one cached view per image. Validation images are never augmented.
    #[arg(long, default_value = "")]
    pub augment: String,
    /// Cached views per training image when --augment is given.
    #[arg(long, default_value_t = 5)]
    pub augment_views: usize,
    /// Phase 2: unfreeze the top N backbone stages (0: no fine-tuning).
    #[arg(long, default_value_t = 0)]
    pub fine_tune_layers: usize,
    /// Epochs of phase 2 (numbered after phase 1's).
    #[arg(long, default_value_t = 5)]
    pub fine_tune_epochs: usize,
    /// Phase 2 learning rate = --lr x this.
    #[arg(long, default_value_t = 0.1)]
    pub fine_tune_lr_factor: f64,
    /// Continue the run in --out from its last checkpoint (same settings required).
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Folder with the ImageNet weights (default: $PERCH_WEIGHTS, else a download attempt).
    #[arg(long)]
    pub weights_dir: Option<PathBuf>,
    /// An explicit safetensors weights file (efficientnet-b0 user weights).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Fraction of each class held out for validation when DIR has no val/ or test/.
    #[arg(long)]
    pub val_split: Option<f32>,
    /// Use only the first N images of each class (train and val): quick runs and tests.
    #[arg(long)]
    pub limit_per_class: Option<usize>,
    /// Feature cache folder (default RUN_DIR/cache); share it between runs to reuse features.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Compute device (cuda needs a build with `--features cuda`).
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceKind,
}

impl FitArgs {
    fn config(&self) -> Result<FitConfig, TrainerError> {
        let bad = |m: String| Err(TrainerError::InvalidArgument(m));
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("--batch-size must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) || !(self.fine_tune_lr_factor > 0.0) {
            return bad(format!("--lr {} and --fine-tune-lr-factor {} must be positive", self.lr, self.fine_tune_lr_factor));
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
            optimizer: format!("{:?}", self.optimizer).to_lowercase(),
            momentum: self.momentum,
            label_smoothing: self.label_smoothing,
            dropout: self.dropout,
            augment: augment.names(),
            augment_views: if augment.is_none() { 1 } else { self.augment_views.max(1) },
            fine_tune_layers: self.fine_tune_layers,
            fine_tune_epochs: if self.fine_tune_layers > 0 { self.fine_tune_epochs } else { 0 },
            fine_tune_lr_factor: self.fine_tune_lr_factor,
        })
    }
}

/// What `trainer fit` prints at the end.
#[derive(Debug, Clone)]
pub struct FitSummary {
    pub run_dir: PathBuf,
    pub backbone: Backbone,
    pub classes: usize,
    pub train_images: usize,
    pub val_images: usize,
    pub skipped: Vec<(PathBuf, String)>,
    pub features_computed: usize,
    pub features_from_cache: usize,
    pub epochs_run: usize,
    pub resumed_from: Option<usize>,
    /// Seconds of the first epoch this process ran (includes feature extraction).
    pub first_epoch_seconds: f64,
    /// Mean seconds of the later epochs of phase 1 (head only).
    pub later_head_epoch_seconds: Option<f64>,
    pub best_epoch: usize,
    pub metrics: Metrics,
    pub history: Vec<EpochRow>,
}

fn optimizer(cfg: &FitConfig) -> ModuleOptimizer {
    if cfg.optimizer == "sgd" {
        SgdConfig::new()
            .with_momentum(Some(MomentumConfig { momentum: cfg.momentum, dampening: 0.0, nesterov: false }))
            .init()
    } else {
        AdamConfig::new().init()
    }
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// Cached inputs of one split for the trainable part: pooled features (phase 1) or boundary
/// activations (phase 2), `views` rows per image.
struct Rows<'a> {
    data: &'a [f32],
    row_len: usize,
    views: usize,
    labels: Vec<usize>,
}

impl<'a> Rows<'a> {
    fn features(e: &'a Extracted) -> Self {
        Rows { data: &e.features, row_len: e.feat_dim, views: e.views, labels: e.samples.iter().map(|s| s.label).collect() }
    }
    fn activations(e: &'a Extracted) -> Self {
        Rows { data: &e.activations, row_len: e.act_len(), views: e.views, labels: e.samples.iter().map(|s| s.label).collect() }
    }
    fn row(&self, image: usize, view: usize) -> &[f32] {
        let r = image * self.views + view;
        &self.data[r * self.row_len..(r + 1) * self.row_len]
    }
}

/// How a batch of cached rows becomes logits for the module being trained.
type Forward<'f, M> = &'f dyn Fn(&M, Vec<f32>, usize, &Device) -> Tensor<2>;

struct EpochStats {
    loss: f64,
    acc: f64,
}

fn labels_tensor(labels: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Tensor::<1, Int>::from_data(TensorData::new(v, [labels.len()]), device)
}

fn argmax_rows(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks_exact(classes)
        .map(|r| r.iter().enumerate().fold(0, |best, (i, v)| if *v > r[best] { i } else { best }))
        .collect()
}

/// One training epoch: seeded shuffle and view choice, forward, loss, backward, step.
#[allow(clippy::too_many_arguments)]
fn train_epoch<M: Module>(
    mut model: M,
    optim: &mut ModuleOptimizer,
    lr: f64,
    rows: &Rows,
    batch: usize,
    rng: &mut StdRng,
    loss_fn: &CrossEntropyLoss,
    forward: Forward<M>,
    device: &Device,
    pb: &ProgressBar,
) -> (M, EpochStats) {
    let mut order: Vec<(usize, usize)> = (0..rows.labels.len()).map(|i| (i, rng.random_range(0..rows.views))).collect();
    order.shuffle(rng);
    let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
    let start = Instant::now();
    for chunk in order.chunks(batch) {
        let mut x = Vec::with_capacity(chunk.len() * rows.row_len);
        let labels: Vec<usize> = chunk.iter().map(|&(i, _)| rows.labels[i]).collect();
        for &(i, v) in chunk {
            x.extend_from_slice(rows.row(i, v));
        }
        let logits = forward(&model, x, chunk.len(), device);
        let classes = logits.dims()[1];
        let loss = loss_fn.forward(logits.clone(), labels_tensor(&labels, device));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
        loss_sum += loss.into_scalar::<f32>() as f64 * chunk.len() as f64;
        let preds = argmax_rows(&tensor_values(logits.detach()), classes);
        correct += preds.iter().zip(&labels).filter(|(p, l)| p == l).count();
        seen += chunk.len();
        pb.inc(chunk.len() as u64);
        pb.set_message(format!(
            "loss {:.4} acc {:.3} {:.0} img/s",
            loss_sum / seen as f64,
            correct as f64 / seen as f64,
            seen as f64 / start.elapsed().as_secs_f64().max(1e-9)
        ));
    }
    (model, EpochStats { loss: loss_sum / seen.max(1) as f64, acc: correct as f64 / seen.max(1) as f64 })
}

/// Loss, accuracy and logits over a split (view 0 of each image), in inference mode.
fn evaluate<M: Module>(model: &M, rows: &Rows, batch: usize, loss_fn: &CrossEntropyLoss, forward: Forward<M>, device: &Device) -> (EpochStats, Vec<f32>) {
    let (mut loss_sum, mut correct) = (0.0, 0usize);
    let mut all = Vec::new();
    let n = rows.labels.len();
    for start in (0..n).step_by(batch.max(1)) {
        let idx: Vec<usize> = (start..(start + batch).min(n)).collect();
        let mut x = Vec::with_capacity(idx.len() * rows.row_len);
        for &i in &idx {
            x.extend_from_slice(rows.row(i, 0));
        }
        let labels: Vec<usize> = idx.iter().map(|&i| rows.labels[i]).collect();
        let logits = forward(model, x, idx.len(), device);
        let classes = logits.dims()[1];
        let loss = loss_fn.forward(logits.clone(), labels_tensor(&labels, device));
        loss_sum += loss.into_scalar::<f32>() as f64 * idx.len() as f64;
        let values = tensor_values(logits);
        correct += argmax_rows(&values, classes).iter().zip(&labels).filter(|(p, l)| p == l).count();
        all.extend(values);
    }
    (EpochStats { loss: loss_sum / n.max(1) as f64, acc: correct as f64 / n.max(1) as f64 }, all)
}

fn epoch_rng(seed: u64, epoch: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn head_forward(head: &Head, x: Vec<f32>, n: usize, device: &Device) -> Tensor<2> {
    let d = x.len() / n.max(1);
    head.forward(Tensor::<2>::from_data(TensorData::new(x, [n, d]), device))
}

/// Phase-2 forward from boundary activations: top stages, pool, head.
fn top_forward(model: &TrainedModel, boundary: usize, shape: &[usize], x: Vec<f32>, n: usize, device: &Device) -> Tensor<2> {
    let t = Tensor::<4>::from_data(TensorData::new(x, [n, shape[0], shape[1], shape[2]]), device);
    let top = model.backbone.forward_stages(t, boundary..model.backbone.num_stages());
    model.head.forward(BackboneNet::pool(top))
}

/// Trains (or resumes) a run. Returns the summary `trainer fit` prints.
pub fn run(args: &FitArgs) -> Result<FitSummary, TrainerError> {
    let cfg = args.config()?;
    let run_dir = args.out.clone();
    std::fs::create_dir_all(&run_dir).map_err(TrainerError::io(&run_dir))?;
    let previous = run_dir.join(crate::run::RUN_JSON).is_file().then(|| RunInfo::read(&run_dir)).transpose()?;
    match (&previous, args.resume) {
        (Some(_), false) => {
            return Err(TrainerError::Run {
                path: run_dir.clone(),
                reason: "already holds a run: pass --resume to continue it, or choose another --out".into(),
            });
        }
        (Some(p), true) if p.config != cfg || p.backbone != args.backbone || p.seed != args.seed || p.limit_per_class != args.limit_per_class => {
            return Err(TrainerError::Run {
                path: run_dir.clone(),
                reason: format!(
                    "--resume needs the same settings as the run it continues (backbone {}, seed {}, {:?}); \
                     pass those or choose another --out",
                    p.backbone, p.seed, p.config
                ),
            });
        }
        _ => {}
    }

    let device = args.device.device();
    let ad = device.clone().autodiff();
    let kind = args.backbone;
    let augment: Augment = args.augment.parse()?;
    let t_first = Instant::now();

    let splits = open_image_folder(&args.data, args.val_split, args.seed)?.limited(args.limit_per_class);
    let backbone = match &args.weights {
        Some(file) => BackboneNet::load_file(kind, file, &device)?,
        None => BackboneNet::load(kind, args.weights_dir.as_deref(), &device)?,
    };
    let stages = backbone.num_stages();
    if cfg.fine_tune_layers >= stages {
        return Err(TrainerError::InvalidArgument(format!(
            "--fine-tune-layers {} must be below {kind}'s {stages} stages",
            cfg.fine_tune_layers
        )));
    }
    let boundary = (cfg.fine_tune_layers > 0).then(|| stages - cfg.fine_tune_layers);
    let backbone = backbone.without_imagenet_classifier();
    let frozen = backbone.valid();

    // Features: computed once, then read from the cache.
    let cache = FeatureCache::open(&args.cache_dir.clone().unwrap_or_else(|| run_dir.join("cache")))?;
    let preprocessing = kind.preprocessing();
    let key_base = CacheKeyBase {
        model_id: format!(
            "{kind}|{}|{}",
            frozen.weights_sha256().unwrap_or_else(|| format!("random-init-{}", args.seed)),
            serde_json::to_string(&preprocessing).unwrap_or_default()
        ),
        augment,
        seed: args.seed,
    };
    let pb = bar(splits.train.len() + splits.val.len(), "features");
    let batch = cfg.batch_size.min(32);
    let train = extract(&frozen, &device, &splits.train, cfg.augment_views, &key_base, boundary, &cache, batch, &pb)?;
    let val = extract(&frozen, &device, &splits.val, 1, &key_base, boundary, &cache, batch, &pb)?;
    pb.finish_and_clear();
    tracing::info!(computed = train.computed + val.computed, from_cache = train.from_cache + val.from_cache, "backbone features ready");

    let mut skipped = splits.skipped.clone();
    skipped.extend(train.skipped.iter().cloned());
    skipped.extend(val.skipped.iter().cloned());
    for (path, why) in &skipped {
        tracing::warn!("skipped {}: {why}", path.display());
    }
    let classes = splits.labels.len();
    for (c, name) in splits.labels.0.iter().enumerate() {
        if !train.samples.iter().any(|s| s.label == c) {
            return Err(TrainerError::Dataset {
                path: args.data.clone(),
                reason: format!("class '{name}' has no readable training image (all skipped): add images or remove the folder"),
            });
        }
    }
    if val.samples.is_empty() {
        return Err(TrainerError::Dataset { path: args.data.clone(), reason: "no readable validation image".into() });
    }

    let mut info = RunInfo {
        backbone: kind,
        labels: splits.labels.clone(),
        preprocessing,
        val_accuracy: 0.0,
        best_epoch: 0,
        dataset_fingerprint: dataset_fingerprint(&args.data, &[&train, &val]),
        weights_sha256: frozen.weights_sha256(),
        data_dir: args.data.clone(),
        val_split: args.val_split,
        seed: args.seed,
        limit_per_class: args.limit_per_class,
        config: cfg.clone(),
        skipped: skipped.clone(),
        train_images: train.samples.len(),
        val_images: val.samples.len(),
        finished: false,
    };

    // Where to start: the last complete checkpoint when resuming.
    let resume = if args.resume { checkpoint::latest(&run_dir)? } else { None };
    let mut state = match &resume {
        Some((_, s)) => s.clone(),
        None => CheckpointState { epoch: 0, phase: PHASE_HEAD.into(), history: Vec::new(), best_val_acc: -1.0, best_epoch: 0 },
    };
    let resumed_from = resume.as_ref().map(|(_, s)| s.epoch);
    if let Some(e) = resumed_from {
        tracing::info!("resuming after epoch {e}");
    }
    info.val_accuracy = state.best_val_acc.max(0.0);
    info.best_epoch = state.best_epoch;
    info.write(&run_dir)?;
    history::write(&run_dir, &state.history)?;

    let loss_fn = CrossEntropyLossConfig::new()
        .with_smoothing((cfg.label_smoothing > 0.0).then_some(cfg.label_smoothing))
        .init(&ad);
    let loss_val = CrossEntropyLossConfig::new()
        .with_smoothing((cfg.label_smoothing > 0.0).then_some(cfg.label_smoothing))
        .init(&device);
    let mut first_epoch_seconds: Option<f64> = None;
    let mut later = Vec::new();
    let mut epochs_run = 0;
    let total_images = (train.samples.len() + val.samples.len()) as f64;

    // ---------------- phase 1: the head on cached features ----------------
    ad.seed(args.seed);
    let mut head = Head::new(train.feat_dim, classes, cfg.dropout, &ad)?;
    let mut optim = optimizer(&cfg);
    if let Some((dir, s)) = &resume {
        if s.epoch <= cfg.epochs {
            head = load_module(head, &dir.join(checkpoint::MODEL_FILE))?;
            optim = checkpoint::load_optimizer(optim, dir)?;
        }
    }
    let train_feats = Rows::features(&train);
    let val_feats = Rows::features(&val);
    let head_fwd: Forward<Head> = &head_forward;
    let finish_epoch = |row: EpochRow,
                            state: &mut CheckpointState,
                            info: &mut RunInfo,
                            best: &dyn Fn() -> TrainedModel,
                            save: &dyn Fn(&CheckpointState) -> Result<(), TrainerError>|
     -> Result<(), TrainerError> {
        tracing::info!(
            "epoch {} [{}] train loss {:.4} acc {:.4} | val loss {:.4} acc {:.4} | {:.2}s",
            row.epoch, row.phase, row.train_loss, row.train_acc, row.val_loss, row.val_acc, row.seconds
        );
        if row.val_acc > state.best_val_acc {
            state.best_val_acc = row.val_acc;
            state.best_epoch = row.epoch;
            save_module(best(), &run_dir.join(BEST_MODEL))?;
        }
        state.epoch = row.epoch;
        state.phase = row.phase.clone();
        state.history.push(row);
        save(state)?;
        history::write(&run_dir, &state.history)?;
        info.val_accuracy = state.best_val_acc;
        info.best_epoch = state.best_epoch;
        info.write(&run_dir)
    };

    for epoch in state.epoch + 1..=cfg.epochs {
        let t = Instant::now();
        ad.seed(args.seed.wrapping_add(epoch as u64));
        let mut rng = epoch_rng(args.seed, epoch);
        let pb = bar(train.samples.len(), &format!("epoch {epoch}"));
        let (h, tr) = train_epoch(head, &mut optim, cfg.lr, &train_feats, cfg.batch_size, &mut rng, &loss_fn, head_fwd, &ad, &pb);
        head = h;
        pb.finish_and_clear();
        let (va, _) = evaluate(&head.valid(), &val_feats, 256, &loss_val, head_fwd, &device);
        let first = first_epoch_seconds.is_none();
        let secs = if first { t_first.elapsed().as_secs_f64() } else { t.elapsed().as_secs_f64() };
        let row = EpochRow {
            epoch,
            phase: PHASE_HEAD.into(),
            train_loss: tr.loss,
            train_acc: tr.acc,
            val_loss: va.loss,
            val_acc: va.acc,
            lr: cfg.lr,
            seconds: secs,
            images_per_s: if first { total_images / secs } else { train.samples.len() as f64 / secs },
        };
        finish_epoch(
            row,
            &mut state,
            &mut info,
            &|| TrainedModel { backbone: frozen.clone(), head: head.valid() },
            &|s: &CheckpointState| checkpoint::save(&run_dir, head.clone(), &optim, s).map(|_| ()),
        )?;
        if first {
            first_epoch_seconds = Some(secs);
        } else {
            later.push(secs);
        }
        epochs_run += 1;
    }

    // ---------------- phase 2: top stages + head on cached boundary activations ----------------
    if let Some(b) = boundary {
        let lr = cfg.lr * cfg.fine_tune_lr_factor;
        // BatchNorm stays in inference mode (running statistics); all weights may take
        // gradients, but only the top stages are in the graph (their input is the cached
        // boundary activation), so only they and the head change.
        let bb = backbone.clone().with_frozen_batchnorm(true).fork(&ad).set_require_grad(true);
        let mut model = TrainedModel { backbone: bb, head };
        let mut optim = optimizer(&cfg);
        if let Some((dir, s)) = &resume {
            if s.epoch > cfg.epochs {
                model = load_module(model, &dir.join(checkpoint::MODEL_FILE))?;
                optim = checkpoint::load_optimizer(optim, dir)?;
            }
        }
        let shape = train.act_shape.clone();
        let fwd = move |m: &TrainedModel, x: Vec<f32>, n: usize, d: &Device| top_forward(m, b, &shape, x, n, d);
        let fwd: Forward<TrainedModel> = &fwd;
        let train_acts = Rows::activations(&train);
        let val_acts = Rows::activations(&val);
        for epoch in (state.epoch + 1).max(cfg.epochs + 1)..=cfg.epochs + cfg.fine_tune_epochs {
            let t = Instant::now();
            ad.seed(args.seed.wrapping_add(epoch as u64));
            let mut rng = epoch_rng(args.seed, epoch);
            let pb = bar(train.samples.len(), &format!("epoch {epoch}"));
            let (m, tr) = train_epoch(model, &mut optim, lr, &train_acts, cfg.batch_size, &mut rng, &loss_fn, fwd, &ad, &pb);
            model = m;
            pb.finish_and_clear();
            let (va, _) = evaluate(&model.valid(), &val_acts, 64, &loss_val, fwd, &device);
            let first = first_epoch_seconds.is_none();
            let secs = if first { t_first.elapsed().as_secs_f64() } else { t.elapsed().as_secs_f64() };
            let row = EpochRow {
                epoch,
                phase: PHASE_FINE_TUNE.into(),
                train_loss: tr.loss,
                train_acc: tr.acc,
                val_loss: va.loss,
                val_acc: va.acc,
                lr,
                seconds: secs,
                images_per_s: if first { total_images / secs } else { train.samples.len() as f64 / secs },
            };
            finish_epoch(row, &mut state, &mut info, &|| model.valid(), &|s: &CheckpointState| {
                checkpoint::save(&run_dir, model.clone(), &optim, s).map(|_| ())
            })?;
            first_epoch_seconds.get_or_insert(secs);
            epochs_run += 1;
        }
    }

    // ---------------- the best model on the validation set ----------------
    let (best, _) = checkpoint::load_best(&run_dir, &device)?;
    let logits = match boundary {
        Some(b) => {
            let shape = val.act_shape.clone();
            let fwd = move |m: &TrainedModel, x: Vec<f32>, n: usize, d: &Device| top_forward(m, b, &shape, x, n, d);
            evaluate(&best, &Rows::activations(&val), 64, &loss_val, &fwd, &device).1
        }
        None => evaluate(&best.head, &val_feats, 256, &loss_val, head_fwd, &device).1,
    };
    let preds = argmax_rows(&logits, classes);
    let truth: Vec<usize> = val.samples.iter().map(|s| s.label).collect();
    let metrics = Metrics::compute(&info.labels, &truth, &preds);
    metrics.write(&run_dir.join("metrics.json"))?;
    crate::plots::write_all(&run_dir, &state.history, &metrics, &val.samples, &preds, &info.labels)?;
    info.val_accuracy = metrics.accuracy;
    info.finished = true;
    info.write(&run_dir)?;

    Ok(FitSummary {
        run_dir,
        backbone: kind,
        classes,
        train_images: train.samples.len(),
        val_images: val.samples.len(),
        skipped,
        features_computed: train.computed + val.computed,
        features_from_cache: train.from_cache + val.from_cache,
        epochs_run,
        resumed_from,
        first_epoch_seconds: first_epoch_seconds.unwrap_or(0.0),
        later_head_epoch_seconds: (!later.is_empty()).then(|| later.iter().sum::<f64>() / later.len() as f64),
        best_epoch: state.best_epoch,
        metrics,
        history: state.history,
    })
}

/// The one-screen summary.
impl std::fmt::Display for FitSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "run            {}", self.run_dir.display())?;
        writeln!(f, "backbone       {} ({} classes)", self.backbone, self.classes)?;
        writeln!(f, "images         {} train, {} val, {} skipped", self.train_images, self.val_images, self.skipped.len())?;
        for (p, why) in self.skipped.iter().take(5) {
            writeln!(f, "  skipped      {}: {why}", p.display())?;
        }
        if self.skipped.len() > 5 {
            writeln!(f, "  ... and {} more (listed in run.json)", self.skipped.len() - 5)?;
        }
        writeln!(f, "features       {} computed, {} from cache", self.features_computed, self.features_from_cache)?;
        if let Some(e) = self.resumed_from {
            writeln!(f, "resumed        after epoch {e}")?;
        }
        writeln!(f, "epochs         {} run this time, {} in the history", self.epochs_run, self.history.len())?;
        match self.later_head_epoch_seconds {
            Some(later) => writeln!(
                f,
                "epoch time     first {:.2}s (incl. features), later head epochs {:.3}s = 1/{:.0} of the first",
                self.first_epoch_seconds,
                later,
                self.first_epoch_seconds / later.max(1e-9)
            )?,
            None => writeln!(f, "epoch time     first {:.2}s (incl. features)", self.first_epoch_seconds)?,
        }
        writeln!(f, "best           epoch {}, val accuracy {:.4}", self.best_epoch, self.metrics.accuracy)?;
        for (c, name) in self.metrics.labels.iter().enumerate() {
            let pc = &self.metrics.per_class[c];
            writeln!(f, "  {name:<20} precision {:.3} recall {:.3} f1 {:.3} (n={})", pc.precision, pc.recall, pc.f1, pc.support)?;
        }
        write!(f, "files          run.json best.bpk history.csv history.json metrics.json curves.png confusion.png predictions.png")
    }
}

/// Re-export for callers that only need the path helpers.
pub fn best_model_path(run_dir: &Path) -> PathBuf {
    run_dir.join(BEST_MODEL)
}
