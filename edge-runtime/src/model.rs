//! The runtime core: an ONNX classifier loaded once into its engine (an optimized tract plan,
//! or an onnxruntime session), with the
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

use crate::engine::Engine;
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
    /// Intra-op threads: tract's matrix products run on a private pool of this many threads,
    /// onnxruntime's on its intra-op pool (None or 1: on the calling thread).
    pub threads: Option<usize>,
    pub int8: Int8Mode,
    /// Which engine runs the graph (`auto`: both are timed, the faster kept).
    pub engine: Engine,
    /// libonnxruntime to load for `Engine::Ort`/`Auto` (a file, or a folder holding one);
    /// None: `ORT_DYLIB_PATH`, then the usual places (see `engine::find_ort_library`).
    pub ort_lib: Option<PathBuf>,
}

impl LoadOptions {
    pub fn new(model: impl Into<PathBuf>) -> Self {
        LoadOptions {
            model: model.into(),
            preset: None,
            labels: None,
            threads: None,
            int8: Int8Mode::Auto,
            engine: Engine::Tract,
            ort_lib: None,
        }
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

/// One candidate timed at load by `--int8 auto` or `--engine auto`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub engine: Engine,
    pub execution: Execution,
    /// Mean ms per inference over a few runs after a warm-up.
    pub ms: f64,
}

type Plan = Arc<TypedRunnableModel>;

/// What runs the graph.
enum Runner {
    Tract {
        plan: Plan,
        executor: Executor,
    },
    #[cfg(feature = "ort")]
    Ort(crate::engine::OrtRunner),
}

impl Runner {
    fn engine(&self) -> Engine {
        match self {
            Runner::Tract { .. } => Engine::Tract,
            #[cfg(feature = "ort")]
            Runner::Ort(_) => Engine::Ort,
        }
    }

    fn run(&self, manifest: &Manifest, input: &[f32]) -> Result<Vec<f32>> {
        let p = &manifest.preprocessing;
        let expected = p.tensor_len();
        if input.len() != expected {
            return Err(RuntimeError::InputSize { got: input.len(), expected, width: p.width, height: p.height });
        }
        let shape = [1usize, 3, p.height as usize, p.width as usize];
        match self {
            Runner::Tract { plan, executor } => run_plan(plan, shape, input, executor),
            #[cfg(feature = "ort")]
            Runner::Ort(ort) => ort.run(shape, input),
        }
    }
}

/// A classifier ready to run: the graph loaded once into its engine, manifest, input shape.
pub struct Classifier {
    runner: Runner,
    manifest: Manifest,
    path: PathBuf,
    execution: Execution,
    /// The candidates an `--int8 auto`/`--engine auto` choice was made from, for the logs.
    timings: Vec<Timing>,
    /// Why `--engine auto` left an engine out (e.g. no onnxruntime library).
    engine_note: Option<String>,
    /// sha256 of the model file as loaded (records carry it as `model_sha256`).
    sha256: String,
    /// Read, parse, optimize (and `auto` timing), seconds.
    load_s: f64,
}

impl Classifier {
    pub fn load(opts: &LoadOptions) -> Result<Self> {
        let started = Instant::now();
        let path = opts.model.clone();
        let (bytes, proto, sha256) = read_model(&path)?;
        let manifest = resolve_manifest(&proto, opts)?;
        let executions: &[Execution] = match (int8::is_qdq(&proto), opts.int8) {
            (false, _) => &[Execution::Fp32],
            (true, Int8Mode::Native) => &[Execution::Int8Native],
            (true, Int8Mode::Weights) => &[Execution::Int8Weights],
            // Which is faster depends on the engine and the CPU's int8 kernels: measure.
            (true, Int8Mode::Auto) => &[Execution::Int8Native, Execution::Int8Weights],
        };
        let engines: &[Engine] = match opts.engine {
            Engine::Tract => &[Engine::Tract],
            Engine::Ort => &[Engine::Ort],
            Engine::Auto => &[Engine::Tract, Engine::Ort],
        };
        let mut folded: Option<ModelProto> = None;
        let mut candidates = Vec::new();
        let mut engine_note = None;
        let mut first_failure = None;
        'engines: for &engine in engines {
            for &execution in executions {
                // The file's own bytes go to onnxruntime as they are; the folded graph exists
                // only as a proto (encoded for onnxruntime when it is the one asking).
                let (graph, graph_bytes) = if execution == Execution::Int8Weights {
                    if folded.is_none() {
                        let f = int8::fold_qdq_to_f32(&proto)
                            .map_err(|reason| RuntimeError::Int8 { path: path.clone(), reason })?;
                        folded = Some(f);
                    }
                    (folded.as_ref().expect("set above"), None)
                } else {
                    (&proto, Some(bytes.as_slice()))
                };
                match build_runner(engine, &path, &manifest, graph, graph_bytes, opts) {
                    Ok(runner) => candidates.push((execution, runner)),
                    // `auto` keeps whichever engines can run the model.
                    Err(e) if opts.engine == Engine::Auto => {
                        engine_note = Some(format!("{engine} not used: {e}"));
                        first_failure.get_or_insert(e);
                        continue 'engines;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let mut timings = Vec::new();
        let (execution, runner) = if candidates.len() <= 1 {
            // Empty only under `auto` when no engine could load the model: its first error.
            let Some(only) = candidates.pop() else {
                return Err(
                    first_failure.unwrap_or_else(|| RuntimeError::Inference("no engine could load the model".into()))
                );
            };
            only
        } else {
            for (execution, runner) in &candidates {
                let ms = time_runner(runner, &manifest)?;
                timings.push(Timing { engine: runner.engine(), execution: *execution, ms });
            }
            let best = (0..timings.len()).min_by(|&a, &b| timings[a].ms.total_cmp(&timings[b].ms)).unwrap_or(0);
            candidates.swap_remove(best)
        };
        let load_s = started.elapsed().as_secs_f64();
        let c = Classifier { runner, manifest, path, execution, timings, engine_note, sha256, load_s };
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

    /// The engine that runs this model (never `Auto`).
    pub fn engine(&self) -> Engine {
        self.runner.engine()
    }

    /// The engine in words for logs and the live page: `tract`, or `onnxruntime 1.32.0 (PATH)`.
    pub fn engine_detail(&self) -> String {
        match &self.runner {
            Runner::Tract { .. } => "tract".into(),
            #[cfg(feature = "ort")]
            Runner::Ort(ort) => ort.library().to_string(),
        }
    }

    /// sha256 (hex) of the model file this classifier was loaded from.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Seconds the load took (read, parse, optimize).
    pub fn load_seconds(&self) -> f64 {
        self.load_s
    }

    /// For `--int8 auto` / `--engine auto`: every candidate timed at load (empty when there was
    /// nothing to choose).
    pub fn timings(&self) -> &[Timing] {
        &self.timings
    }

    /// Why `--engine auto` left an engine out, if it did.
    pub fn engine_note(&self) -> Option<&str> {
        self.engine_note.as_deref()
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
        self.runner.run(&self.manifest, input)
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
        let labels = self.manifest.labels.len();
        let outputs = match &self.runner {
            Runner::Tract { plan, .. } => {
                let fact = plan
                    .model()
                    .output_fact(0)
                    .map_err(|e| RuntimeError::Unsupported { path: self.path.clone(), reason: format!("{e:#}") })?;
                fact.shape.as_concrete().map(|d| d.iter().product::<usize>()).ok_or_else(|| {
                    RuntimeError::Unsupported {
                        path: self.path.clone(),
                        reason: format!("output shape {:?} is not fixed for one image", fact.shape),
                    }
                })?
            }
            // onnxruntime's declared output shape may be symbolic: count what one image gives.
            #[cfg(feature = "ort")]
            Runner::Ort(_) => self.infer(&vec![0.0; self.input_len()])?.len(),
        };
        if outputs == labels {
            Ok(())
        } else {
            Err(RuntimeError::LabelMismatch { path: self.path.clone(), outputs, labels, hint: String::new() })
        }
    }
}

/// Loads one graph into one engine. `bytes` is the encoded `proto` when the caller has it (the
/// model file itself); onnxruntime otherwise gets `proto` encoded here.
fn build_runner(
    engine: Engine,
    path: &Path,
    manifest: &Manifest,
    proto: &ModelProto,
    bytes: Option<&[u8]>,
    opts: &LoadOptions,
) -> Result<Runner> {
    match engine {
        Engine::Tract => {
            Ok(Runner::Tract { plan: build_plan(path, manifest, proto)?, executor: executor_for(opts.threads) })
        }
        #[cfg(feature = "ort")]
        Engine::Ort => {
            let encoded;
            let bytes = match bytes {
                Some(b) => b,
                None => {
                    encoded = proto.encode_to_vec();
                    &encoded
                }
            };
            crate::engine::OrtRunner::new(path, bytes, opts.threads.unwrap_or(1), opts.ort_lib.as_deref())
                .map(Runner::Ort)
        }
        #[cfg(not(feature = "ort"))]
        Engine::Ort => {
            let _ = (proto, bytes);
            Err(RuntimeError::EngineNotBuilt { engine: engine.name().into() })
        }
        Engine::Auto => unreachable!("auto is resolved into tract and ort candidates"),
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

/// Mean ms per inference over a few runs after a warm-up (for `--int8 auto`, `--engine auto`).
fn time_runner(runner: &Runner, manifest: &Manifest) -> Result<f64> {
    const RUNS: u32 = 3;
    let input = vec![0.1f32; manifest.preprocessing.tensor_len()];
    runner.run(manifest, &input)?;
    let t = Instant::now();
    for _ in 0..RUNS {
        runner.run(manifest, &input)?;
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

fn run_plan(plan: &Plan, shape: [usize; 4], input: &[f32], executor: &Executor) -> Result<Vec<f32>> {
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
    read_model(path).map(|(_, proto, _)| proto)
}

/// [`read_proto`] plus the bytes it decoded and their sha256.
fn read_model(path: &Path) -> Result<(Vec<u8>, ModelProto, String)> {
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
        Some(g) if !g.node.is_empty() && !g.output.is_empty() => {
            let sha = models::sha256_hex(&bytes);
            Ok((bytes, proto, sha))
        }
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
