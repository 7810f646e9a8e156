//! `edge-runtime enrol`: teach a model new classes on the device from a handful of frames, with
//! no trainer, GPU or network. The backbone's pooled embedding (`features`) of each example is
//! stored inside the model (`perch.enrolment` metadata) and a small head is fitted on them in
//! milliseconds (see [`head`]); the written file is an ordinary perch ONNX model with
//! `logits` and `features` outputs, so `classify`, `run` and every sink use it unchanged, and
//! the next enrolment builds on it.
//!
//! The input model is only read; the output is written atomically (temporary file, fsync,
//! rename), so a failure anywhere leaves no file, and `--out` may name the input to update it.

pub mod graph;
pub mod head;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use models::enrolment::{
    ClassCount, ENROLMENT_KEY, EnrolledClass, EnrolmentSummary, EnrolmentTable, FEATURES_OUTPUT, HeadKind, KeptHead,
    check_class_name,
};
use models::manifest::Provenance;
use models::{Backbone, FeatureSpec, ImageLimits, Labels, Manifest, Preprocessor};
use prost::Message;
use tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use crate::classify::collect_images;
use crate::error::RuntimeError;
use crate::model::{embedded_manifest, read_proto};
use crate::source::{self, CaptureOptions, Fetch, SourceSpec};
use models::preprocess::is_hidden_entry;

/// Fewest examples a class can be enrolled with.
pub const MIN_EXAMPLES: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(
        "cannot enrol on {path}: {reason}. Re-export it with `trainer export` (which writes the `features` output), or for a reference ImageNet model pass --preset NAME"
    )]
    NoFeatures { path: PathBuf, reason: String },
    #[error("class name '{name}' cannot be used: {reason}")]
    BadClassName { name: String, reason: String },
    #[error(
        "class '{name}' is already enrolled in {path} ({examples} examples): pass --replace to replace its examples, or choose another name"
    )]
    ClassExists { name: String, path: PathBuf, examples: usize },
    #[error("class '{name}' clashes with a class of the trained head kept by --keep-classes: choose another name")]
    ClashesWithKept { name: String },
    #[error("class '{name}' is not enrolled in {path}; enrolled: {known}")]
    UnknownClass { name: String, path: PathBuf, known: String },
    #[error(
        "only {got} usable frame(s) for class '{class}' from {source_name} (at least {MIN_EXAMPLES} are needed){skipped}"
    )]
    TooFewFrames { class: String, source_name: String, got: usize, skipped: String },
    #[error("--from-folder {dir}: {reason}")]
    BadFolder { dir: PathBuf, reason: String },
    #[error("--keep-classes on {path}: {reason}")]
    CannotKeep { path: PathBuf, reason: String },
    #[error("removing '{name}' would leave {path} without any class: enrol another class first")]
    LastClass { name: String, path: PathBuf },
    #[error("enrolment data in {path} is invalid: {source}")]
    Table { path: PathBuf, source: models::ModelsError },
    #[error("cannot write {path}: {source} (nothing was written; the input model is unchanged)")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("embedding failed on {path}: {reason}")]
    Embed { path: PathBuf, reason: String },
}

pub type Result<T, E = EnrolError> = std::result::Result<T, E>;

/// The model an enrolment reads.
#[derive(Debug, Clone)]
pub struct ModelInput {
    pub model: PathBuf,
    /// Catalog backbone of a reference model without a perch manifest.
    pub preset: Option<Backbone>,
    /// Class names of a `--preset` model's outputs (only `--keep-classes` needs them).
    pub labels: Option<PathBuf>,
    pub threads: Option<usize>,
    pub limits: ImageLimits,
}

impl ModelInput {
    pub fn new(model: impl Into<PathBuf>) -> Self {
        ModelInput { model: model.into(), preset: None, labels: None, threads: None, limits: ImageLimits::default() }
    }
}

/// Where the examples of an enrolment come from.
#[derive(Debug, Clone)]
pub enum Examples {
    /// `--class NAME --source SOURCE`: `frames` frames of one class, at most one per `every`
    /// on live sources (cameras, streams), every frame on files and folders.
    Source { class: String, spec: SourceSpec, capture: CaptureOptions, frames: usize, every: Duration },
    /// `--from-folder DIR`: one class per subfolder `DIR/<class>/`, its images sorted by name;
    /// at most `limit_per_class` of them (the first ones) when set.
    Folder { dir: PathBuf, limit_per_class: Option<usize> },
}

/// What to change.
#[derive(Debug, Clone)]
pub enum Change {
    /// Add classes (or with `replace`, replace the examples of classes already enrolled).
    Add { examples: Examples, replace: bool },
    /// Remove one enrolled class.
    Remove(String),
}

#[derive(Debug, Clone)]
pub struct EnrolOptions {
    pub input: ModelInput,
    pub out: PathBuf,
    pub change: Change,
    pub head: HeadKind,
    /// Keep the trained head's classes beside the enrolled ones (weight imprinting, see
    /// [`head::imprint`]); otherwise the model has exactly the enrolled classes.
    pub keep_classes: bool,
}

/// What an enrolment did.
#[derive(Debug, Clone)]
pub struct EnrolReport {
    pub out: PathBuf,
    pub bytes: usize,
    /// Output labels in order (kept classes first).
    pub labels: Vec<String>,
    pub classes: Vec<ClassCount>,
    pub kept: usize,
    pub head: HeadKind,
    pub temperature: f32,
    pub loo_accuracy: Option<f64>,
    /// Examples embedded by this call.
    pub embedded: usize,
    /// Frames or files that could not be used: (name, reason).
    pub skipped: Vec<(String, String)>,
    pub embed_time: Duration,
    pub fit_time: Duration,
}

/// A model opened for enrolment: the file, its manifest, its feature tensor and its table.
pub struct Opened {
    pub path: PathBuf,
    pub proto: ModelProto,
    pub manifest: Manifest,
    pub features: FeatureSpec,
    pub table: EnrolmentTable,
}

/// Reads the model and locates its embedding; errors say how to get one that has it.
pub fn open(input: &ModelInput) -> Result<Opened> {
    let path = input.model.clone();
    let proto = read_proto(&path)?;
    let embedded = match embedded_manifest(&proto) {
        Some(json) => {
            Some(Manifest::from_json(json).map_err(|source| RuntimeError::Manifest { path: path.clone(), source })?)
        }
        None => None,
    };
    let features = graph::locate_features(&proto, embedded.as_ref(), input.preset)
        .map_err(|reason| EnrolError::NoFeatures { path: path.clone(), reason })?;
    let manifest = match embedded {
        Some(m) => m,
        None => preset_manifest(&path, input)?,
    };
    let table = match proto.metadata_props.iter().find(|p| p.key == ENROLMENT_KEY) {
        Some(p) => {
            EnrolmentTable::from_json(&p.value).map_err(|source| EnrolError::Table { path: path.clone(), source })?
        }
        None => EnrolmentTable::new(features.dim),
    };
    if table.dim != features.dim {
        return Err(EnrolError::Table {
            path,
            source: models::ModelsError::Manifest(format!(
                "embeddings are {} wide but the feature output is {}",
                table.dim, features.dim
            )),
        });
    }
    Ok(Opened { path, proto, manifest, features, table })
}

/// The manifest of a reference model described by `--preset` (labels from `--labels`, or
/// placeholders `class_N` when none are given: only `--keep-classes` shows them).
fn preset_manifest(path: &Path, input: &ModelInput) -> Result<Manifest> {
    let backbone = input.preset.expect("locate_features needs a preset for a model without a manifest");
    let outputs = backbone.spec().imagenet_classes;
    let labels = match &input.labels {
        Some(file) => {
            let labels = Labels::from_file(file)
                .map_err(|source| RuntimeError::Manifest { path: path.to_path_buf(), source })?;
            crate::model::fit_labels(labels, backbone, Some(outputs), path)?
        }
        None => Labels((0..outputs).map(|i| format!("class_{i}")).collect()),
    };
    let source = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Manifest::for_preset(backbone, labels, &source))
}

/// Turns images into pooled embeddings with the model cut at its feature tensor.
pub struct Embedder {
    plan: Arc<TypedRunnableModel>,
    pre: Preprocessor,
    dim: usize,
    path: PathBuf,
    executor: Executor,
}

impl Embedder {
    pub fn new(opened: &Opened, threads: Option<usize>) -> Result<Self> {
        let backbone = graph::backbone_only(&opened.proto, &opened.features);
        let p = opened.manifest.preprocessing;
        let path = opened.path.clone();
        let unsupported = |e: TractError| RuntimeError::Unsupported { path: path.clone(), reason: format!("{e:#}") };
        let plan = tract_onnx::onnx()
            .model_for_proto_model(&backbone)
            .and_then(|m| m.with_input_fact(0, f32::fact([1usize, 3, p.height as usize, p.width as usize]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(unsupported)?;
        let executor = match threads {
            Some(n) if n > 1 => Executor::multithread_with_name(n, "perch-enrol"),
            _ => Executor::SingleThread,
        };
        Ok(Embedder { plan, pre: Preprocessor::new(p), dim: opened.features.dim, path, executor })
    }

    /// The embedding of one RGB image (any size: cropped and resized like `classify` does).
    pub fn embed_rgb(&mut self, img: image::RgbImage) -> Result<Vec<f32>> {
        let x = self.pre.tensor(image::DynamicImage::ImageRgb8(img)).map_err(RuntimeError::from)?;
        self.embed_tensor(&x)
    }

    /// The embedding of one preprocessed NCHW tensor.
    pub fn embed_tensor(&self, x: &[f32]) -> Result<Vec<f32>> {
        let p = self.pre.spec();
        let err = |reason: String| EnrolError::Embed { path: self.path.clone(), reason };
        let t = Tensor::from_shape(&[1usize, 3, p.height as usize, p.width as usize], x)
            .map_err(|e| err(format!("{e:#}")))?;
        let out = multithread_tract_scope(self.executor.clone(), || self.plan.run(tvec!(t.into_tvalue())))
            .map_err(|e| err(format!("{e:#}")))?;
        let v: Vec<f32> =
            out[0].to_plain_array_view::<f32>().map_err(|e| err(format!("{e:#}")))?.iter().copied().collect();
        if v.len() != self.dim {
            return Err(err(format!("the feature output has {} values, expected {}", v.len(), self.dim)));
        }
        Ok(v)
    }

    /// Embedding of an image file.
    pub fn embed_file(&mut self, path: &Path, limits: ImageLimits) -> Result<Vec<f32>> {
        let x = self.pre.tensor_from_file(path, limits).map_err(RuntimeError::from)?;
        self.embed_tensor(&x)
    }
}

/// `--list`: output labels with example counts (None for kept trained classes).
pub fn list(input: &ModelInput) -> Result<(Manifest, EnrolmentTable)> {
    let opened = open(input)?;
    Ok((opened.manifest, opened.table))
}

/// Runs one enrolment change and writes the new model. `progress` gets one line per example.
pub fn enrol(opts: &EnrolOptions, progress: &mut dyn FnMut(&str)) -> Result<EnrolReport> {
    let mut opened = open(&opts.input)?;
    let path = opened.path.clone();
    let kept = kept_head(&opened, opts.keep_classes)?;
    let mut skipped = Vec::new();
    let mut embedded = 0;
    let t_embed = Instant::now();
    match &opts.change {
        Change::Remove(name) => {
            let before = opened.table.classes.len();
            opened.table.classes.retain(|c| c.name != *name);
            if opened.table.classes.len() == before {
                return Err(EnrolError::UnknownClass { name: name.clone(), path, known: known(&opened.table) });
            }
            if opened.table.classes.is_empty() && kept.is_none() {
                return Err(EnrolError::LastClass { name: name.clone(), path });
            }
        }
        Change::Add { examples, replace } => {
            let planned = plan_classes(examples, opts.input.limits)?;
            for (name, _) in &planned {
                check_new_class(&opened.table, kept.as_ref(), name, *replace, &path)?;
            }
            let mut embedder = Embedder::new(&opened, opts.input.threads)?;
            for (name, items) in planned {
                let got = collect(&mut embedder, &name, items, opts.input.limits, &mut skipped, progress)?;
                embedded += got.len();
                match opened.table.classes.iter_mut().find(|c| c.name == name) {
                    Some(c) => c.embeddings = got,
                    None => opened.table.classes.push(EnrolledClass { name, embeddings: got }),
                }
            }
        }
    }
    let embed_time = t_embed.elapsed();

    let t_fit = Instant::now();
    let dim = opened.features.dim;
    let examples: Vec<Vec<Vec<f32>>> = opened.table.classes.iter().map(|c| c.embeddings.clone()).collect();
    let fitted = head::fit(opts.head, &examples, dim);
    let weights = match &kept {
        None => graph::HeadWeights { normalize: true, weight: fitted.weight.clone(), bias: fitted.bias.clone() },
        Some(k) => {
            let (rows, bias) = head::imprint(&k.weight, &k.bias, &examples, dim);
            let mut weight = k.weight.clone();
            weight.extend(rows);
            let mut all_bias = k.bias.clone();
            all_bias.extend(bias);
            graph::HeadWeights { normalize: false, weight, bias: all_bias }
        }
    };
    let fit_time = t_fit.elapsed();

    let kept_labels = kept.as_ref().map(|k| k.labels.clone()).unwrap_or_default();
    opened.table.kept_head = kept;
    let manifest = enrolled_manifest(&opened, opts.head, &fitted, &kept_labels);
    let backbone = graph::backbone_only(&opened.proto, &opened.features);
    let model = graph::with_head(
        &backbone,
        &opened.features,
        &weights,
        &[(models::MANIFEST_KEY, manifest.to_json()), (ENROLMENT_KEY, opened.table.to_json())],
    );
    let bytes = model.encode_to_vec();
    common::write_atomic(&opts.out, &bytes).map_err(|source| EnrolError::Write { path: opts.out.clone(), source })?;
    Ok(EnrolReport {
        out: opts.out.clone(),
        bytes: bytes.len(),
        labels: manifest.labels.0.clone(),
        classes: opened.table.counts(),
        kept: kept_labels.len(),
        head: opts.head,
        temperature: fitted.temperature,
        loo_accuracy: fitted.loo_accuracy,
        embedded,
        skipped,
        embed_time,
        fit_time,
    })
}

fn known(table: &EnrolmentTable) -> String {
    if table.classes.is_empty() {
        "none".into()
    } else {
        table.classes.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// The trained rows `--keep-classes` keeps: from an earlier `--keep-classes` enrolment, or the
/// model's own float head.
fn kept_head(opened: &Opened, keep: bool) -> Result<Option<KeptHead>> {
    if !keep {
        return Ok(None);
    }
    if let Some(k) = &opened.table.kept_head {
        return Ok(Some(k.clone()));
    }
    let cannot = |reason: String| EnrolError::CannotKeep { path: opened.path.clone(), reason };
    if opened.manifest.enrolment.is_some() {
        return Err(cannot(
            "it is an enrolled model without kept classes: enrol on the original model to keep its classes".into(),
        ));
    }
    let (weight, bias) = graph::trained_head(&opened.proto, &opened.features).map_err(cannot)?;
    let labels = &opened.manifest.labels;
    if labels.len() != weight.len() {
        return Err(cannot(format!("its head has {} classes but {} labels", weight.len(), labels.len())));
    }
    Ok(Some(KeptHead { labels: labels.0.clone(), weight, bias }))
}

/// The input items of each class, in order, before anything is embedded (so a bad folder or
/// name fails before minutes of work).
enum Items {
    Files(Vec<PathBuf>),
    Source { spec: SourceSpec, capture: CaptureOptions, frames: usize, every: Duration },
}

fn plan_classes(examples: &Examples, _limits: ImageLimits) -> Result<Vec<(String, Items)>> {
    match examples {
        Examples::Source { class, spec, capture, frames, every } => {
            let name = checked_name(class)?;
            if *frames < MIN_EXAMPLES {
                return Err(EnrolError::TooFewFrames {
                    class: name,
                    source_name: spec.to_string(),
                    got: *frames,
                    skipped: format!(": --frames {frames} asks for fewer"),
                });
            }
            let items = Items::Source { spec: spec.clone(), capture: capture.clone(), frames: *frames, every: *every };
            Ok(vec![(name, items)])
        }
        Examples::Folder { dir, limit_per_class } => {
            let bad = |reason: String| EnrolError::BadFolder { dir: dir.clone(), reason };
            let entries = std::fs::read_dir(dir).map_err(|e| bad(format!("cannot list it: {e}")))?;
            let mut subdirs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir() && !is_hidden_entry(p))
                .collect();
            subdirs.sort();
            if subdirs.is_empty() {
                return Err(bad("it has no class subfolders (expected DIR/<class>/image files)".into()));
            }
            let mut out: Vec<(String, Items)> = Vec::new();
            for sub in subdirs {
                let raw = sub.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let name = checked_name(&raw)?;
                if out.iter().any(|(n, _)| *n == name) {
                    return Err(bad(format!("two subfolders name class '{name}'")));
                }
                let (mut files, _) = collect_images(std::slice::from_ref(&sub));
                if let Some(n) = limit_per_class {
                    files.truncate(*n);
                }
                out.push((name, Items::Files(files)));
            }
            Ok(out)
        }
    }
}

fn checked_name(name: &str) -> Result<String> {
    check_class_name(name).map_err(|reason| EnrolError::BadClassName { name: name.to_string(), reason })
}

fn check_new_class(
    table: &EnrolmentTable,
    kept: Option<&KeptHead>,
    name: &str,
    replace: bool,
    path: &Path,
) -> Result<()> {
    if kept.is_some_and(|k| k.labels.iter().any(|l| l == name)) {
        return Err(EnrolError::ClashesWithKept { name: name.to_string() });
    }
    match table.class(name) {
        Some(c) if !replace => Err(EnrolError::ClassExists {
            name: name.to_string(),
            path: path.to_path_buf(),
            examples: c.embeddings.len(),
        }),
        _ => Ok(()),
    }
}

/// Embeds one class's items; unusable frames are recorded in `skipped`, fewer than
/// [`MIN_EXAMPLES`] usable ones is an error.
fn collect(
    embedder: &mut Embedder,
    class: &str,
    items: Items,
    limits: ImageLimits,
    skipped: &mut Vec<(String, String)>,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Vec<f32>>> {
    let mut got = Vec::new();
    let mut class_skips = Vec::new();
    let source_name;
    match items {
        Items::Files(files) => {
            source_name = "its folder".to_string();
            let total = files.len();
            for f in files {
                match embedder.embed_file(&f, limits) {
                    Ok(e) => {
                        got.push(e);
                        progress(&format!("{class}: {}/{total} {}", got.len(), f.display()));
                    }
                    Err(EnrolError::Runtime(e)) if e.is_bad_input() => {
                        class_skips.push((f.display().to_string(), e.to_string()))
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Items::Source { spec, capture, frames, every } => {
            let mut src = source::open_with(&spec, false, limits, &capture)?;
            if let Some(note) = src.note() {
                progress(&note);
            }
            source_name = src.describe();
            let live = src.is_live();
            let transform = capture.transform();
            let mut last: Option<Instant> = None;
            while got.len() < frames {
                match src.next()? {
                    Fetch::Frame(frame) => {
                        if live && last.is_some_and(|t| frame.captured.duration_since(t) < every) {
                            continue;
                        }
                        last = Some(frame.captured);
                        let name = frame.name.clone().unwrap_or_else(|| format!("frame {}", frame.seq));
                        let img = transform.apply(frame.image, &source_name)?;
                        got.push(embedder.embed_rgb(img)?);
                        progress(&format!("{class}: {}/{frames} {name}", got.len()));
                    }
                    Fetch::Skip { name, reason } => class_skips.push((name, reason)),
                    Fetch::End => break,
                }
            }
        }
    }
    if got.len() < MIN_EXAMPLES {
        let skipped_text = if class_skips.is_empty() {
            String::new()
        } else {
            let first: Vec<String> = class_skips.iter().take(3).map(|(n, r)| format!("{n}: {r}")).collect();
            format!("; {} could not be decoded: {}", class_skips.len(), first.join("; "))
        };
        return Err(EnrolError::TooFewFrames {
            class: class.into(),
            source_name,
            got: got.len(),
            skipped: skipped_text,
        });
    }
    skipped.extend(class_skips);
    Ok(got)
}

fn enrolled_manifest(opened: &Opened, kind: HeadKind, fitted: &head::Fitted, kept: &[String]) -> Manifest {
    let mut m = opened.manifest.clone();
    let mut labels = kept.to_vec();
    labels.extend(opened.table.classes.iter().map(|c| c.name.clone()));
    m.labels = Labels(labels);
    if !m.name.ends_with("-enrolled") {
        m.name = format!("{}-enrolled", m.name);
    }
    m.features = Some(FeatureSpec { output: FEATURES_OUTPUT.into(), dim: opened.features.dim });
    m.enrolment = Some(EnrolmentSummary {
        head: if kept.is_empty() { kind } else { HeadKind::Prototype },
        temperature: fitted.temperature,
        kept: kept.to_vec(),
        classes: opened.table.counts(),
    });
    // The trained head's measurements no longer describe this model.
    m.metrics.clear();
    if let Some(acc) = fitted.loo_accuracy {
        m.metrics.insert("enrol_loo_accuracy".into(), acc * 100.0);
    }
    m.provenance = Provenance {
        perch_version: models::PERCH_VERSION.into(),
        source: format!("edge-runtime enrol on {}", opened.manifest.provenance.source),
        dataset_fingerprint: None,
        weights_sha256: opened.manifest.provenance.weights_sha256.clone(),
        created_unix: models::manifest::now_unix(),
    };
    m
}
