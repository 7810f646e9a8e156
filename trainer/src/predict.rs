//! `trainer predict --run RUN_DIR IMAGE...`: the trained model (burn, before export) on image
//! files, through the same preprocessing the runtime uses. Also the batch inference behind
//! `trainer eval`.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use models::{ImageLimits, Preprocessor};
use serde::Serialize;

use crate::checkpoint::{TrainedModel, load_best};
use crate::error::TrainerError;
use crate::head::tensor_values;
use crate::run::{DeviceKind, RunInfo};

/// Classify images with a trained run's best model.
#[derive(Debug, Clone, clap::Args)]
pub struct PredictArgs {
    /// The `trainer fit --out` folder.
    #[arg(long)]
    pub run: PathBuf,
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Classes shown per image.
    #[arg(long, default_value_t = 3)]
    pub top_k: usize,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceKind,
}

/// Softmax probabilities per file, or why the file could not be classified.
pub fn classify_files(model: &TrainedModel, info: &RunInfo, paths: &[PathBuf], batch: usize, device: &Device) -> Vec<Result<Vec<f32>, String>> {
    let spec = info.preprocessing;
    let mut pre = Preprocessor::new(spec);
    let mut out = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(batch.max(1)) {
        let inputs: Vec<Result<Vec<f32>, String>> =
            chunk.iter().map(|p| pre.tensor_from_file(p, ImageLimits::default()).map_err(|e| e.to_string())).collect();
        let ok: Vec<&Vec<f32>> = inputs.iter().filter_map(|r| r.as_ref().ok()).collect();
        let mut probs = Vec::new().into_iter();
        if !ok.is_empty() {
            let data: Vec<f32> = ok.iter().flat_map(|v| v.iter().copied()).collect();
            let x = Tensor::<4>::from_data(TensorData::new(data, [ok.len(), 3, spec.height as usize, spec.width as usize]), device);
            let logits = tensor_values(model.logits(x));
            let k = info.labels.len();
            probs = logits.chunks_exact(k).map(edge_runtime::softmax).collect::<Vec<_>>().into_iter();
        }
        for r in inputs {
            out.push(r.map(|_| probs.next().unwrap_or_default()));
        }
    }
    out
}

#[derive(Serialize)]
struct Line<'a> {
    image: &'a Path,
    top: Vec<(String, f32)>,
}

/// Prints predictions; returns how many images failed (unreadable/undecodable).
pub fn run(args: &PredictArgs) -> Result<usize, TrainerError> {
    let device = args.device.device();
    let (model, info) = load_best(&args.run, &device)?;
    let results = classify_files(&model, &info, &args.images, 16, &device);
    let mut failed = 0;
    for (path, r) in args.images.iter().zip(results) {
        match r {
            Ok(probs) => {
                let top: Vec<(String, f32)> =
                    edge_runtime::top_k(&probs, args.top_k.max(1)).into_iter().map(|(i, p)| (info.labels.get(i).to_string(), p)).collect();
                if args.json {
                    println!("{}", serde_json::to_string(&Line { image: path, top }).unwrap_or_default());
                } else {
                    let text: Vec<String> = top.iter().map(|(l, p)| format!("{l} {p:.3}")).collect();
                    println!("{}\t{}", path.display(), text.join("  "));
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    Ok(failed)
}
