//! `trainer eval --run RUN_DIR --data DIR`: the best model of a run on a labelled image folder
//! (DIR/val/ or DIR/test/ when present, else DIR/<class>/ itself), with the same metrics as
//! `metrics.json`. Class folders are matched to the run's labels by name.

use std::path::PathBuf;

use crate::checkpoint::load_best;
use crate::data::Sample;
use crate::error::TrainerError;
use crate::metrics::Metrics;
use crate::predict::classify_files;
use crate::run::DeviceKind;

/// What `trainer eval` evaluates (see `trainer eval --help`).
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The `trainer fit --out` folder.
    pub run: PathBuf,
    /// DIR/<split>/<class>/, or DIR/val/ or DIR/test/, else DIR/<class>/ (None: the run's
    /// data folder).
    pub data: Option<PathBuf>,
    /// `val` or `test`: that sub-folder of `data`. `val` without `data`, when the run's data has
    /// no val/ folder: the validation images the run held out of train/.
    pub split: Option<String>,
    /// Also write the metrics as JSON to this file.
    pub json: Option<PathBuf>,
    pub limit_per_class: Option<usize>,
    pub device: DeviceKind,
}

pub struct EvalReport {
    pub metrics: Metrics,
    pub skipped: Vec<(PathBuf, String)>,
}

pub fn run(args: &EvalOptions) -> Result<EvalReport, TrainerError> {
    let device = args.device.device()?;
    let (model, info) = load_best(&args.run, &device)?;
    let data = args.data.clone().unwrap_or_else(|| info.data_dir.clone());
    // `--split val` on the run's own data without a val/ folder: the validation images the run
    // held out of train/ (the split metrics.json was computed on).
    let held_out =
        args.data.is_none() && args.split.as_deref() == Some("val") && !crate::data::split_dir(&data, "val").is_dir();
    let (samples, mut skipped) = if held_out {
        (crate::data::splits_for_run(&info)?.val, Vec::new())
    } else {
        crate::data::open_labelled_folder(&data, args.split.as_deref(), &info.labels)?
    };
    let samples = match args.limit_per_class {
        Some(n) => crate::data::limit_per_class(samples, n),
        None => samples,
    };
    let paths: Vec<PathBuf> = samples.iter().map(|s| s.path.clone()).collect();
    let results = classify_files(&model, &info, &paths, 16, &device);
    let (mut truth, mut predicted) = (Vec::new(), Vec::new());
    for (Sample { path, label }, r) in samples.into_iter().zip(results) {
        match r {
            Ok(c) => {
                truth.push(label);
                predicted.push(common::argmax(&c.probs));
            }
            Err(e) => skipped.push((path, e)),
        }
    }
    if truth.is_empty() {
        return Err(TrainerError::Dataset { path: data, reason: "no readable image to evaluate".into() });
    }
    let metrics = Metrics::compute(&info.labels, &truth, &predicted);
    if let Some(p) = &args.json {
        metrics.write(p)?;
    }
    Ok(EvalReport { metrics, skipped })
}
