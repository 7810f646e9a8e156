//! `trainer export --run RUN_DIR --out model.onnx`: loads the run's best model, writes it as
//! ONNX (fp32, or int8 QDQ calibrated on training images), measures validation accuracy of
//! every form with the edge runtime's own loader, and keeps the file only if the accuracy
//! drop passes `--max-drop`. The file is written to a temporary name in the output folder
//! and renamed at the very end, so a failure at any step leaves nothing behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::AtomicFile;
use edge_runtime::Engine;
use edge_runtime::int8::Int8Mode;
use edge_runtime::model::{Classifier, LoadOptions};
use models::manifest::{Calibration, CalibrationMethod, InputSpec, Precision, PrecisionSpec, Provenance};
use models::{ImageLimits, Manifest, Preprocessor};
use rand::{SeedableRng, seq::SliceRandom};

use super::calibrate::calibrate;
use super::graph::{Graph, Op};
use super::onnx::{WriteOptions, to_onnx_bytes};
use super::quantize::quantized_tensors;
use crate::backbone::BackboneNet;
use crate::checkpoint::{TrainedModel, load_best};
use crate::data::{Sample, splits_for_run};
use crate::error::TrainerError;
use crate::run::RunInfo;

/// `--precision`: what the exported file computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportPrecision {
    Fp32,
    Int8,
}

/// What `trainer export` does (the binary's flags, see `trainer export --help`).
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Run folder written by `trainer fit --out` (run.json + best.bpk).
    pub run: PathBuf,
    /// The ONNX file to write.
    pub out: PathBuf,
    pub precision: ExportPrecision,
    /// Training images used to calibrate int8 activation ranges.
    pub calibration_images: usize,
    pub calibration_method: CalibrationMethod,
    /// Largest accepted validation accuracy drop in points; a larger drop writes nothing.
    pub max_drop: f64,
    pub opset: i64,
    /// Batch dimension left symbolic (`N`) instead of 1.
    pub dynamic_batch: bool,
    /// int8 weights in [-63, 63] (7 bits) instead of [-127, 127]: for onnxruntime on x86 CPUs
    /// without VNNI, whose u8 x s8 kernels saturate int16 sums with full-range weights.
    pub reduce_range: bool,
}

/// What an export produced and measured.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub out: PathBuf,
    pub bytes: usize,
    pub manifest: Manifest,
    /// Validation accuracy in percent by form: `fp32`, `int8-native`, `int8-weights`.
    pub accuracy: BTreeMap<String, f64>,
    /// The drop the gate checked (points), and the form it came from.
    pub drop: f64,
    pub gated_form: String,
    pub val_images: usize,
}

/// The pooled embedding the head reads: also the file's second output (`features`).
pub const FEATURES_TENSOR: &str = models::enrolment::FEATURES_OUTPUT;

/// The whole classifier as one graph: backbone stages, global average pool, flatten, head;
/// BatchNorm folded. Input "input" `[1, 3, H, W]`, output "logits".
pub fn build_graph(model: &TrainedModel, input_hw: [usize; 2]) -> Graph {
    let mut ops = features_ops(&model.backbone, input_hw);
    ops.extend(model.head.export_ops(FEATURES_TENSOR, "logits"));
    let graph = Graph { input: "input".into(), input_chw: [3, input_hw[0], input_hw[1]], output: "logits".into(), ops };
    super::fold::fold_batchnorms(&graph)
}

/// The backbone from "input" to the pooled embedding [`FEATURES_TENSOR`] `[N, D]`: every stage,
/// global average pool, flatten (BatchNorm not folded yet). The classifier and the trainer's
/// frozen pass (`crate::frozen`) both start with it.
pub fn features_ops(backbone: &BackboneNet, input_hw: [usize; 2]) -> Vec<Op> {
    let (mut ops, last) = backbone.export_ops(0..backbone.num_stages(), "input", input_hw);
    ops.push(Op::GlobalAveragePool { input: last, output: "pooled".into() });
    ops.push(Op::Flatten { input: "pooled".into(), output: FEATURES_TENSOR.into() });
    ops
}

/// `trainer export`.
pub fn run(opts: &ExportOptions) -> Result<ExportReport, TrainerError> {
    if !opts.run.is_dir() {
        return Err(TrainerError::Run {
            path: opts.run.clone(),
            reason: "no such folder: pass the folder `trainer fit --out` wrote".into(),
        });
    }
    // Claim the output folder first: an unwritable --out fails before minutes of work.
    let staged = stage(&opts.out)?;
    let device = Device::flex();
    let (model, info) = load_best(&opts.run, &device)?;
    let p = info.preprocessing;
    let graph = build_graph(&model, [p.height as usize, p.width as usize]);
    drop(model);

    let splits = splits_for_run(&info)?;
    let mut pre = Preprocessor::new(p);
    let (val, val_skipped) = load_tensors(&mut pre, &splits.val);
    if val.is_empty() {
        return Err(TrainerError::ExportInvalid(format!(
            "the run's validation set ({} in {}) has no readable image to measure the export on",
            splits.val.len(),
            info.data_dir.display()
        )));
    }
    let mut form = Forms {
        graph: &graph,
        staged: &staged,
        val: &val,
        fp32: WriteOptions {
            opset: opts.opset,
            quant: None,
            weight_bits: if opts.reduce_range { 7 } else { 8 },
            dynamic_batch: opts.dynamic_batch,
            manifest_json: None,
            features: Some(FEATURES_TENSOR.into()),
        },
        manifest: manifest_for(&info, &opts.run),
        accuracy: BTreeMap::new(),
    };
    let (bytes, gate) = match opts.precision {
        ExportPrecision::Fp32 => form.fp32(percent(info.val_accuracy))?,
        ExportPrecision::Int8 => {
            let (calib, calib_skipped) =
                calibration_tensors(&mut pre, &splits.train, opts.calibration_images, info.seed);
            if calib.is_empty() {
                return Err(TrainerError::CalibrationEmpty { dir: info.data_dir.clone(), skipped: calib_skipped });
            }
            form.int8(&calib, opts.calibration_method)?
        }
    };
    let Forms { manifest, accuracy, .. } = form;
    print_summary(opts, &accuracy, val.len(), val_skipped, bytes.len());
    if gate.drop() > opts.max_drop {
        return Err(TrainerError::AccuracyGate {
            drop: gate.drop(),
            form: gate.form,
            accuracy: gate.accuracy,
            reference: gate.reference,
            max_drop: opts.max_drop,
            out: opts.out.clone(),
        });
    }
    write_staged(&staged, &bytes)?;
    staged.commit().map_err(TrainerError::io(&opts.out))?;
    println!("wrote {} ({:.1} MB)", opts.out.display(), bytes.len() as f64 / 1e6);
    Ok(ExportReport {
        out: opts.out.clone(),
        bytes: bytes.len(),
        manifest,
        accuracy,
        drop: gate.drop(),
        gated_form: gate.form,
        val_images: val.len(),
    })
}

/// The forms of one export, written to the staged file and measured there: the manifest and
/// the accuracies gather what was measured.
struct Forms<'a> {
    graph: &'a Graph,
    staged: &'a AtomicFile,
    val: &'a [(Vec<f32>, usize)],
    /// fp32 writing options without a manifest.
    fp32: WriteOptions<'a>,
    manifest: Manifest,
    accuracy: BTreeMap<String, f64>,
}

impl Forms<'_> {
    fn fp32_bytes(&self) -> Result<Vec<u8>, TrainerError> {
        let opts = WriteOptions { manifest_json: Some(self.manifest.to_json()), ..self.fp32.clone() };
        Ok(to_onnx_bytes(self.graph, &opts)?.0)
    }

    /// The fp32 file, gated against the run's own val accuracy (`reference`, percent): burn
    /// measured the same model on the same images, so a gap means a broken export.
    fn fp32(&mut self, reference: f64) -> Result<(Vec<u8>, Gate), TrainerError> {
        write_staged(self.staged, &self.fp32_bytes()?)?;
        let acc = evaluate(self.staged.temp_path(), Engine::Tract, Int8Mode::Auto, self.val)?;
        self.accuracy.insert("fp32".to_string(), acc);
        self.manifest.metrics.insert("val_accuracy".into(), acc);
        self.ort_accuracy(&[(Int8Mode::Auto, "fp32")]);
        let gate = Gate { form: "fp32 (vs the run's own val accuracy)".into(), accuracy: acc, reference };
        Ok((self.fp32_bytes()?, gate))
    }

    /// The int8 QDQ file calibrated on `calib`, gated on the worse of the two ways the runtime
    /// can execute it against the fp32 file measured on the same path in the same runtime.
    fn int8(&mut self, calib: &[Vec<f32>], method: CalibrationMethod) -> Result<(Vec<u8>, Gate), TrainerError> {
        let (plain, _) = to_onnx_bytes(self.graph, &self.fp32)?;
        let plan = calibrate(&plain, self.graph.input_chw, &quantized_tensors(self.graph), calib, method)?;
        let (graph, base) = (self.graph, self.fp32.clone());
        let int8_bytes = |manifest: &Manifest| {
            let opts = WriteOptions { quant: Some(&plan), manifest_json: Some(manifest.to_json()), ..base.clone() };
            to_onnx_bytes(graph, &opts)
        };
        write_staged(self.staged, &self.fp32_bytes()?)?;
        let fp32 = evaluate(self.staged.temp_path(), Engine::Tract, Int8Mode::Auto, self.val)?;
        self.ort_accuracy(&[(Int8Mode::Auto, "fp32")]);
        let (_, counts) = int8_bytes(&self.manifest)?;
        let calibration = Calibration {
            method,
            images: calib.len(),
            activations: counts.activations,
            weights: counts.weights,
            weight_bits: self.fp32.weight_bits,
        };
        self.manifest.precision = PrecisionSpec { kind: Precision::Int8, calibration: Some(calibration) };
        write_staged(self.staged, &int8_bytes(&self.manifest)?.0)?;
        self.accuracy.insert("fp32".to_string(), fp32);
        let mut worst = Gate { form: String::new(), accuracy: f64::INFINITY, reference: fp32 };
        for (mode, name) in [(Int8Mode::Native, "int8-native"), (Int8Mode::Weights, "int8-weights")] {
            let acc = evaluate(self.staged.temp_path(), Engine::Tract, mode, self.val)?;
            self.accuracy.insert(name.to_string(), acc);
            self.manifest.metrics.insert(format!("{}_accuracy", name.replace('-', "_")), acc);
            if acc < worst.accuracy {
                worst = Gate { form: name.into(), accuracy: acc, reference: fp32 };
            }
        }
        self.manifest.metrics.insert("val_accuracy".into(), fp32);
        self.manifest.metrics.insert("int8_drop_points".into(), worst.drop());
        self.ort_accuracy(&[(Int8Mode::Native, "int8-native")]);
        Ok((int8_bytes(&self.manifest)?.0, worst))
    }
}

impl Forms<'_> {
    /// When an onnxruntime library can be found (`ORT_DYLIB_PATH`, the usual places), the staged
    /// file's accuracy under `--engine ort` too, reported as `ort-<form>` beside tract's (the
    /// gate stays on tract, the default engine). Without the library: nothing, silently.
    fn ort_accuracy(&mut self, forms: &[(Int8Mode, &str)]) {
        if edge_runtime::engine::find_ort_library(None).is_err() {
            return;
        }
        for (mode, form) in forms {
            match evaluate(self.staged.temp_path(), Engine::Ort, *mode, self.val) {
                Ok(acc) => {
                    self.accuracy.insert(format!("ort-{form}"), acc);
                    self.manifest.metrics.insert(format!("ort_{}_accuracy", form.replace('-', "_")), acc);
                }
                Err(e) => eprintln!("warning: onnxruntime accuracy not measured: {e}"),
            }
        }
    }
}

/// The output under a temporary name in its folder (mode 0644, an ordinary shareable file):
/// committed onto the real name at the very end, deleted when dropped (any error path).
fn stage(out: &Path) -> Result<AtomicFile, TrainerError> {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.is_empty() || out.is_dir() {
        return Err(TrainerError::ExportInvalid(format!(
            "--out {} must be a file path such as model.onnx",
            out.display()
        )));
    }
    AtomicFile::create(out).map_err(TrainerError::io(out))
}

/// Replaces the staged file's content with `bytes` (the runtime measures it by path).
fn write_staged(staged: &AtomicFile, bytes: &[u8]) -> Result<(), TrainerError> {
    std::fs::write(staged.temp_path(), bytes).map_err(TrainerError::io(staged.dest()))
}

/// The accuracy comparison the gate checks.
struct Gate {
    form: String,
    accuracy: f64,
    reference: f64,
}

impl Gate {
    fn drop(&self) -> f64 {
        self.reference - self.accuracy
    }
}

/// Accuracy stored as a fraction (0..1) or in percent: percent either way.
fn percent(acc: f64) -> f64 {
    if acc <= 1.0 { acc * 100.0 } else { acc }
}

fn manifest_for(info: &RunInfo, run_dir: &Path) -> Manifest {
    let run_name = run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
    Manifest {
        format: models::manifest::MANIFEST_FORMAT,
        name: format!("{}-{run_name}", info.backbone),
        backbone: Some(info.backbone),
        labels: info.labels.clone(),
        input: InputSpec::nchw_rgb("input", &info.preprocessing),
        preprocessing: info.preprocessing,
        precision: PrecisionSpec { kind: Precision::Fp32, calibration: None },
        metrics: BTreeMap::new(),
        provenance: Provenance {
            perch_version: models::PERCH_VERSION.into(),
            source: "trainer export".into(),
            dataset_fingerprint: Some(info.dataset_fingerprint.clone()),
            weights_sha256: info.weights_sha256.clone(),
            created_unix: models::manifest::now_unix(),
        },
        features: Some(models::FeatureSpec {
            output: models::enrolment::FEATURES_OUTPUT.into(),
            dim: info.backbone.spec().feature_dim,
        }),
        enrolment: None,
    }
}

/// Preprocessed tensors of the samples that load; unreadable files are counted, not fatal.
fn load_tensors(pre: &mut Preprocessor, samples: &[Sample]) -> (Vec<(Vec<f32>, usize)>, usize) {
    let mut out = Vec::with_capacity(samples.len());
    let mut skipped = 0;
    for s in samples {
        match pre.tensor_from_file(&s.path, ImageLimits::default()) {
            Ok(t) => out.push((t, s.label)),
            Err(e) => {
                tracing::warn!("skipping {}: {e}", s.path.display());
                skipped += 1;
            }
        }
    }
    (out, skipped)
}

/// `n` training images drawn with the run's seed (the split lists them class by class; a
/// prefix would calibrate on one class only).
fn calibration_tensors(pre: &mut Preprocessor, train: &[Sample], n: usize, seed: u64) -> (Vec<Vec<f32>>, usize) {
    let mut order: Vec<&Sample> = train.iter().collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let mut out = Vec::with_capacity(n.min(train.len()));
    let mut skipped = 0;
    for s in order {
        if out.len() == n {
            break;
        }
        match pre.tensor_from_file(&s.path, ImageLimits::default()) {
            Ok(t) => out.push(t),
            Err(_) => skipped += 1,
        }
    }
    (out, skipped)
}

/// Top-1 accuracy (percent) of the model file in the edge runtime.
fn evaluate(path: &Path, engine: Engine, int8: Int8Mode, val: &[(Vec<f32>, usize)]) -> Result<f64, TrainerError> {
    let what = format!("{} ({engine}, {int8:?})", path.display());
    let err =
        |e: edge_runtime::error::RuntimeError| TrainerError::ExportTract { what: what.clone(), reason: e.to_string() };
    let classifier = Classifier::load(&LoadOptions { int8, engine, ..LoadOptions::new(path) }).map_err(err)?;
    let mut correct = 0usize;
    for (x, label) in val {
        let logits = classifier.infer(x).map_err(err)?;
        correct += usize::from(!logits.is_empty() && common::argmax(&logits) == *label);
    }
    Ok(100.0 * correct as f64 / val.len() as f64)
}

fn print_summary(args: &ExportOptions, accuracy: &BTreeMap<String, f64>, images: usize, skipped: usize, bytes: usize) {
    let fp32 = accuracy.get("fp32").copied().unwrap_or(f64::NAN);
    let precision = match args.precision {
        ExportPrecision::Fp32 => "fp32".to_string(),
        ExportPrecision::Int8 => format!("int8 ({} calibration)", args.calibration_method.name()),
    };
    println!("{precision} model: {:.1} MB", bytes as f64 / 1e6);
    let skipped = if skipped > 0 { format!(", {skipped} unreadable skipped") } else { String::new() };
    println!("validation accuracy on {images} images{skipped}:");
    // Forms measured in onnxruntime (`ort-...`) are compared with onnxruntime's fp32.
    let ort_fp32 = accuracy.get("ort-fp32").copied().unwrap_or(f64::NAN);
    for (form, acc) in accuracy {
        let reference = if form.starts_with("ort-") { ort_fp32 } else { fp32 };
        if form == "fp32" || form == "ort-fp32" {
            println!("  {form:<17} {acc:6.2}%");
        } else {
            println!("  {form:<17} {acc:6.2}%  (drop {:.2} points)", reference - acc);
        }
    }
    let ort_drop = ort_fp32 - accuracy.get("ort-int8-native").copied().unwrap_or(f64::NAN);
    if ort_drop > args.max_drop && !args.reduce_range && cfg!(target_arch = "x86_64") {
        println!(
            "  note: onnxruntime loses {ort_drop:.2} points on this CPU: on x86 without VNNI its u8 x s8 kernels saturate with 8-bit weights; export with --reduce-range (7-bit weights) for --engine ort"
        );
    }
}
