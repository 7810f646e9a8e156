//! What `trainer fit` prints at the end.

use std::path::PathBuf;

use models::Backbone;

use crate::history::EpochRow;
use crate::metrics::Metrics;

/// The run's one-screen summary (see its `Display`).
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
    /// The best model on `DIR/test/` (None without one).
    pub test_metrics: Option<Metrics>,
    pub test_images: usize,
    /// What ran the frozen backbone pass (None: all cached).
    pub frozen_engine: Option<crate::frozen::FrozenEngine>,
    pub history: Vec<EpochRow>,
    /// `--refit`: epochs the model in best.bpk was trained on train + val.
    pub refit_epochs: Option<usize>,
}

/// The one-screen summary.
impl std::fmt::Display for FitSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "run            {}", self.run_dir.display())?;
        writeln!(f, "backbone       {} ({} classes)", self.backbone, self.classes)?;
        let test = if self.test_images > 0 { format!(", {} test", self.test_images) } else { String::new() };
        writeln!(
            f,
            "images         {} train, {} val{test}, {} skipped",
            self.train_images,
            self.val_images,
            self.skipped.len()
        )?;
        for (p, why) in self.skipped.iter().take(5) {
            writeln!(f, "  skipped      {}: {why}", p.display())?;
        }
        if self.skipped.len() > 5 {
            writeln!(f, "  ... and {} more (listed in run.json)", self.skipped.len() - 5)?;
        }
        let engine = self.frozen_engine.map(|e| format!(" (frozen pass: {e})")).unwrap_or_default();
        writeln!(
            f,
            "features       {} computed, {} from cache{engine}",
            self.features_computed, self.features_from_cache
        )?;
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
        for line in self.metrics.class_lines() {
            writeln!(f, "  {line}")?;
        }
        let mut files = "run.json best.bpk history.csv history.json metrics.json".to_string();
        if let Some(e) = self.refit_epochs {
            writeln!(
                f,
                "refit          epochs 1-{e} again on {} train + {} val images: best.bpk (val's choice: selected.bpk)",
                self.train_images, self.val_images
            )?;
            files.push_str(" selected.bpk refit/");
        }
        if let Some(t) = &self.test_metrics {
            let model = if self.refit_epochs.is_some() { "refit model" } else { "best-by-val model" };
            writeln!(
                f,
                "test           accuracy {:.4} on {} images ({model}, scored once)",
                t.accuracy, self.test_images
            )?;
            files.push_str(" test_metrics.json");
        }
        write!(f, "files          {files} curves.png confusion.png predictions.png")
    }
}
