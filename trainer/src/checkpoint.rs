//! Per-epoch checkpoints, module records and the trained model.
//!
//! A checkpoint is a folder `RUN_DIR/checkpoints/epoch-NNN/` holding the trainable module
//! (`model.bpk`: the head in the head phase, backbone + head when fine-tuning), the optimizer
//! state (`optim.bpk`) and `state.json` (history so far, best epoch). It is written under a
//! temporary name and renamed, so after a crash (even kill -9) every `epoch-NNN` folder is
//! complete. burn records keep parameter ids, so the optimizer state matches on resume.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::{ModuleOptimizer, OptimizerRecord};
use burn::store::ModuleRecord;
use burn::tensor::{Device, Tensor};
use common::AtomicFile;
use serde::{Deserialize, Serialize};

use crate::backbone::BackboneNet;
use crate::error::TrainerError;
use crate::head::Head;
use crate::history::EpochRow;
use crate::run::{BEST_MODEL, RunInfo};

fn record_err(path: &Path, e: impl std::fmt::Display) -> TrainerError {
    let reason = e.to_string();
    if TrainerError::is_no_space(&reason) {
        return TrainerError::NoSpace { path: path.to_path_buf() };
    }
    TrainerError::Checkpoint { path: path.to_path_buf(), reason }
}

/// Saves a module's parameters (burnpack) atomically: burn writes the temporary file by name,
/// the commit fsyncs it and renames it over `path`.
pub fn save_module<M: Module>(module: M, path: &Path) -> Result<(), TrainerError> {
    let file = AtomicFile::create(path).map_err(TrainerError::io(path))?;
    module.into_record().save(file.temp_path()).map_err(|e| record_err(path, e))?;
    file.commit().map_err(TrainerError::io(path))
}

/// Loads parameters saved by [`save_module`] into `module` (same structure).
pub fn load_module<M: Module>(module: M, path: &Path) -> Result<M, TrainerError> {
    let record = ModuleRecord::load(path).map_err(|e| record_err(path, format!("{e}: delete it to start over")))?;
    // `allow_unused`: a backbone record may carry the ImageNet classifier the new model lacks.
    no_panic(path, || module.try_load_record(record.allow_unused(true)))?
        .map_err(|e| record_err(path, format!("does not fit this model: {e}")))
}

/// burn panics on some damaged records instead of returning an error (fuzzing found a tensor
/// stored as U32 where a float was expected; fuzz/regressions/checkpoint/): run `f` and turn a
/// panic into an error naming the file.
fn no_panic<T>(path: &Path, f: impl FnOnce() -> T) -> Result<T, TrainerError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let msg = common::panic_message(payload.as_ref());
        record_err(path, format!("is damaged ({msg}): delete it to start over"))
    })
}

/// The classifier: backbone + new head.
#[derive(Module, Debug)]
pub struct TrainedModel {
    pub backbone: BackboneNet,
    pub head: Head,
}

impl TrainedModel {
    pub fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.backbone.features(x))
    }

    /// The model structure for `info`, parameters from `path` (a full model record).
    pub fn load(info: &RunInfo, path: &Path, device: &Device) -> Result<Self, TrainerError> {
        let skeleton = TrainedModel {
            // Running BatchNorm statistics, as trained (see fit).
            backbone: BackboneNet::new(info.backbone, device).with_frozen_batchnorm(true),
            head: Head::new(info.backbone.spec().feature_dim, info.labels.len(), info.config.dropout, device)?,
        };
        Ok(load_module(skeleton, path)?.valid())
    }
}

/// The best model of a run (by val accuracy) and its run info.
pub fn load_best(run_dir: &Path, device: &Device) -> Result<(TrainedModel, RunInfo), TrainerError> {
    let info = RunInfo::read(run_dir)?;
    let path = run_dir.join(BEST_MODEL);
    if !path.is_file() {
        return Err(TrainerError::Run {
            path,
            reason: "no best model yet: the run has not finished an epoch (`trainer fit --resume` continues it)".into(),
        });
    }
    Ok((TrainedModel::load(&info, &path, device)?, info))
}

/// What a checkpoint knows besides the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    pub epoch: usize,
    pub phase: String,
    pub history: Vec<EpochRow>,
    pub best_val_acc: f64,
    pub best_epoch: usize,
}

pub const MODEL_FILE: &str = "model.bpk";
pub const OPTIM_FILE: &str = "optim.bpk";
pub const STATE_FILE: &str = "state.json";

pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

fn epoch_dir(run_dir: &Path, epoch: usize) -> PathBuf {
    checkpoints_dir(run_dir).join(format!("epoch-{epoch:03}"))
}

/// Writes the checkpoint of `state.epoch` and drops older ones (the latest two are kept).
pub fn save<M: Module>(
    run_dir: &Path,
    module: M,
    optim: &ModuleOptimizer,
    state: &CheckpointState,
) -> Result<PathBuf, TrainerError> {
    let dir = checkpoints_dir(run_dir);
    let final_dir = epoch_dir(run_dir, state.epoch);
    let tmp = dir.join(format!(".epoch-{:03}.tmp-{}", state.epoch, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = (|| {
        std::fs::create_dir_all(&tmp).map_err(TrainerError::io(&tmp))?;
        save_module(module, &tmp.join(MODEL_FILE))?;
        let opt = tmp.join(OPTIM_FILE);
        optim.to_record().save(&opt).map_err(|e| record_err(&opt, e))?;
        let state_file = tmp.join(STATE_FILE);
        std::fs::write(&state_file, serde_json::to_vec_pretty(state).unwrap_or_default())
            .map_err(TrainerError::io(&state_file))?;
        // fsyncs every file, then renames; a leftover folder of the same epoch (a crash after
        // the rename, before the history write) is replaced: the new one is the same epoch
        // recomputed.
        common::fs::commit_dir(&tmp, &final_dir).map_err(TrainerError::io(&final_dir))
    })();
    if let Err(e) = written {
        // A failed write (a full disk) leaves no half checkpoint taking up the space.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    for (epoch, old) in list(run_dir)? {
        if epoch + 2 <= state.epoch {
            let _ = std::fs::remove_dir_all(old);
        }
    }
    Ok(final_dir)
}

/// Removes what a killed run left half-written: temporary checkpoint folders
/// (`.epoch-NNN.tmp-PID`) and atomic-write temporaries (`.NAME.XXXXXX.tmp.EXT`) in the run and
/// checkpoints folders. Called when a run is resumed (its one owner), so nothing of a live
/// writer is touched. Returns how many entries were removed.
pub fn remove_leftovers(run_dir: &Path) -> usize {
    let mut removed = 0;
    for dir in [run_dir.to_path_buf(), checkpoints_dir(run_dir)] {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for entry in rd.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with('.') && name.contains(".tmp")) {
                continue;
            }
            let path = entry.path();
            let gone = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            removed += usize::from(gone.is_ok());
        }
    }
    removed
}

/// Complete checkpoints, oldest first.
pub fn list(run_dir: &Path) -> Result<Vec<(usize, PathBuf)>, TrainerError> {
    let dir = checkpoints_dir(run_dir);
    let Ok(rd) = std::fs::read_dir(&dir) else { return Ok(Vec::new()) };
    let mut out: Vec<(usize, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let epoch = name.strip_prefix("epoch-")?.parse().ok()?;
            Some((epoch, e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The latest complete checkpoint: its folder and state.
pub fn latest(run_dir: &Path) -> Result<Option<(PathBuf, CheckpointState)>, TrainerError> {
    let Some((_, dir)) = list(run_dir)?.pop() else { return Ok(None) };
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(TrainerError::io(&path))?;
    let state = serde_json::from_str(&text).map_err(|e| record_err(&path, e))?;
    Ok(Some((dir, state)))
}

pub fn load_optimizer(optim: ModuleOptimizer, checkpoint: &Path) -> Result<ModuleOptimizer, TrainerError> {
    let path = checkpoint.join(OPTIM_FILE);
    let record = OptimizerRecord::load(&path).map_err(|e| record_err(&path, e))?;
    no_panic(&path, || optim.load_record(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_a_killed_run_are_removed_and_nothing_else() {
        let run = tempfile::tempdir().unwrap();
        let ck = checkpoints_dir(run.path());
        std::fs::create_dir_all(ck.join(".epoch-004.tmp-1234")).unwrap();
        std::fs::write(ck.join(".epoch-004.tmp-1234").join(MODEL_FILE), b"half").unwrap();
        std::fs::create_dir_all(ck.join("epoch-003")).unwrap();
        std::fs::write(run.path().join(".best.bpk.AbC123.tmp.bpk"), b"half").unwrap();
        std::fs::write(run.path().join("history.json"), b"[]").unwrap();
        assert_eq!(remove_leftovers(run.path()), 2);
        assert!(ck.join("epoch-003").is_dir() && run.path().join("history.json").is_file());
        assert_eq!(std::fs::read_dir(&ck).unwrap().count(), 1);
        assert_eq!(std::fs::read_dir(run.path()).unwrap().count(), 2);
    }
}
