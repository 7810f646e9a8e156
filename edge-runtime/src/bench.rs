//! `edge-runtime bench`: latency per model × thread count (× int8 mode) on this device, and
//! `edge-runtime bench report`: reports from several devices merged into one table and plot.
//!
//! Each measurement runs in its own child process (this binary re-executed with the hidden
//! `--child` flag). Peak RSS (VmHWM) is a per-process high-water mark that never goes down:
//! measured in one process, a small model benched after a big one would report the big one's
//! peak. A fresh process per row also gives every row the same cold start, so `load_ms` and
//! `first_ms` mean the same thing in every row, and tract's thread pool of one row cannot
//! linger into the next.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use models::{Backbone, ImageLimits, Preprocessor};

use crate::device::{DeviceInfo, ThermalState, peak_rss_mb};
use crate::engine::Engine;
use crate::error::RuntimeError;
use crate::int8::{self, Int8Mode};
use crate::model::{Classifier, LoadOptions, read_proto};
use crate::report::{BenchReport, BenchResult, MergedReport, ReportError};

/// Size of the synthetic camera frame preprocessed when no `--image` is given.
const SYNTHETIC_FRAME: (u32, u32) = (640, 480);
/// Marks the result line in a child's stdout (anything else there is ignored).
const CHILD_RESULT_PREFIX: &str = "PERCH_BENCH_RESULT ";

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("no model given: pass --model M.onnx (repeat it to compare models)")]
    NoModels,
    #[error("--iterations must be at least 1 (it is the number of timed inferences)")]
    ZeroIterations,
    #[error("--threads must list thread counts of at least 1, e.g. --threads 1,2,4")]
    ZeroThreads,
    #[error(
        "{flag} is given {given} times for {models} models: give it once (applies to every model) or once per --model, in the same order"
    )]
    FlagCount { flag: &'static str, given: usize, models: usize },
    #[error("cannot use --image: {0}")]
    Image(#[from] models::ModelsError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(
        "{model} expects {expected} input values but its preprocessing produced {got}: the manifest's input size does not match the graph"
    )]
    InputSize { model: PathBuf, expected: usize, got: usize },
    #[error("cannot start the measuring process {exe}: {source}")]
    Spawn { exe: PathBuf, source: std::io::Error },
    #[error("measuring {model} with {threads} thread(s) failed ({status}); its error is printed above")]
    ChildFailed { model: PathBuf, threads: usize, status: String },
    #[error("the measuring process for {model} printed no result: {reason}")]
    ChildOutput { model: PathBuf, reason: String },
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// Where `bench` and `bench report` write their results; the Markdown table goes to stdout
/// when no file is named.
#[derive(Debug, Clone, Default)]
pub struct ReportOutputs {
    pub json: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
    pub plot: Option<PathBuf>,
}

/// `edge-runtime bench`: what to measure and where to write it.
#[derive(Debug, Clone)]
pub struct MeasureOptions {
    pub models: Vec<PathBuf>,
    /// Once for every model or once per model (see [`MeasureOptions::jobs`]).
    pub presets: Vec<Backbone>,
    pub labels: Vec<PathBuf>,
    pub threads: Vec<usize>,
    pub warmup: usize,
    pub iterations: usize,
    /// Image to preprocess and classify (None: a synthetic 640x480 JPEG frame).
    pub image: Option<PathBuf>,
    /// For int8 models: measure only this mode (None or `auto`: both native and weights).
    pub int8: Option<Int8Mode>,
    /// Engines to measure (each gets its own rows; `auto` means tract and ort; empty: tract).
    pub engines: Vec<Engine>,
    /// libonnxruntime for the ort rows (None: `ORT_DYLIB_PATH`, then the usual places).
    pub ort_lib: Option<PathBuf>,
    pub outputs: ReportOutputs,
    /// Also publish the report, retained, at `{prefix}/{name}/bench` (`bench --mqtt`).
    pub mqtt: Option<crate::mqtt::Target>,
}

/// `bench report --mqtt`: also gather every device's retained report from the broker.
#[derive(Debug, Clone)]
pub struct ReportFromBroker {
    pub target: crate::mqtt::Target,
    /// How long to collect retained reports after subscribing.
    pub wait: std::time::Duration,
}

/// One row to measure: a model with its load options at one thread count.
#[derive(Debug, Clone)]
pub struct Job {
    pub load: LoadOptions,
    pub threads: usize,
    /// Some for int8 models: the mode this row measures.
    pub int8_mode: Option<Int8Mode>,
}

pub use common::stats::LatencyStats;

/// `bench report`: merge, then write whatever outputs were asked for (the table to stdout
/// when none was).
pub fn run_report(
    inputs: &[PathBuf],
    broker: Option<&ReportFromBroker>,
    outputs: &ReportOutputs,
) -> anyhow::Result<()> {
    let mut reports = inputs
        .iter()
        .map(|p| Ok((p.display().to_string(), BenchReport::read(p)?)))
        .collect::<Result<Vec<_>, ReportError>>()?;
    if let Some(b) = broker {
        let found = crate::mqtt::collect_bench(&b.target, b.wait)?;
        let mut bad = 0;
        for (topic, payload) in &found {
            match serde_json::from_slice::<BenchReport>(payload) {
                Ok(r) => reports.push((format!("mqtt:{topic}"), r)),
                Err(e) => {
                    bad += 1;
                    eprintln!("skipped {topic}: not a bench report ({e})");
                }
            }
        }
        eprintln!(
            "collected {} report(s) from {} in {:.1} s{}",
            found.len() - bad,
            b.target.url,
            b.wait.as_secs_f64(),
            if bad > 0 { format!(", skipped {bad}") } else { String::new() }
        );
    }
    let merged = MergedReport::merge(reports)?;
    write_outputs(&merged, outputs.markdown.as_deref(), outputs.plot.as_deref())?;
    if let Some(path) = &outputs.json {
        merged.write_json(path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn write_outputs(merged: &MergedReport, markdown: Option<&Path>, plot: Option<&Path>) -> Result<(), ReportError> {
    match markdown {
        Some(path) => {
            merged.write_markdown(path)?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{}", merged.to_markdown()),
    }
    if let Some(path) = plot {
        merged.write_plot(path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

impl MeasureOptions {
    /// Checks the flags and expands them into rows. Int8 models get one row per mode, which
    /// needs a look at the graph (cheap: no tract optimisation).
    pub fn jobs(&self) -> Result<Vec<Job>, BenchError> {
        if self.models.is_empty() {
            return Err(BenchError::NoModels);
        }
        if self.iterations == 0 {
            return Err(BenchError::ZeroIterations);
        }
        if self.threads.is_empty() || self.threads.contains(&0) {
            return Err(BenchError::ZeroThreads);
        }
        let n = self.models.len();
        let presets = per_model("--preset", &self.presets, n)?;
        let labels = per_model("--labels", &self.labels, n)?;
        let mut threads = self.threads.clone();
        threads.dedup();
        let mut engines = Vec::new();
        for e in &self.engines {
            let expanded: &[Engine] =
                if *e == Engine::Auto { &[Engine::Tract, Engine::Ort] } else { std::slice::from_ref(e) };
            for e in expanded {
                if !engines.contains(e) {
                    engines.push(*e);
                }
            }
        }
        if engines.is_empty() {
            engines.push(Engine::Tract);
        }
        let mut jobs = Vec::new();
        for (i, model) in self.models.iter().enumerate() {
            if !model.is_file() {
                return Err(RuntimeError::ModelMissing { path: model.clone() }.into());
            }
            let modes = if int8::is_qdq(&read_proto(model)?) {
                match self.int8 {
                    Some(Int8Mode::Auto) | None => vec![Some(Int8Mode::Native), Some(Int8Mode::Weights)],
                    Some(mode) => vec![Some(mode)],
                }
            } else {
                vec![None]
            };
            for &engine in &engines {
                for &t in &threads {
                    for &mode in &modes {
                        let load = LoadOptions {
                            model: model.clone(),
                            preset: presets[i].copied(),
                            labels: labels[i].cloned(),
                            threads: Some(t),
                            int8: mode.unwrap_or_default(),
                            engine,
                            ort_lib: self.ort_lib.clone(),
                        };
                        jobs.push(Job { load, threads: t, int8_mode: mode });
                    }
                }
            }
        }
        Ok(jobs)
    }

    /// Arguments for a child measuring `job` (the same settings, one row).
    fn child_args(&self, job: &Job) -> Vec<String> {
        let mut a = vec!["bench".to_string(), "--child".into(), "--model".into(), path_arg(&job.load.model)];
        if let Some(p) = job.load.preset {
            a.extend(["--preset".into(), p.name().into()]);
        }
        if let Some(l) = &job.load.labels {
            a.extend(["--labels".into(), path_arg(l)]);
        }
        a.extend(["--threads".into(), job.threads.to_string()]);
        a.extend(["--warmup".into(), self.warmup.to_string(), "--iterations".into(), self.iterations.to_string()]);
        if let Some(image) = &self.image {
            a.extend(["--image".into(), path_arg(image)]);
        }
        if let Some(mode) = job.int8_mode {
            a.extend(["--int8".into(), mode.name().into()]);
        }
        a.extend(["--engine".into(), job.load.engine.name().into()]);
        if let Some(lib) = &job.load.ort_lib {
            a.extend(["--ort-lib".into(), path_arg(lib)]);
        }
        a
    }
}

/// A flag given once (for every model) or once per model.
fn per_model<'a, T>(flag: &'static str, values: &'a [T], models: usize) -> Result<Vec<Option<&'a T>>, BenchError> {
    match values.len() {
        0 => Ok(vec![None; models]),
        1 => Ok(vec![values.first(); models]),
        k if k == models => Ok(values.iter().map(Some).collect()),
        given => Err(BenchError::FlagCount { flag, given, models }),
    }
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `bench`: one child per row, then the report. A failing row is reported and skipped so the
/// other rows' measurements are not lost; the command still fails at the end.
pub fn run_measure(args: &MeasureOptions) -> anyhow::Result<()> {
    let jobs = args.jobs()?;
    // Fail on a bad --image now, not once per child.
    ImageSource::open(args.image.as_deref())?;
    // SoC temperature and throttling before the run; the device block adds the state after it.
    let thermal_before = ThermalState::read();
    let exe = std::env::current_exe().map_err(|source| BenchError::Spawn { exe: "edge-runtime".into(), source })?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        eprintln!(
            "[{}/{}] {} · {} · {} thread(s){}",
            i + 1,
            jobs.len(),
            job.load.model.display(),
            job.load.engine,
            job.threads,
            job.int8_mode.map_or(String::new(), |m| format!(" · int8 {}", m.name()))
        );
        match measure_in_child(&exe, args, job) {
            Ok(row) => results.push(row),
            Err(e) => {
                eprintln!("error: {e}");
                failures.push(e);
            }
        }
    }
    let report = BenchReport {
        device: DeviceInfo::detect()
            .with_thermal_before(thermal_before)
            .with_name(args.mqtt.as_ref().map(|t| t.name.clone())),
        results,
    };
    if !report.results.is_empty() {
        if let Some(path) = &args.outputs.json {
            report.write_json(path)?;
            eprintln!("wrote {}", path.display());
        }
        write_outputs(
            &MergedReport::from(report.clone()),
            args.outputs.markdown.as_deref(),
            args.outputs.plot.as_deref(),
        )?;
        if let Some(target) = &args.mqtt {
            // After the files: a broker that is away loses nothing that was measured.
            let topic = crate::mqtt::publish_bench(target, &report.to_json())?;
            eprintln!("published the report to {topic} (retained)");
        }
    }
    match failures.len() {
        0 => Ok(()),
        n => anyhow::bail!("{n} of {} measurements failed (see the errors above)", jobs.len()),
    }
}

fn measure_in_child(exe: &Path, args: &MeasureOptions, job: &Job) -> Result<BenchResult, BenchError> {
    let output = Command::new(exe)
        .args(args.child_args(job))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| BenchError::Spawn { exe: exe.to_path_buf(), source })?;
    if !output.status.success() {
        return Err(BenchError::ChildFailed {
            model: job.load.model.clone(),
            threads: job.threads,
            status: output.status.to_string(),
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(CHILD_RESULT_PREFIX))
        .ok_or_else(|| BenchError::ChildOutput { model: job.load.model.clone(), reason: "no result line".into() })?;
    serde_json::from_str(line)
        .map_err(|e| BenchError::ChildOutput { model: job.load.model.clone(), reason: e.to_string() })
}

/// `bench --child`: measure one row in this (fresh) process, print it for the parent.
pub fn run_child(args: &MeasureOptions) -> anyhow::Result<()> {
    let jobs = args.jobs()?;
    let [job] = jobs.as_slice() else {
        anyhow::bail!("--child measures exactly one model, thread count and int8 mode; got {}", jobs.len());
    };
    let image = ImageSource::open(args.image.as_deref())?;
    let row = measure(job, &image, args.warmup, args.iterations, true)?;
    let line = serde_json::to_string(&row)?;
    println!("{CHILD_RESULT_PREFIX}{line}");
    Ok(())
}

/// The encoded image each preprocessing run decodes. Decoding from memory keeps disk and
/// page-cache effects out of the preprocessing time.
pub struct ImageSource {
    pub bytes: Vec<u8>,
    pub name: String,
    path: PathBuf,
}

impl ImageSource {
    /// Reads `--image` (and checks it decodes), or makes the synthetic frame.
    pub fn open(path: Option<&Path>) -> Result<Self, BenchError> {
        match path {
            Some(p) => {
                let bytes =
                    std::fs::read(p).map_err(|source| models::ModelsError::Io { path: p.to_path_buf(), source })?;
                models::preprocess::decode_image(&bytes, p, ImageLimits::default())?;
                let name = p.file_name().map_or_else(|| path_arg(p), |n| n.to_string_lossy().into_owned());
                Ok(ImageSource { bytes, name, path: p.to_path_buf() })
            }
            None => Ok(Self::synthetic()),
        }
    }

    /// A 640x480 JPEG (quality 90) with smooth gradients and fine texture, so the decoder
    /// and resampler do the work a camera frame makes them do.
    pub fn synthetic() -> Self {
        let (w, h) = SYNTHETIC_FRAME;
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let noise = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)).rotate_left(7) % 48;
            image::Rgb([
                ((x * 255 / w) as u8).wrapping_add(noise as u8),
                ((y * 255 / h) as u8).wrapping_add((noise / 2) as u8),
                (((x + y) % 256) as u8) ^ (noise as u8),
            ])
        });
        let mut bytes = Vec::new();
        // Encoding an in-memory RGB8 buffer to a Vec cannot fail.
        let _ = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90).encode_image(&img);
        ImageSource { bytes, name: format!("synthetic {w}x{h} JPEG"), path: PathBuf::from("synthetic.jpg") }
    }

    /// Decode + resize + normalize: the preprocessing a camera frame goes through.
    pub fn preprocess(&self, pre: &mut Preprocessor) -> Result<Vec<f32>, models::ModelsError> {
        pre.tensor(models::preprocess::decode_image(&self.bytes, &self.path, ImageLimits::default())?)
    }
}

/// Measures one row in this process: load, first inference, `iterations` timed inferences
/// after `warmup` untimed ones, then `iterations` timed preprocessing runs.
pub fn measure(
    job: &Job,
    image: &ImageSource,
    warmup: usize,
    iterations: usize,
    progress: bool,
) -> Result<BenchResult, BenchError> {
    if iterations == 0 {
        return Err(BenchError::ZeroIterations);
    }
    let model_bytes = std::fs::metadata(&job.load.model)
        .map_err(|source| RuntimeError::ModelIo { path: job.load.model.clone(), source })?
        .len();
    let t = Instant::now();
    let classifier = Classifier::load(&job.load)?;
    let load_ms = ms_since(t);
    let manifest = classifier.manifest();
    let mut pre = Preprocessor::new(manifest.preprocessing);
    let input = image.preprocess(&mut pre)?;
    if input.len() != classifier.input_len() {
        return Err(BenchError::InputSize {
            model: job.load.model.clone(),
            expected: classifier.input_len(),
            got: input.len(),
        });
    }
    let t = Instant::now();
    classifier.infer(&input)?;
    let first_ms = ms_since(t);

    let bar = progress_bar(progress, (warmup + 2 * iterations) as u64, &job.load.model, job.threads);
    for _ in 0..warmup {
        classifier.infer(&input)?;
        bar.inc(1);
    }
    let mut latencies = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        classifier.infer(&input)?;
        latencies.push(ms_since(t));
        bar.inc(1);
    }
    let mut pre_times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        std::hint::black_box(image.preprocess(&mut pre)?);
        pre_times.push(ms_since(t));
        bar.inc(1);
    }
    bar.finish_and_clear();

    // Both lists have `iterations` >= 1 finite entries.
    let lat = LatencyStats::from_samples(&latencies).ok_or(BenchError::ZeroIterations)?;
    let preprocess_ms = LatencyStats::from_samples(&pre_times).ok_or(BenchError::ZeroIterations)?.mean;
    let frame_ms = preprocess_ms + lat.mean;
    let int8_mode = classifier.execution().int8_mode().map(|m| m.name().to_string());
    Ok(BenchResult {
        model: job
            .load
            .model
            .file_name()
            .map_or_else(|| path_arg(&job.load.model), |n| n.to_string_lossy().into_owned()),
        precision: serde_json::to_value(manifest.precision.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "fp32".into()),
        threads: job.threads,
        load_ms,
        first_ms,
        p50_ms: lat.p50,
        p90_ms: lat.p90,
        p99_ms: lat.p99,
        mean_ms: lat.mean,
        min_ms: lat.min,
        fps: 1000.0 / frame_ms,
        preprocess_ms,
        rss_peak_mb: peak_rss_mb(),
        model_bytes,
        int8_mode,
        backbone: manifest.backbone.map(|b| b.name().to_string()),
        max_ms: Some(lat.max),
        iterations: Some(iterations),
        warmup: Some(warmup),
        preprocess_share: Some(preprocess_ms / frame_ms),
        image: Some(image.name.clone()),
        engine: Some(classifier.engine().name().to_string()),
    })
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn progress_bar(show: bool, total: u64, model: &Path, threads: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    // Draws on stderr, and only when it is a terminal: logs and pipes stay clean.
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta} left)") {
        bar.set_style(style.progress_chars("=> "));
    }
    let name = model.file_name().map_or_else(|| path_arg(model), |n| n.to_string_lossy().into_owned());
    bar.set_message(format!("{name} · {threads} thr"));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_with_the_flag_named() {
        let two = MeasureOptions {
            models: vec!["a.onnx".into(), "b.onnx".into()],
            presets: vec![],
            labels: vec![],
            threads: vec![1],
            warmup: 20,
            iterations: 200,
            image: None,
            int8: None,
            engines: vec![],
            ort_lib: None,
            outputs: ReportOutputs::default(),
            mqtt: None,
        };
        let err = MeasureOptions { iterations: 0, ..two.clone() }.jobs().unwrap_err();
        assert!(matches!(err, BenchError::ZeroIterations) && err.to_string().contains("--iterations"));
        assert!(matches!(MeasureOptions { threads: vec![1, 0], ..two.clone() }.jobs(), Err(BenchError::ZeroThreads)));
        let labels = vec!["a".into(), "b".into(), "c".into()];
        let err = MeasureOptions { labels, ..two.clone() }.jobs().unwrap_err();
        assert!(err.to_string().contains("--labels is given 3 times for 2 models"), "{err}");
        let err = two.jobs().unwrap_err();
        assert!(
            matches!(err, BenchError::Runtime(RuntimeError::ModelMissing { ref path }) if path == Path::new("a.onnx")),
            "{err}"
        );
        assert!(matches!(MeasureOptions { models: vec![], ..two }.jobs(), Err(BenchError::NoModels)));
    }

    #[test]
    fn synthetic_frame_decodes_and_preprocesses() {
        let src = ImageSource::synthetic();
        let mut pre = Preprocessor::new(Backbone::MobileNetV2.preprocessing());
        let t = src.preprocess(&mut pre).unwrap();
        assert_eq!(t.len(), 3 * 224 * 224);
        // Real content, not a flat frame: values spread over most of [-1, 1].
        let (lo, hi) = t.iter().fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        assert!(lo < -0.5 && hi > 0.5, "{lo}..{hi}");
    }
}
