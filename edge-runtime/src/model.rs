//! The runtime core: an ONNX classifier loaded once into an optimized tract plan, with the
//! perch manifest (labels, preprocessing) that says how to feed it and read its output.
//!
//! The manifest comes from the model's `metadata_props["perch.manifest"]`; a model without
//! one (e.g. the reference ImageNet models) is described by `--preset NAME --labels FILE`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use common::softmax;
use models::{Backbone, Labels, Manifest, Prediction};
use prost::Message;
use serde::{Deserialize, Serialize};
use tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use crate::error::{Result, RuntimeError};
use crate::int8::{self, Int8Mode};

/// What to load and how.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub model: PathBuf,
    /// Describe a model that has no perch manifest (needs `labels`).
    pub preset: Option<Backbone>,
    /// Labels file: required with `preset`; otherwise overrides the manifest's labels.
    pub labels: Option<PathBuf>,
    /// Intra-op threads: tract's matrix products run on a private pool of this many threads
    /// (None or 1: on the calling thread).
    pub threads: Option<usize>,
    pub int8: Int8Mode,
}

impl LoadOptions {
    pub fn new(model: impl Into<PathBuf>) -> Self {
        LoadOptions { model: model.into(), preset: None, labels: None, threads: None, int8: Int8Mode::Auto }
    }
}

/// How the loaded graph executes: plain float, or an int8 (QDQ) model run natively or with
/// its weights folded back to float (see `int8.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Execution {
    Fp32,
    Int8Native,
    Int8Weights,
}

impl Execution {
    /// `fp32`, `int8-native`, `int8-weights`: `int8-` + the [`Int8Mode`] name.
    pub fn name(self) -> &'static str {
        match self {
            Execution::Fp32 => "fp32",
            Execution::Int8Native => "int8-native",
            Execution::Int8Weights => "int8-weights",
        }
    }

    /// The int8 mode this execution runs (None for fp32).
    pub fn int8_mode(self) -> Option<Int8Mode> {
        match self {
            Execution::Fp32 => None,
            Execution::Int8Native => Some(Int8Mode::Native),
            Execution::Int8Weights => Some(Int8Mode::Weights),
        }
    }
}

type Plan = Arc<TypedRunnableModel>;

/// A classifier ready to run: tract plan built once, manifest, input shape.
pub struct Classifier {
    plan: Plan,
    manifest: Manifest,
    path: PathBuf,
    execution: Execution,
    /// Timings behind an `--int8 auto` choice, (native ms, weights ms), for the logs.
    auto_timings: Option<(f64, f64)>,
    executor: Executor,
    /// sha256 of the model file as loaded (records carry it as `model_sha256`).
    sha256: String,
    /// Read, parse, optimize (and `--int8 auto` timing), seconds.
    load_s: f64,
}

impl Classifier {
    pub fn load(opts: &LoadOptions) -> Result<Self> {
        let started = Instant::now();
        let path = opts.model.clone();
        let executor = executor_for(opts.threads);
        let (proto, sha256) = read_proto_and_sha(&path)?;
        let manifest = resolve_manifest(&proto, opts)?;
        let build = |proto: &ModelProto| build_plan(&path, &manifest, proto);
        let mut auto_timings = None;
        let (plan, execution) = if !int8::is_qdq(&proto) {
            (build(&proto)?, Execution::Fp32)
        } else {
            let folded =
                || int8::fold_qdq_to_f32(&proto).map_err(|reason| RuntimeError::Int8 { path: path.clone(), reason });
            match opts.int8 {
                Int8Mode::Native => (build(&proto)?, Execution::Int8Native),
                Int8Mode::Weights => (build(&folded()?)?, Execution::Int8Weights),
                Int8Mode::Auto => {
                    // Which is faster depends on the CPU's int8 kernels: measure, keep the winner.
                    let native = build(&proto)?;
                    let weights = build(&folded()?)?;
                    let t_native = time_plan(&native, &manifest, &executor)?;
                    let t_weights = time_plan(&weights, &manifest, &executor)?;
                    auto_timings = Some((t_native, t_weights));
                    if t_native <= t_weights {
                        (native, Execution::Int8Native)
                    } else {
                        (weights, Execution::Int8Weights)
                    }
                }
            }
        };
        let load_s = started.elapsed().as_secs_f64();
        let c = Classifier { plan, manifest, path, execution, auto_timings, executor, sha256, load_s };
        c.check_output_count()?;
        Ok(c)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn execution(&self) -> Execution {
        self.execution
    }

    /// sha256 (hex) of the model file this classifier was loaded from.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Seconds the load took (read, parse, optimize).
    pub fn load_seconds(&self) -> f64 {
        self.load_s
    }

    /// For `--int8 auto`: mean ms per inference of the native and weights-only plans.
    pub fn auto_timings(&self) -> Option<(f64, f64)> {
        self.auto_timings
    }

    /// Number of classes (model outputs).
    pub fn num_classes(&self) -> usize {
        self.manifest.labels.len()
    }

    /// Values of one preprocessed NCHW image.
    pub fn input_len(&self) -> usize {
        self.manifest.preprocessing.tensor_len()
    }

    /// Logits for one preprocessed NCHW image (`models::Preprocessor::tensor`).
    pub fn infer(&self, input: &[f32]) -> Result<Vec<f32>> {
        run_plan(&self.plan, &self.manifest, input, &self.executor)
    }

    /// Softmax top-k for one preprocessed image.
    pub fn classify(&self, input: &[f32], top_k: usize) -> Result<Vec<Prediction>> {
        let probs = softmax(&self.infer(input)?);
        Ok(self.top_k(&probs, top_k))
    }

    /// The `k` best classes of a probability vector, with their labels.
    pub fn top_k(&self, probs: &[f32], k: usize) -> Vec<Prediction> {
        self.manifest.labels.top_k(probs, k)
    }

    fn check_output_count(&self) -> Result<()> {
        let fact = self
            .plan
            .model()
            .output_fact(0)
            .map_err(|e| RuntimeError::Unsupported { path: self.path.clone(), reason: format!("{e:#}") })?;
        let outputs = fact.shape.as_concrete().map(|d| d.iter().product::<usize>());
        let labels = self.manifest.labels.len();
        match outputs {
            Some(n) if n == labels => Ok(()),
            Some(n) => {
                Err(RuntimeError::LabelMismatch { path: self.path.clone(), outputs: n, labels, hint: String::new() })
            }
            None => Err(RuntimeError::Unsupported {
                path: self.path.clone(),
                reason: format!("output shape {:?} is not fixed for one image", fact.shape),
            }),
        }
    }
}

fn build_plan(path: &Path, manifest: &Manifest, proto: &ModelProto) -> Result<Plan> {
    let p = &manifest.preprocessing;
    let shape = [1usize, 3, p.height as usize, p.width as usize];
    let unsupported = |e: TractError| RuntimeError::Unsupported { path: path.to_path_buf(), reason: format!("{e:#}") };
    let dir = path.parent().and_then(Path::to_str);
    let parsed = no_panic("parsing the graph", || tract_onnx::onnx().parse(proto, dir)).map_err(unsupported)?;
    if !parsed.unresolved_inputs.is_empty() {
        return Err(RuntimeError::Unsupported {
            path: path.to_path_buf(),
            reason: format!("unresolved inputs {:?}", parsed.unresolved_inputs),
        });
    }
    // Pin the input to one image of the manifest's size: a symbolic batch axis would keep
    // tract from optimizing for the shape we always run.
    no_panic("optimizing the graph", || {
        parsed
            .model
            .with_input_fact(0, f32::fact(shape).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
    })
    .map_err(unsupported)
}

/// tract panics on some malformed graphs instead of returning an error (fuzzing found an
/// unknown tensor name in the parser and a Conv whose padding has too few axes in the
/// optimizer; fuzz/regressions/onnx/): run `f` and turn a panic into an error, so a bad model
/// file is refused with a message, never a crash.
fn no_panic<T>(what: &str, f: impl FnOnce() -> TractResult<T>) -> TractResult<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let msg = common::panic_message(payload.as_ref());
        Err(TractError::msg(format!("tract failed {what} (internal panic: {msg}); the model file is malformed")))
    })
}

/// Mean ms per inference over a few runs after a warm-up (for `--int8 auto`).
fn time_plan(plan: &Plan, manifest: &Manifest, executor: &Executor) -> Result<f64> {
    const RUNS: u32 = 3;
    let input = vec![0.1f32; manifest.preprocessing.tensor_len()];
    run_plan(plan, manifest, &input, executor)?;
    let t = Instant::now();
    for _ in 0..RUNS {
        run_plan(plan, manifest, &input, executor)?;
    }
    Ok(t.elapsed().as_secs_f64() * 1000.0 / RUNS as f64)
}

/// The pool tract runs on for `threads`; the pool lives as long as the classifier.
fn executor_for(threads: Option<usize>) -> Executor {
    match threads {
        Some(n) if n > 1 => Executor::multithread_with_name(n, "perch-infer"),
        _ => Executor::SingleThread,
    }
}

fn run_plan(plan: &Plan, manifest: &Manifest, input: &[f32], executor: &Executor) -> Result<Vec<f32>> {
    let p = &manifest.preprocessing;
    let expected = p.tensor_len();
    if input.len() != expected {
        return Err(RuntimeError::InputSize { got: input.len(), expected, width: p.width, height: p.height });
    }
    let shape = [1usize, 3, p.height as usize, p.width as usize];
    let tensor = Tensor::from_shape(&shape, input).map_err(|e| RuntimeError::Inference(format!("{e:#}")))?;
    let outputs = no_panic("running the model", || {
        multithread_tract_scope(executor.clone(), || plan.run(tvec!(tensor.into_tvalue())))
    })
    .map_err(|e| RuntimeError::Inference(format!("{e:#}")))?;
    let view = outputs[0].to_plain_array_view::<f32>().map_err(|e| RuntimeError::Inference(format!("{e:#}")))?;
    Ok(view.iter().copied().collect())
}

/// Reads and decodes the ONNX protobuf, with distinct errors for missing, empty and
/// non-ONNX/truncated files.
pub fn read_proto(path: &Path) -> Result<ModelProto> {
    read_proto_and_sha(path).map(|(proto, _)| proto)
}

/// [`read_proto`] plus the sha256 of the bytes it decoded.
fn read_proto_and_sha(path: &Path) -> Result<(ModelProto, String)> {
    let bytes = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => RuntimeError::ModelMissing { path: path.to_path_buf() },
        _ => RuntimeError::ModelIo { path: path.to_path_buf(), source },
    })?;
    if bytes.is_empty() {
        return Err(RuntimeError::ModelEmpty { path: path.to_path_buf() });
    }
    let not_onnx = |reason: String| RuntimeError::NotOnnx { path: path.to_path_buf(), reason };
    let proto = ModelProto::decode(bytes.as_slice()).map_err(|e| not_onnx(format!("protobuf decode: {e}")))?;
    // Arbitrary bytes sometimes decode as a protobuf with no graph in it.
    match &proto.graph {
        Some(g) if !g.node.is_empty() && !g.output.is_empty() => Ok((proto, models::sha256_hex(&bytes))),
        _ => Err(not_onnx("no graph with nodes and outputs".into())),
    }
}

/// The manifest stored in the model, if any.
pub fn embedded_manifest(proto: &ModelProto) -> Option<&str> {
    proto.metadata_props.iter().find(|p| p.key == models::MANIFEST_KEY).map(|p| p.value.as_str())
}

fn resolve_manifest(proto: &ModelProto, opts: &LoadOptions) -> Result<Manifest> {
    let path = &opts.model;
    let manifest_err = |source| RuntimeError::Manifest { path: path.clone(), source };
    let labels = opts.labels.as_deref().map(Labels::from_file).transpose().map_err(manifest_err)?;
    let outputs = declared_output_count(proto);
    if let Some(backbone) = opts.preset {
        let labels = labels.ok_or_else(|| RuntimeError::PresetWithoutLabels { preset: backbone.name().into() })?;
        let labels = fit_labels(labels, backbone, outputs, path)?;
        let source = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok(Manifest::for_preset(backbone, labels, &source));
    }
    let json = embedded_manifest(proto).ok_or_else(|| RuntimeError::NoManifest { path: path.clone() })?;
    let mut manifest = Manifest::from_json(json).map_err(manifest_err)?;
    if let Some(labels) = labels {
        manifest.labels = labels;
    }
    Ok(manifest)
}

/// Preset labels files list the ImageNet classes; a model with extra leading outputs
/// (MobileNetV2's `background`) gets placeholders for them so output index == label index.
pub(crate) fn fit_labels(labels: Labels, backbone: Backbone, outputs: Option<usize>, path: &Path) -> Result<Labels> {
    let offset = backbone.spec().label_offset;
    let Some(outputs) = outputs else {
        return Ok(labels);
    };
    if labels.len() == outputs {
        Ok(labels)
    } else if offset > 0 && labels.len() + offset == outputs {
        Ok(labels.with_offset(offset, "background"))
    } else {
        let hint = if offset > 0 {
            format!(" (or {} with {backbone}'s {offset} background class)", labels.len() + offset)
        } else {
            String::new()
        };
        Err(RuntimeError::LabelMismatch { path: path.to_path_buf(), outputs, labels: labels.len(), hint })
    }
}

/// Classes declared on the graph's first output (`[1, N]` or `[N]`), when the file says.
fn declared_output_count(proto: &ModelProto) -> Option<usize> {
    use tract_onnx::pb::type_proto::Value;
    let out = proto.graph.as_ref()?.output.first()?;
    let Some(Value::TensorType(t)) = out.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let dims = &t.shape.as_ref()?.dim;
    let mut n = 1usize;
    for d in dims {
        match d.value {
            Some(tract_onnx::pb::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => n *= v as usize,
            _ => {}
        }
    }
    (!dims.is_empty()).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_names_are_int8_mode_names() {
        for e in [Execution::Int8Native, Execution::Int8Weights] {
            assert_eq!(e.name(), format!("int8-{}", e.int8_mode().unwrap().name()));
        }
        assert_eq!((Execution::Fp32.name(), Execution::Fp32.int8_mode()), ("fp32", None));
    }

    #[test]
    fn preset_labels_get_the_background_offset_only_when_counts_say_so() {
        let l = Labels((0..1000).map(|i| format!("c{i}")).collect());
        let p = Path::new("m.onnx");
        let fitted = fit_labels(l.clone(), Backbone::MobileNetV2, Some(1001), p).unwrap();
        assert_eq!((fitted.len(), fitted.get(0), fitted.get(1)), (1001, "background", "c0"));
        assert_eq!(fit_labels(l.clone(), Backbone::EfficientNetLite0, Some(1000), p).unwrap(), l);
        let err = fit_labels(l, Backbone::EfficientNetLite0, Some(5), p).unwrap_err().to_string();
        assert!(err.contains("5 outputs") && err.contains("1000 labels"), "{err}");
    }
}
