//! Per-epoch training history, written after every epoch as `history.csv` and `history.json`
//! (both rewritten whole and atomically from the rows the checkpoint holds, so a resumed run
//! never has a missing or duplicated epoch).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::TrainerError;

/// `head`: frozen backbone, new head; `fine-tune`: the top layers unfrozen too.
pub const PHASE_HEAD: &str = "head";
pub const PHASE_FINE_TUNE: &str = "fine-tune";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    pub epoch: usize,
    pub phase: String,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub lr: f64,
    pub seconds: f64,
    /// Images through the network per second. Epoch 1 includes the frozen backbone pass over
    /// every split, where each cached augmented view of a training image counts as one image
    /// (it is decoded, augmented and run through the backbone like one).
    pub images_per_s: f64,
}

pub const CSV_HEADER: &str = "epoch,phase,train_loss,train_acc,val_loss,val_acc,lr,seconds,images_per_s";

pub fn to_csv(rows: &[EpochRow]) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for r in rows {
        s.push_str(&format!(
            "{},{},{:.6},{:.6},{:.6},{:.6},{:e},{:.3},{:.1}\n",
            r.epoch, r.phase, r.train_loss, r.train_acc, r.val_loss, r.val_acc, r.lr, r.seconds, r.images_per_s
        ));
    }
    s
}

/// Writes `RUN_DIR/history.csv` and `RUN_DIR/history.json`.
pub fn write(run_dir: &Path, rows: &[EpochRow]) -> Result<(), TrainerError> {
    let csv = run_dir.join("history.csv");
    common::write_atomic(&csv, to_csv(rows).as_bytes()).map_err(TrainerError::io(csv))?;
    let json = run_dir.join("history.json");
    common::write_atomic(&json, &serde_json::to_vec_pretty(rows).unwrap_or_default()).map_err(TrainerError::io(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_round_trips_and_csv_has_one_line_per_epoch() {
        let d = tempfile::tempdir().unwrap();
        let row = |epoch| EpochRow {
            epoch,
            phase: PHASE_HEAD.into(),
            train_loss: 0.5,
            train_acc: 0.75,
            val_loss: 0.4,
            val_acc: 0.8,
            lr: 1e-3,
            seconds: 1.5,
            images_per_s: 100.0,
        };
        let rows = vec![row(1), row(2)];
        write(d.path(), &rows).unwrap();
        let json = std::fs::read_to_string(d.path().join("history.json")).unwrap();
        assert_eq!(serde_json::from_str::<Vec<EpochRow>>(&json).unwrap(), rows);
        let csv = std::fs::read_to_string(d.path().join("history.csv")).unwrap();
        assert_eq!(csv.lines().count(), 3);
        assert!(csv.lines().nth(2).unwrap().starts_with("2,head,0.5"));
    }
}
