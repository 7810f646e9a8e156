//! `trainer predict --run RUN_DIR IMAGE...`: the trained model (burn, before export) on image
//! files, through the same preprocessing the runtime uses. Also the batch inference behind
//! `trainer eval`.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use models::{ImageLimits, ImageRecord, Preprocessor};

use crate::checkpoint::{TrainedModel, load_best};
use crate::error::TrainerError;
use crate::head::tensor_values;
use crate::run::{DeviceKind, RunInfo};

/// What `trainer predict` classifies (see `trainer predict --help`).
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// The `trainer fit --out` folder.
    pub run: PathBuf,
    /// Image files and folders (searched recursively).
    pub images: Vec<PathBuf>,
    /// Classes shown per image (at least 1).
    pub top_k: usize,
    /// One JSON object per line ([`ImageRecord`], as `edge-runtime classify --json`) instead of text.
    pub json: bool,
    pub device: DeviceKind,
}

/// One classified file.
#[derive(Debug, Clone)]
pub struct Classified {
    /// Softmax probabilities, one per label.
    pub probs: Vec<f32>,
    /// This image's share of its batch's decode + preprocessing + inference + softmax time.
    pub latency_ms: f64,
}

/// Softmax probabilities per file, or why the file could not be classified. Files run in
/// batches of `batch`; each classified file is charged an equal share of its batch's time.
pub fn classify_files(
    model: &TrainedModel,
    info: &RunInfo,
    paths: &[PathBuf],
    batch: usize,
    device: &Device,
) -> Vec<Result<Classified, String>> {
    let spec = info.preprocessing;
    let mut pre = Preprocessor::new(spec);
    let mut out = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(batch.max(1)) {
        let start = Instant::now();
        let inputs: Vec<Result<Vec<f32>, String>> =
            chunk.iter().map(|p| pre.tensor_from_file(p, ImageLimits::default()).map_err(|e| e.to_string())).collect();
        let ok: Vec<&Vec<f32>> = inputs.iter().filter_map(|r| r.as_ref().ok()).collect();
        let mut probs = Vec::new().into_iter();
        if !ok.is_empty() {
            let data: Vec<f32> = ok.iter().flat_map(|v| v.iter().copied()).collect();
            let x = Tensor::<4>::from_data(
                TensorData::new(data, [ok.len(), 3, spec.height as usize, spec.width as usize]),
                device,
            );
            let logits = tensor_values(model.logits(x));
            let k = info.labels.len();
            probs = logits.chunks_exact(k).map(common::softmax).collect::<Vec<_>>().into_iter();
        }
        let latency_ms = start.elapsed().as_secs_f64() * 1000.0 / ok.len().max(1) as f64;
        for r in inputs {
            out.push(r.map(|_| Classified { probs: probs.next().unwrap_or_default(), latency_ms }));
        }
    }
    out
}

/// How a `trainer predict` went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictSummary {
    pub classified: usize,
    /// Unreadable, undecodable or missing files, and HEIC photos found in folders.
    pub failed: usize,
}

/// Prints predictions for the files and the images under the folders (recursive, sorted, as
/// `edge-runtime classify` finds them).
pub fn run(opts: &PredictOptions) -> Result<PredictSummary, TrainerError> {
    let (images, passed) = edge_runtime::classify::collect_images(&opts.images);
    if images.is_empty() && passed.is_empty() {
        let paths = opts.images.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(TrainerError::InvalidArgument(format!("no image files in {paths}")));
    }
    for p in &passed {
        eprintln!("error: {}: {}", p.path.display(), p.reason);
    }
    let device = opts.device.device()?;
    let (model, info) = load_best(&opts.run, &device)?;
    let results = classify_files(&model, &info, &images, 16, &device);
    let mut summary = PredictSummary { classified: 0, failed: passed.len() };
    for (path, r) in images.iter().zip(results) {
        match r {
            Ok(c) => {
                summary.classified += 1;
                let record = ImageRecord {
                    path: path.display().to_string(),
                    top: info.labels.top_k(&c.probs, opts.top_k),
                    latency_ms: c.latency_ms,
                };
                if opts.json {
                    println!("{}", serde_json::to_string(&record).unwrap_or_default());
                } else {
                    let text: Vec<String> = record.top.iter().map(|p| format!("{} {:.3}", p.label, p.score)).collect();
                    println!("{}\t{}", record.path, text.join("  "));
                }
            }
            Err(e) => {
                summary.failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    Ok(summary)
}
