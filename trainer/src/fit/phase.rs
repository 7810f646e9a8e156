//! The training phases and the ONE epoch loop that runs each of them (as burn-train's learner
//! runs its epochs): a [`Phase`] says which layers train, at which learning rate, for which
//! epochs; a [`Session`] carries what all epochs share (the run folder, the checkpoint state,
//! run.json, the timing) and checkpoints every epoch.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, ModuleOptimizer, SgdConfig};
use burn::tensor::Device;

use super::epoch::{Forward, Pass, Rows, bar, epoch_rng, evaluate, head_forward, top_forward, train_epoch};
use super::setup::Prepared;
use crate::cache::Extracted;
use crate::checkpoint::{self, CheckpointState, TrainedModel, load_module, save_module};
use crate::error::TrainerError;
use crate::head::Head;
use crate::history::{self, EpochRow, PHASE_FINE_TUNE, PHASE_HEAD};
use crate::run::{BEST_MODEL, FitConfig, OptimizerKind, RunInfo};

/// One phase of a run.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Phase {
    /// The history's phase name (`head`, `fine-tune`).
    pub name: &'static str,
    /// Backbone stages trained with the head (0: the head alone, on cached features).
    pub layers: usize,
    pub lr: f64,
    /// Its epoch numbers (numbering continues across phases).
    pub epochs: RangeInclusive<usize>,
    /// Validation batch size.
    pub eval_batch: usize,
}

impl Phase {
    /// Phase 1: frozen backbone, new head on cached pooled features.
    pub(super) fn head(cfg: &FitConfig) -> Self {
        Phase { name: PHASE_HEAD, layers: 0, lr: cfg.lr, epochs: 1..=cfg.epochs, eval_batch: 256 }
    }

    /// Phase 2 (`--fine-tune-layers N`): the top N stages and the head on cached boundary
    /// activations, at `lr * factor`.
    pub(super) fn fine_tune(cfg: &FitConfig) -> Option<Self> {
        (cfg.fine_tune_layers > 0).then(|| Phase {
            name: PHASE_FINE_TUNE,
            layers: cfg.fine_tune_layers,
            lr: cfg.lr * cfg.fine_tune_lr_factor,
            epochs: cfg.epochs + 1..=cfg.epochs + cfg.fine_tune_epochs,
            eval_batch: 64,
        })
    }

    /// Whether the checkpoint written after `epoch` holds this phase's module and optimizer.
    fn owns(&self, epoch: usize) -> bool {
        self.epochs.contains(&epoch)
    }
}

/// Training images per class.
fn class_counts(split: &Extracted, classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for s in &split.samples {
        counts[s.label] += 1;
    }
    counts
}

fn optimizer(cfg: &FitConfig) -> ModuleOptimizer {
    match cfg.optimizer {
        OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum(Some(MomentumConfig { momentum: cfg.momentum, dampening: 0.0, nesterov: false }))
            .init(),
        OptimizerKind::Adam => AdamConfig::new().init(),
    }
}

/// Wall-clock accounting for the summary.
pub(super) struct Timing {
    /// When the process started working (the first epoch's time includes feature extraction).
    started: Instant,
    pub first_epoch_seconds: Option<f64>,
    /// Seconds of the later head-phase epochs.
    pub later_head: Vec<f64>,
    pub epochs_run: usize,
}

/// A module being trained in one phase: how its cached rows become logits, and the best
/// model it stands for when it wins.
pub(super) struct Trainee<'a, M> {
    pub forward: Forward<'a, M>,
    pub train: Rows<'a>,
    pub val: Rows<'a>,
    pub best: &'a dyn Fn(&M) -> TrainedModel,
}

/// What every epoch of every phase shares.
pub(super) struct Session<'a> {
    run_dir: &'a Path,
    seed: u64,
    batch_size: usize,
    pub device: Device,
    ad: Device,
    loss_train: CrossEntropyLoss,
    pub loss_val: CrossEntropyLoss,
    pub state: CheckpointState,
    pub info: RunInfo,
    pub timing: Timing,
    /// Backbone passes of the first epoch (its images/s): every cached view of the train images, val and test.
    all_images: usize,
    /// Val chooses the best epoch (false for `--refit`, which trains on val: its last epoch is
    /// the model).
    pub select_best: bool,
}

impl<'a> Session<'a> {
    /// Starts from `resumed` (the last checkpoint's state) or from scratch; writes run.json
    /// and the history so far.
    pub(super) fn start(
        run_dir: &'a Path,
        seed: u64,
        cfg: &FitConfig,
        data: &Prepared,
        mut info: RunInfo,
        resumed: Option<CheckpointState>,
        started: Instant,
    ) -> Result<Self, TrainerError> {
        let state = resumed.unwrap_or_else(|| CheckpointState {
            epoch: 0,
            phase: PHASE_HEAD.into(),
            history: Vec::new(),
            best_val_acc: -1.0,
            best_epoch: 0,
        });
        info.val_accuracy = state.best_val_acc.max(0.0);
        if let Some(w) = crate::run::imbalance_warning(
            &data.labels.0,
            &class_counts(&data.train, data.labels.len()),
            cfg.class_weights,
        ) {
            tracing::warn!("{w}");
        }
        if let Some(w) = crate::run::unvalidated_warning(&data.labels.0, &class_counts(&data.val, data.labels.len())) {
            tracing::warn!("{w}");
        }
        info.best_epoch = state.best_epoch;
        info.write(run_dir)?;
        history::write(run_dir, &state.history)?;
        let weights = cfg.class_weights.weights(&class_counts(&data.train, data.labels.len()));
        info.class_weights = weights.clone();
        let loss = |d: &Device, weights: &[f32]| {
            CrossEntropyLossConfig::new()
                .with_smoothing((cfg.label_smoothing > 0.0).then_some(cfg.label_smoothing))
                .with_weights((!weights.is_empty()).then(|| weights.to_vec()))
                .init(d)
        };
        let device = data.device.clone();
        let ad = device.clone().autodiff();
        Ok(Session {
            run_dir,
            seed,
            batch_size: cfg.batch_size,
            // The weights shape training; val loss stays the plain mean, comparable across runs.
            loss_train: loss(&ad, &weights),
            loss_val: loss(&device, &[]),
            device,
            ad,
            state,
            info,
            timing: Timing { started, first_epoch_seconds: None, later_head: Vec::new(), epochs_run: 0 },
            // Epoch 1 runs the backbone once per cached view: `augment_views` of each training
            // image (and of each val image with --refit), one of each test image.
            all_images: [&data.train, &data.val, &data.test].iter().map(|e| e.samples.len() * e.views.max(1)).sum(),
            select_best: true,
        })
    }

    /// Runs `phase` from where the run stands (nothing if its epochs are done): the epoch loop.
    fn run_phase<M: Module>(
        &mut self,
        phase: &Phase,
        mut model: M,
        optim: &mut ModuleOptimizer,
        trainee: &Trainee<M>,
    ) -> Result<M, TrainerError> {
        for epoch in (self.state.epoch + 1).max(*phase.epochs.start())..=*phase.epochs.end() {
            let t = Instant::now();
            self.ad.seed(self.seed.wrapping_add(epoch as u64));
            let mut rng = epoch_rng(self.seed, epoch);
            let pb = bar(trainee.train.images(), &format!("epoch {epoch}"));
            let pass =
                Pass { forward: trainee.forward, loss: &self.loss_train, device: &self.ad, batch: self.batch_size };
            let (trained, tr) = train_epoch(model, optim, phase.lr, &trainee.train, &pass, &mut rng, &pb);
            model = trained;
            pb.finish_and_clear();
            let pass =
                Pass { forward: trainee.forward, loss: &self.loss_val, device: &self.device, batch: phase.eval_batch };
            let (va, _) = evaluate(&model.valid(), &trainee.val, &pass);
            let first = self.timing.first_epoch_seconds.is_none();
            let secs = if first { self.timing.started.elapsed() } else { t.elapsed() }.as_secs_f64();
            let images = if first { self.all_images } else { trainee.train.images() };
            let row = EpochRow {
                epoch,
                phase: phase.name.into(),
                train_loss: tr.loss,
                train_acc: tr.acc,
                val_loss: va.loss,
                val_acc: va.acc,
                lr: phase.lr,
                seconds: secs,
                images_per_s: images as f64 / secs,
            };
            self.finish_epoch(row, &model, optim, trainee.best)?;
            if first {
                self.timing.first_epoch_seconds = Some(secs);
            } else if phase.layers == 0 {
                self.timing.later_head.push(secs);
            }
            self.timing.epochs_run += 1;
        }
        Ok(model)
    }

    /// Logs the epoch, keeps the best model, checkpoints, rewrites the history and run.json.
    fn finish_epoch<M: Module>(
        &mut self,
        row: EpochRow,
        model: &M,
        optim: &ModuleOptimizer,
        best: &dyn Fn(&M) -> TrainedModel,
    ) -> Result<(), TrainerError> {
        tracing::info!(
            "epoch {} [{}] train loss {:.4} acc {:.4} | val loss {:.4} acc {:.4} | {:.2}s",
            row.epoch,
            row.phase,
            row.train_loss,
            row.train_acc,
            row.val_loss,
            row.val_acc,
            row.seconds
        );
        let state = &mut self.state;
        if !self.select_best || is_better(&row, state) {
            state.best_val_acc = row.val_acc;
            state.best_epoch = row.epoch;
            save_module(best(model), &self.run_dir.join(BEST_MODEL))?;
        }
        state.epoch = row.epoch;
        state.phase = row.phase.clone();
        state.history.push(row);
        checkpoint::save(self.run_dir, model.clone(), optim, state)?;
        history::write(self.run_dir, &state.history)?;
        self.info.val_accuracy = state.best_val_acc;
        self.info.best_epoch = state.best_epoch;
        self.info.write(self.run_dir)
    }
}

/// The best model is the one with the highest val accuracy; on a tie (small val sets saturate:
/// 108 images move in steps of 0.9 points) the lower val loss wins, as Keras's checkpointing
/// on val_loss would choose. Only val decides: test/ is never looked at.
fn is_better(row: &EpochRow, state: &CheckpointState) -> bool {
    let best_loss = state.history.iter().find(|r| r.epoch == state.best_epoch).map_or(f64::INFINITY, |r| r.val_loss);
    row.val_acc > state.best_val_acc || (row.val_acc == state.best_val_acc && row.val_loss < best_loss)
}

type Resume<'r> = Option<&'r (PathBuf, CheckpointState)>;

/// The head phase: a new head (seeded), restored from the checkpoint when it holds one.
pub(super) fn train_head(
    s: &mut Session,
    cfg: &FitConfig,
    data: &Prepared,
    resume: Resume,
) -> Result<Head, TrainerError> {
    let phase = Phase::head(cfg);
    s.ad.seed(s.seed);
    let mut head = Head::new(data.train.feat_dim, data.labels.len(), cfg.dropout, &s.ad)?;
    let mut optim = optimizer(cfg);
    if let Some((dir, state)) = resume
        && phase.owns(state.epoch)
    {
        head = load_module(head, &dir.join(checkpoint::MODEL_FILE))?;
        optim = checkpoint::load_optimizer(optim, dir)?;
    }
    let frozen = &data.frozen;
    let best = |h: &Head| TrainedModel { backbone: frozen.clone(), head: h.valid() };
    let trainee = Trainee {
        forward: &head_forward,
        train: Rows::features(&data.train),
        val: Rows::features(&data.val),
        best: &best,
    };
    s.run_phase(&phase, head, &mut optim, &trainee)
}

/// The fine-tune phase: the top stages above `boundary` and `head`. BatchNorm stays in
/// inference mode (running statistics); all weights may take gradients, but only the top
/// stages are in the graph (their input is the cached boundary activation), so only they and
/// the head change.
pub(super) fn fine_tune(
    s: &mut Session,
    cfg: &FitConfig,
    phase: &Phase,
    boundary: usize,
    head: Head,
    data: &Prepared,
    resume: Resume,
) -> Result<(), TrainerError> {
    let backbone = data.backbone.clone().with_frozen_batchnorm(true).fork(&s.ad).set_require_grad(true);
    let mut model = TrainedModel { backbone, head };
    let mut optim = optimizer(cfg);
    if let Some((dir, state)) = resume
        && phase.owns(state.epoch)
    {
        model = load_module(model, &dir.join(checkpoint::MODEL_FILE))?;
        optim = checkpoint::load_optimizer(optim, dir)?;
    }
    let shape = data.train.act_shape.clone();
    let forward = move |m: &TrainedModel, x: Vec<f32>, n: usize, d: &Device| top_forward(m, boundary, &shape, x, n, d);
    let best = |m: &TrainedModel| m.valid();
    let trainee = Trainee {
        forward: &forward,
        train: Rows::activations(&data.train),
        val: Rows::activations(&data.val),
        best: &best,
    };
    s.run_phase(phase, model, &mut optim, &trainee).map(|_| ())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::fit) fn config(epochs: usize, fine_tune_layers: usize, fine_tune_epochs: usize) -> FitConfig {
        FitConfig {
            epochs,
            batch_size: 8,
            lr: 1e-3,
            optimizer: OptimizerKind::Adam,
            momentum: 0.9,
            label_smoothing: 0.1,
            dropout: 0.2,
            augment: Vec::new(),
            augment_views: 1,
            fine_tune_layers,
            fine_tune_epochs,
            fine_tune_lr_factor: 0.1,
            class_weights: crate::run::ClassWeights::None,
            refit: false,
        }
    }

    #[test]
    fn the_best_epoch_is_the_highest_val_accuracy_then_the_lowest_val_loss() {
        let row = |epoch: usize, val_acc: f64, val_loss: f64| EpochRow {
            epoch,
            phase: PHASE_HEAD.into(),
            train_loss: 0.5,
            train_acc: 0.9,
            val_loss,
            val_acc,
            lr: 1e-3,
            seconds: 1.0,
            images_per_s: 10.0,
        };
        let mut state = CheckpointState {
            epoch: 2,
            phase: PHASE_HEAD.into(),
            history: vec![row(1, 0.90, 0.40), row(2, 0.95, 0.30)],
            best_val_acc: 0.95,
            best_epoch: 2,
        };
        assert!(is_better(&row(3, 0.96, 0.90), &state), "higher accuracy wins whatever the loss");
        assert!(is_better(&row(3, 0.95, 0.29), &state), "a tie goes to the lower loss");
        assert!(!is_better(&row(3, 0.95, 0.31), &state));
        assert!(!is_better(&row(3, 0.94, 0.01), &state), "lower accuracy never wins");
        state.best_epoch = 0;
        state.best_val_acc = -1.0;
        assert!(is_better(&row(1, 0.0, 9.0), &state), "the first epoch is the first best");
    }

    #[test]
    fn phases_number_epochs_continuously_and_own_their_checkpoints() {
        let cfg = config(6, 2, 3);
        let head = Phase::head(&cfg);
        let fine = Phase::fine_tune(&cfg).unwrap();
        assert_eq!((head.epochs.clone(), head.layers, head.lr), (1..=6, 0, 1e-3));
        assert_eq!((fine.epochs.clone(), fine.layers, fine.name), (7..=9, 2, PHASE_FINE_TUNE));
        assert!((fine.lr - 1e-4).abs() < 1e-12);
        // A checkpoint after epoch 6 holds the head only: the fine-tune phase starts fresh from it.
        assert!(head.owns(6) && !fine.owns(6) && fine.owns(7) && !head.owns(7));
        assert!(Phase::fine_tune(&config(6, 0, 0)).is_none());
    }
}
