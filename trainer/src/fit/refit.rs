//! `--refit`: once val has chosen the best epoch E, the same schedule (the head phase, then
//! fine-tuning, up to epoch E) is trained again from scratch on train + val, and that model
//! becomes the run's `best.bpk`. Small datasets lose a sixth of their training images to
//! validation; the refit gets them back without letting anything be chosen on what it trains
//! on (E comes from the first run, the refit's last epoch is the model). The model val chose
//! is kept as `selected.bpk`, and its val scores stay in metrics.json and run.json.
//!
//! The refit runs in `RUN/refit/` (its own run.json, history and checkpoints), so an
//! interrupted refit resumes there with `--resume` like any run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::FitOptions;
use super::phase::{self, Phase, Session};
use super::setup::Prepared;
use crate::cache::Extracted;
use crate::checkpoint;
use crate::error::TrainerError;
use crate::run::{BEST_MODEL, FitConfig};

/// The refit's run folder, inside the run's.
pub const REFIT_DIR: &str = "refit";
/// The model val chose, kept when `--refit` puts the refit model at `best.bpk`.
pub const SELECTED_MODEL: &str = "selected.bpk";

/// The model val chose: `selected.bpk` once a refit has replaced `best.bpk`, else `best.bpk`.
pub fn selected_model(run_dir: &Path) -> PathBuf {
    let selected = run_dir.join(SELECTED_MODEL);
    if selected.is_file() { selected } else { run_dir.join(BEST_MODEL) }
}

/// The schedule up to `best_epoch`: head epochs first, the rest fine-tuning.
fn schedule(cfg: &FitConfig, best_epoch: usize) -> FitConfig {
    let mut c = cfg.clone();
    c.epochs = best_epoch.clamp(1, cfg.epochs);
    c.fine_tune_epochs = best_epoch.saturating_sub(cfg.epochs);
    if c.fine_tune_epochs == 0 {
        c.fine_tune_layers = 0;
    }
    c.refit = false;
    c
}

/// `a` then `b` (same views and row sizes).
fn concat(a: &Extracted, b: &Extracted) -> Extracted {
    let mut out = a.clone();
    out.samples.extend(b.samples.iter().cloned());
    out.content.extend(b.content.iter().cloned());
    out.features.extend_from_slice(&b.features);
    out.activations.extend_from_slice(&b.activations);
    if out.act_shape.is_empty() {
        out.act_shape = b.act_shape.clone();
    }
    out
}

/// Trains the refit (or resumes it) and installs it as `RUN/best.bpk`; returns its epochs.
pub(super) fn run(
    opts: &FitOptions,
    cfg: &FitConfig,
    data: &Prepared,
    best_epoch: usize,
) -> Result<usize, TrainerError> {
    let run_dir = &opts.out;
    let dir = run_dir.join(REFIT_DIR);
    std::fs::create_dir_all(&dir).map_err(TrainerError::io(&dir))?;
    let cfg = schedule(cfg, best_epoch);
    let epochs = cfg.epochs + cfg.fine_tune_epochs;
    if data.val.views != data.train.views {
        return Err(TrainerError::InvalidArgument(format!(
            "--refit needs the val images with {} cached views, they have {}",
            data.train.views, data.val.views
        )));
    }
    let both = Prepared {
        device: data.device.clone(),
        backbone: data.backbone.clone(),
        frozen: data.frozen.clone(),
        boundary: if cfg.fine_tune_layers > 0 { data.boundary } else { None },
        labels: data.labels.clone(),
        preprocessing: data.preprocessing,
        train: concat(&data.train, &data.val),
        // Val is training data now: its scores in the refit's history are training scores.
        val: data.val.clone(),
        test: Extracted::default(),
        frozen_engine: None,
        skipped: Vec::new(),
    };
    tracing::info!(
        "refit: epochs 1-{epochs} again from scratch on {} train + {} val images",
        data.train.samples.len(),
        data.val.samples.len()
    );
    let resume = if opts.resume { checkpoint::latest(&dir)? } else { None };
    let info = both.run_info(opts, &cfg);
    let resumed = resume.as_ref().map(|(_, s)| s.clone());
    let mut session = Session::start(&dir, opts.seed, &cfg, &both, info, resumed, Instant::now())?;
    session.select_best = false;
    // Not a first epoch: no feature extraction is timed here.
    session.timing.first_epoch_seconds = Some(0.0);
    let head = phase::train_head(&mut session, &cfg, &both, resume.as_ref())?;
    if let (Some(fine), Some(boundary)) = (Phase::fine_tune(&cfg), both.boundary) {
        phase::fine_tune(&mut session, &cfg, &fine, boundary, head, &both, resume.as_ref())?;
    }
    session.info.finished = true;
    session.info.write(&dir)?;

    // Keep the model val chose, then put the refit in its place; each step is an atomic
    // write, and a rerun after a crash between them finds selected.bpk and only redoes the
    // second.
    let selected = run_dir.join(SELECTED_MODEL);
    if !selected.is_file() {
        copy_atomic(&run_dir.join(BEST_MODEL), &selected)?;
    }
    copy_atomic(&dir.join(BEST_MODEL), &run_dir.join(BEST_MODEL))?;
    Ok(epochs)
}

fn copy_atomic(from: &Path, to: &Path) -> Result<(), TrainerError> {
    let bytes = std::fs::read(from).map_err(TrainerError::io(from))?;
    common::write_atomic(to, &bytes).map_err(TrainerError::io(to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refit_schedule_stops_at_the_chosen_epoch() {
        let mut cfg = crate::fit::phase::tests::config(30, 4, 10);
        (cfg.augment, cfg.augment_views, cfg.refit) = (vec!["flip".into()], 5, true);
        let s = schedule(&cfg, 36);
        assert_eq!((s.epochs, s.fine_tune_layers, s.fine_tune_epochs, s.refit), (30, 4, 6, false));
        let s = schedule(&cfg, 12);
        assert_eq!((s.epochs, s.fine_tune_layers, s.fine_tune_epochs), (12, 0, 0));
        assert_eq!(schedule(&cfg, 0).epochs, 1);
        assert_eq!(s.augment_views, 5);
    }
}
