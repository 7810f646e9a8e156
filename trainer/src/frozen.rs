//! The frozen backbone pass of `trainer fit` (its first epoch): every image once through the
//! frozen ImageNet backbone, for the pooled features (and, when fine-tuning, the activations at
//! the freeze boundary) that the cache then holds.
//!
//! burn's CPU backend runs this pass at a fraction of what an inference engine does, so the
//! frozen part is written as ONNX (the exporter's own graph of the same weights, BatchNorm
//! folded) and run on tract (built in) or onnxruntime (when its library is there), one image
//! per worker on every core. `--frozen-engine auto` (default) times the candidates on a few
//! inferences and keeps the fastest; on a GPU device (`--device cuda|wgpu`) it stays on burn.
//! The features agree with burn's to ~1e-5 (the parity tests), so the cache does not care
//! which engine filled it.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use edge_runtime::engine::find_ort_library;
use serde::{Deserialize, Serialize};
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;

use crate::backbone::BackboneNet;
use crate::error::TrainerError;
use crate::export::calibrate::TensorProbe;
use crate::export::command::{FEATURES_TENSOR, features_ops};
use crate::export::graph::Graph;
use crate::export::onnx::{WriteOptions, to_model_proto};
use crate::head::tensor_values;
use crate::run::DeviceKind;

/// `--frozen-engine`: what runs the frozen backbone pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrozenEngine {
    /// Time the available engines on a few inferences, keep the fastest.
    #[default]
    Auto,
    /// burn, on the training device.
    Burn,
    /// tract, built in.
    Tract,
    /// onnxruntime, loaded at run time (`--ort-lib`, `ORT_DYLIB_PATH`, a pip install).
    Ort,
}

impl FrozenEngine {
    pub fn name(self) -> &'static str {
        match self {
            FrozenEngine::Auto => "auto",
            FrozenEngine::Burn => "burn",
            FrozenEngine::Tract => "tract",
            FrozenEngine::Ort => "ort",
        }
    }
}

impl std::fmt::Display for FrozenEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Features and (when fine-tuning) boundary activations of a batch, row-major.
pub struct FrozenOutput {
    pub features: Vec<f32>,
    pub activations: Vec<f32>,
    /// [C, H, W] at the boundary (empty without one).
    pub act_shape: Vec<usize>,
}

/// One ONNX worker: an inference engine holding the frozen graph.
pub enum Worker {
    Tract(Arc<TensorProbe>),
    Ort(edge_runtime::engine::OrtRunner),
}

impl Worker {
    fn run(&self, shape: [usize; 4], image: &[f32], outputs: usize) -> Result<Vec<Vec<f32>>, TrainerError> {
        match self {
            Worker::Tract(probe) => probe.run(image),
            Worker::Ort(ort) => ort.run_outputs(shape, image, outputs).map_err(|e| TrainerError::FrozenEngine {
                engine: FrozenEngine::Ort.name().into(),
                reason: e.to_string(),
            }),
        }
    }
}

/// The chosen engine with what it needs.
pub enum FrozenRunner<'a> {
    Burn { backbone: &'a BackboneNet, device: Device },
    Onnx { engine: FrozenEngine, workers: Vec<Worker>, shape: [usize; 4], feat_dim: usize, act_shape: Vec<usize> },
}

impl FrozenRunner<'_> {
    pub fn engine(&self) -> FrozenEngine {
        match self {
            FrozenRunner::Burn { .. } => FrozenEngine::Burn,
            FrozenRunner::Onnx { engine, .. } => *engine,
        }
    }

    /// Runs `n` preprocessed images (`n * 3*H*W` floats). The ONNX engines take one image per
    /// worker thread; burn takes the batch whole.
    pub fn run(&self, input: &[f32], n: usize, boundary: Option<usize>) -> Result<FrozenOutput, TrainerError> {
        match self {
            FrozenRunner::Burn { backbone, device } => Ok(burn_forward(backbone, device, input, n, boundary)),
            FrozenRunner::Onnx { workers, shape, feat_dim, act_shape, .. } => {
                let per = input.len() / n.max(1);
                let outputs = 1 + usize::from(boundary.is_some());
                let mut rows: Vec<Option<Result<Vec<Vec<f32>>, TrainerError>>> = (0..n).map(|_| None).collect();
                let chunk = n.div_ceil(workers.len()).max(1);
                std::thread::scope(|s| {
                    for ((w, slots), images) in
                        workers.iter().zip(rows.chunks_mut(chunk)).zip(input.chunks(chunk * per))
                    {
                        s.spawn(move || {
                            for (slot, image) in slots.iter_mut().zip(images.chunks(per)) {
                                *slot = Some(w.run(*shape, image, outputs));
                            }
                        });
                    }
                });
                let act_len: usize = act_shape.iter().product();
                let mut out = FrozenOutput {
                    features: Vec::with_capacity(n * feat_dim),
                    activations: Vec::with_capacity(n * act_len),
                    act_shape: act_shape.clone(),
                };
                let fail = |reason: String| TrainerError::FrozenEngine { engine: self.engine().name().into(), reason };
                for row in rows {
                    let mut row = row.ok_or_else(|| fail("a worker stopped before its images".into()))??;
                    if row.len() < outputs
                        || row[0].len() != *feat_dim
                        || row.get(1).is_some_and(|a| a.len() != act_len)
                    {
                        return Err(fail(format!(
                            "unexpected outputs: {:?} values, expected {feat_dim} features and {act_len} activations",
                            row.iter().map(Vec::len).collect::<Vec<_>>()
                        )));
                    }
                    out.features.append(&mut row[0]);
                    if boundary.is_some() {
                        out.activations.append(&mut row[1]);
                    }
                }
                Ok(out)
            }
        }
    }
}

fn burn_forward(
    backbone: &BackboneNet,
    device: &Device,
    input: &[f32],
    n: usize,
    boundary: Option<usize>,
) -> FrozenOutput {
    let spec = backbone.kind().preprocessing();
    let x = Tensor::<4>::from_data(
        TensorData::new(input.to_vec(), [n, 3, spec.height as usize, spec.width as usize]),
        device,
    );
    match boundary {
        None => FrozenOutput {
            features: tensor_values(backbone.features(x)),
            activations: Vec::new(),
            act_shape: Vec::new(),
        },
        Some(b) => {
            let acts = backbone.forward_stages(x, 0..b);
            let [_, c, h, w] = acts.dims();
            let feats = BackboneNet::pool(backbone.forward_stages(acts.clone(), b..backbone.num_stages()));
            FrozenOutput { features: tensor_values(feats), activations: tensor_values(acts), act_shape: vec![c, h, w] }
        }
    }
}

/// The frozen backbone as an ONNX graph: stages, global average pool, flatten; BatchNorm
/// folded. Outputs: "features" [N, D], and with a boundary the stage output before it.
pub fn frozen_onnx(backbone: &BackboneNet, boundary: Option<usize>) -> Result<(Vec<u8>, Vec<String>), TrainerError> {
    let spec = backbone.kind().preprocessing();
    let hw = [spec.height as usize, spec.width as usize];
    let ops = features_ops(backbone, hw);
    let graph = Graph { input: "input".into(), input_chw: [3, hw[0], hw[1]], output: FEATURES_TENSOR.into(), ops };
    let graph = crate::export::fold::fold_batchnorms(&graph);
    let opts = WriteOptions::fp32();
    let (mut model, _) = to_model_proto(&graph, &opts)?;
    let mut outputs = vec![FEATURES_TENSOR.to_string()];
    if let Some(b) = boundary {
        let name = backbone.stage_name(b - 1);
        let dims = vec![
            DimValue::DimValue(1),
            DimValue::DimParam("c".into()),
            DimValue::DimParam("h".into()),
            DimValue::DimParam("w".into()),
        ];
        if let Some(g) = model.graph.as_mut() {
            g.output.push(edge_runtime::enrol::graph::value_info(&name, dims));
        }
        outputs.push(name);
    }
    use prost::Message;
    Ok((model.encode_to_vec(), outputs))
}

/// What [`select`] was asked for.
#[derive(Debug, Clone)]
pub struct FrozenRequest<'a> {
    pub engine: FrozenEngine,
    pub device: DeviceKind,
    pub ort_lib: Option<&'a Path>,
    /// Worker threads for the ONNX engines (one image each).
    pub workers: usize,
}

/// The engine for the frozen pass, with a line saying what was chosen and why.
pub fn select<'a>(
    req: &FrozenRequest<'_>,
    backbone: &'a BackboneNet,
    device: &Device,
    boundary: Option<usize>,
) -> Result<(FrozenRunner<'a>, String), TrainerError> {
    let burn = || FrozenRunner::Burn { backbone, device: device.clone() };
    let workers = req.workers.max(1);
    match req.engine {
        FrozenEngine::Burn => return Ok((burn(), "frozen pass: burn (--frozen-engine burn)".into())),
        FrozenEngine::Auto if req.device != DeviceKind::Flex => {
            return Ok((burn(), format!("frozen pass: burn on {} (the training device)", req.device.name())));
        }
        FrozenEngine::Tract | FrozenEngine::Ort => {
            let graph = FrozenGraph::new(backbone, device, boundary)?;
            let runner = onnx_runner(req.engine, &graph, workers, req.ort_lib)?;
            return Ok((
                runner,
                format!("frozen pass: {} (--frozen-engine {}), {workers} workers", req.engine, req.engine),
            ));
        }
        FrozenEngine::Auto => {}
    }
    // Auto on the CPU: time each engine on `workers` images at once, keep the fastest.
    let spec = backbone.kind().preprocessing();
    let image = vec![0.1f32; spec.tensor_len()];
    let batch: Vec<f32> = image.iter().copied().cycle().take(image.len() * workers).collect();
    let mut timed: Vec<(FrozenRunner<'a>, f64)> = Vec::new();
    let mut notes = Vec::new();
    // Written once for tract and ort alike.
    let graph = FrozenGraph::new(backbone, device, boundary);
    for engine in [FrozenEngine::Burn, FrozenEngine::Tract, FrozenEngine::Ort] {
        let runner = match (engine, &graph) {
            (FrozenEngine::Burn, _) => burn(),
            (_, Ok(graph)) => match onnx_runner(engine, graph, workers, req.ort_lib) {
                Ok(r) => r,
                Err(e) => {
                    notes.push(format!("{engine} not used: {e}"));
                    continue;
                }
            },
            (_, Err(e)) => {
                notes.push(format!("{engine} not used: {e}"));
                continue;
            }
        };
        runner.run(&batch, workers, boundary)?;
        let t = Instant::now();
        runner.run(&batch, workers, boundary)?;
        let ms = t.elapsed().as_secs_f64() * 1000.0 / workers as f64;
        timed.push((runner, ms));
    }
    let summary = timed.iter().map(|(r, ms)| format!("{} {ms:.1}", r.engine())).collect::<Vec<_>>().join(", ");
    let best = timed
        .into_iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(r, _)| r)
        .ok_or_else(|| TrainerError::InvalidArgument("no engine for the frozen pass".into()))?;
    let mut line = format!("frozen pass auto: {summary} ms per image ({workers} workers) -> {}", best.engine());
    for n in notes {
        line.push_str("; ");
        line.push_str(&n);
    }
    Ok((best, line))
}

/// The frozen graph once, for every ONNX engine that is tried: its bytes, output names, input
/// shape, feature width and boundary activation shape.
struct FrozenGraph {
    bytes: Vec<u8>,
    outputs: Vec<String>,
    shape: [usize; 4],
    feat_dim: usize,
    act_shape: Vec<usize>,
}

impl FrozenGraph {
    fn new(backbone: &BackboneNet, device: &Device, boundary: Option<usize>) -> Result<Self, TrainerError> {
        let spec = backbone.kind().preprocessing();
        let shape = [1, 3, spec.height as usize, spec.width as usize];
        let act_shape = match boundary {
            Some(b) => {
                let [_, c, h, w] = backbone.forward_stages(Tensor::<4>::zeros(shape, device), 0..b).dims();
                vec![c, h, w]
            }
            None => Vec::new(),
        };
        let (bytes, outputs) = frozen_onnx(backbone, boundary)?;
        Ok(FrozenGraph { bytes, outputs, shape, feat_dim: backbone.feature_dim(), act_shape })
    }
}

fn onnx_runner<'a>(
    engine: FrozenEngine,
    graph: &FrozenGraph,
    workers: usize,
    ort_lib: Option<&Path>,
) -> Result<FrozenRunner<'a>, TrainerError> {
    let FrozenGraph { bytes, outputs, shape, .. } = graph;
    let workers = match engine {
        FrozenEngine::Tract => {
            let probe = Arc::new(TensorProbe::new(bytes, [3, shape[2], shape[3]], outputs)?);
            (0..workers).map(|_| Worker::Tract(probe.clone())).collect()
        }
        FrozenEngine::Ort => {
            let fail = |e: edge_runtime::RuntimeError| TrainerError::FrozenEngine {
                engine: engine.name().into(),
                reason: e.to_string(),
            };
            // Resolve the library first: its error says where it looked and how to get one.
            let found = find_ort_library(ort_lib).map_err(fail)?;
            let path = Path::new("frozen-backbone.onnx");
            (0..workers)
                .map(|_| {
                    edge_runtime::engine::OrtRunner::new(path, bytes, 1, Some(&found)).map(Worker::Ort).map_err(fail)
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        FrozenEngine::Auto | FrozenEngine::Burn => {
            return Err(TrainerError::FrozenEngine {
                engine: engine.name().into(),
                reason: "is not an ONNX engine".into(),
            });
        }
    };
    Ok(FrozenRunner::Onnx {
        engine,
        workers,
        shape: *shape,
        feat_dim: graph.feat_dim,
        act_shape: graph.act_shape.clone(),
    })
}

/// The frozen pass's engine, chosen when the first image needs it: a run whose features are
/// all cached (a second run, `--resume`) never builds or times one.
pub struct LazyFrozen<'a> {
    req: FrozenRequest<'a>,
    backbone: &'a BackboneNet,
    device: Device,
    boundary: Option<usize>,
    runner: std::cell::OnceCell<FrozenRunner<'a>>,
}

impl<'a> LazyFrozen<'a> {
    pub fn new(req: FrozenRequest<'a>, backbone: &'a BackboneNet, device: &Device, boundary: Option<usize>) -> Self {
        LazyFrozen { req, backbone, device: device.clone(), boundary, runner: std::cell::OnceCell::new() }
    }

    pub fn boundary(&self) -> Option<usize> {
        self.boundary
    }

    pub fn backbone(&self) -> &BackboneNet {
        self.backbone
    }

    /// The engine (chosen now if not yet).
    pub fn get(&self) -> Result<&FrozenRunner<'a>, TrainerError> {
        if let Some(r) = self.runner.get() {
            return Ok(r);
        }
        let (runner, line) = select(&self.req, self.backbone, &self.device, self.boundary)?;
        tracing::info!("{line}");
        Ok(self.runner.get_or_init(|| runner))
    }

    /// The engine that ran, if any image needed one.
    pub fn chosen(&self) -> Option<FrozenEngine> {
        self.runner.get().map(FrozenRunner::engine)
    }
}
