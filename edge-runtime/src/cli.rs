//! The command line of `edge-runtime`: every flag is defined here, once, and turned into the
//! library's plain option structs. Shared groups (`ModelArgs`, `OutputArgs`) are flattened into
//! the commands that take them, so a flag is spelled, ranged and documented the same way
//! everywhere.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use edge_runtime::bench::{MeasureOptions, ReportFromBroker, ReportOutputs};
use edge_runtime::classify::ClassifyOptions;
use edge_runtime::collect::CollectOptions;
use edge_runtime::enrol::{Change, EnrolOptions, Examples, ModelInput};
use edge_runtime::mqtt::{self, BrokerUrl, PublishOptions};
use edge_runtime::pipeline::RunOptions;
use edge_runtime::sink::EmitFormat;
use edge_runtime::source::{CaptureOptions, Flip, Roi, Rotation, SourceSpec};
use edge_runtime::{Engine, Int8Mode, LoadOptions, RuntimeError};
use models::enrolment::HeadKind;
use models::{Backbone, ImageLimits};

#[derive(Parser)]
#[command(
    name = "edge-runtime",
    version,
    about = "perch edge runtime: image classification on CPU (tract, or onnxruntime with --engine ort)"
)]
#[command(
    after_help = "Shortcut: `edge-runtime --camera N --model M.onnx [run flags]` = `edge-runtime run --source camera:N --model M.onnx [run flags]`.\nExit codes: 0 ok, 1 error, 2 usage, 3 some inputs skipped, 4 source lost mid-stream."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Classify image files and folders (recursive).
    Classify(ClassifyArgs),
    /// The streaming loop: capture -> newest-frame queue -> inference -> sink.
    Run(RunArgs),
    /// Measure latency per model and thread count; `bench report` merges device reports.
    Bench(BenchArgs),
    /// List capture devices: V4L2 cameras and their modes, Pi cameras (rpicam-vid), ffmpeg.
    Devices(DevicesArgs),
    /// Teach the model new classes from a few frames (`--class NAME --source SOURCE`) or an
    /// image folder (`--from-folder DIR`), on the device; `--list`, `--remove NAME`.
    Enrol(EnrolArgs),
}

#[derive(Args)]
pub struct DevicesArgs {
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `--threads N`: at least 1, the same range for every command.
fn threads_parser() -> clap::builder::RangedI64ValueParser<u16> {
    clap::value_parser!(u16).range(1..)
}

/// The model and how to run it (classify, run).
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// ONNX model (a perch export carries its manifest; others need --preset and --labels).
    #[arg(long, value_name = "M.onnx")]
    pub model: PathBuf,
    /// Catalog backbone describing a model without a perch manifest.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<Backbone>,
    /// Labels file, one class per line in output order (required with --preset).
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Intra-op threads of the engine (default 1).
    #[arg(long, value_name = "N", value_parser = threads_parser())]
    pub threads: Option<u16>,
    /// How to execute int8 (QDQ) models.
    #[arg(long, value_enum, default_value_t = Int8Mode::Auto)]
    pub int8: Int8Mode,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Refuse images with more pixels than this (decompression-bomb guard).
    #[arg(long, value_name = "PIXELS", default_value_t = ImageLimits::default().max_pixels)]
    pub max_pixels: u64,
}

impl ModelArgs {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            model: self.model.clone(),
            preset: self.preset,
            labels: self.labels.clone(),
            threads: self.threads.map(usize::from),
            int8: self.int8,
            engine: self.engine.engine,
            ort_lib: self.engine.ort_lib.clone(),
        }
    }

    pub fn limits(&self) -> ImageLimits {
        ImageLimits { max_pixels: self.max_pixels }
    }
}

/// `--engine` and `--ort-lib` (classify, run).
#[derive(Args, Clone)]
pub struct EngineArgs {
    /// Inference engine: tract (built in), ort (onnxruntime, loaded from libonnxruntime.so at
    /// run time), auto (time both on this model, keep the faster).
    #[arg(long, value_enum, default_value_t = Engine::Tract)]
    pub engine: Engine,
    /// The onnxruntime library for --engine ort/auto: a libonnxruntime.so* file or a folder
    /// holding one (e.g. a pip install's site-packages/onnxruntime/capi). Default: ORT_DYLIB_PATH,
    /// then the system library folders and pip installs.
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
}

/// `--top-k K`: at least 1, the same range for every command.
#[derive(Args, Clone, Copy)]
pub struct TopKArgs {
    /// Classes reported per image or frame.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    pub top_k: u16,
}

#[derive(Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub top: TopKArgs,
    /// One JSON object per image instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Debug: write each preprocessed input tensor (raw f32 LE, NCHW) into this folder.
    #[arg(long, hide = true, value_name = "DIR")]
    pub dump_tensors: Option<PathBuf>,
    /// Image files or folders.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

impl ClassifyArgs {
    pub fn options(&self) -> ClassifyOptions {
        ClassifyOptions {
            top_k: self.top.top_k.into(),
            limits: self.model.limits(),
            dump_tensors: self.dump_tensors.clone(),
        }
    }
}

#[derive(Args)]
pub struct RunArgs {
    /// libcamera[:N] | camera:N | video:FILE | rtsp://... | http(s)://... | udp://... | dir:DIR |
    /// synthetic[:FPS]
    #[arg(long, value_name = "SOURCE")]
    pub source: String,
    #[command(flatten)]
    pub stream: StreamArgs,
}

#[derive(Args)]
pub struct StreamArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Stop after N classified frames (default: until Ctrl-C or the source ends).
    #[arg(long, value_name = "N")]
    pub frames: Option<u64>,
    /// Print `unknown` when the smoothed best probability is below T.
    #[arg(long, value_name = "T", default_value_t = 0.0, value_parser = parse_probability)]
    pub threshold: f32,
    /// Per-class thresholds replacing --threshold for those classes, e.g. bees=0.8,ants=0.6.
    #[arg(long, value_name = "CLASS=T,...", value_delimiter = ',', value_parser = parse_class_threshold)]
    pub threshold_class: Vec<(String, f32)>,
    /// Average probabilities over the last K frames.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub smooth: u16,
    #[command(flatten)]
    pub top: TopKArgs,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = EmitFormat::Text)]
    pub emit: EmitFormat,
    /// Start a `dir:` source over when it ends (ignored, with a warning, for live sources).
    #[arg(long = "loop")]
    pub looping: bool,
    #[command(flatten)]
    pub capture: CaptureArgs,
    #[command(flatten)]
    pub mqtt: RunMqttArgs,
    #[command(flatten)]
    pub live: LiveArgs,
    #[command(flatten)]
    pub collect: CollectArgs,
}

/// The live page and model hot reload (`run`).
#[derive(Args, Clone)]
pub struct LiveArgs {
    /// Serve a live page, /api/latest, /api/frame.jpg, /healthz and /metrics on ADDR:PORT
    /// (e.g. 127.0.0.1:8080 for this machine only, 0.0.0.0:8080 for the network).
    #[arg(long, value_name = "ADDR:PORT")]
    pub http: Option<String>,
    /// Keep the model loaded at start even when the --model file is replaced or on SIGHUP
    /// (by default a replaced model is loaded, checked and swapped in between frames).
    #[arg(long)]
    pub no_reload: bool,
}

/// Saving uncertain frames for the next `trainer fit` (`run`).
#[derive(Args, Clone)]
pub struct CollectArgs {
    /// Save frames the model is unsure about as DIR/<predicted label>/<ts>-<score>.jpg.
    #[arg(long, value_name = "DIR", requires = "capture_below")]
    pub capture: Option<PathBuf>,
    /// Save a frame when its smoothed top score is below T.
    #[arg(long, value_name = "T", requires = "capture", value_parser = parse_probability)]
    pub capture_below: Option<f32>,
    /// Save at most one frame per S seconds.
    #[arg(long, value_name = "S", requires = "capture", value_parser = parse_seconds)]
    pub capture_every: Option<f64>,
    /// Stop capturing once DIR holds N captured frames (the oldest are kept).
    #[arg(long, value_name = "N", requires = "capture")]
    pub capture_max: Option<u64>,
    /// Stop capturing once the captured frames in DIR take M megabytes (10^6 bytes).
    #[arg(long, value_name = "M", requires = "capture", value_parser = parse_megabytes)]
    pub capture_max_mb: Option<f64>,
}

fn parse_megabytes(s: &str) -> Result<f64, String> {
    parse_positive(s, "megabytes")
}

impl CollectArgs {
    pub fn options(&self) -> Option<CollectOptions> {
        let (dir, below) = (self.capture.clone()?, self.capture_below?);
        Some(CollectOptions {
            dir,
            below,
            every: self.capture_every.map(Duration::from_secs_f64),
            max_files: self.capture_max,
            max_bytes: self.capture_max_mb.map(|m| (m * 1e6) as u64),
        })
    }
}

fn parse_probability(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(t) if (0.0..=1.0).contains(&t) => Ok(t),
        _ => Err(format!("'{s}' is not a probability between 0 and 1")),
    }
}

/// `CLASS=T` (the class name may itself contain `=`: the last one splits).
fn parse_class_threshold(s: &str) -> Result<(String, f32), String> {
    let (class, t) = s.rsplit_once('=').ok_or_else(|| format!("'{s}': expected CLASS=T, e.g. bees=0.8"))?;
    if class.is_empty() {
        return Err(format!("'{s}': the class name is empty"));
    }
    Ok((class.to_string(), parse_probability(t)?))
}

/// The broker connection (`run --mqtt`, `bench --mqtt`).
#[derive(Args, Clone)]
pub struct MqttArgs {
    /// Publish to an MQTT broker: mqtt://[user[:password]@]host[:port][/prefix] or mqtts://...
    /// (prefix default `perch`; the password may come from PERCH_MQTT_PASSWORD instead).
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,
    /// CA certificate (PEM) for an mqtts:// broker whose certificate is not signed by a system CA.
    #[arg(long, value_name = "FILE", requires = "mqtt")]
    pub mqtt_ca: Option<PathBuf>,
    /// This device's name: its topic level `{prefix}/{name}/` and its Home Assistant device
    /// (default: the host name, sanitised).
    #[arg(long, value_name = "NAME", requires = "mqtt")]
    pub name: Option<String>,
}

/// `--mqtt URL` parsed, the password taken from PERCH_MQTT_PASSWORD if the URL has none. The
/// error never repeats the URL (it may hold a password).
fn broker_url(url: &str) -> Result<BrokerUrl, RuntimeError> {
    let parsed: BrokerUrl =
        url.parse().map_err(|reason| RuntimeError::BadMqtt { what: "--mqtt URL".into(), reason })?;
    Ok(parsed.with_password_fallback(std::env::var(mqtt::PASSWORD_ENV).ok()))
}

impl MqttArgs {
    pub fn target(&self) -> Result<Option<mqtt::Target>, RuntimeError> {
        let Some(url) = &self.mqtt else { return Ok(None) };
        let name = match &self.name {
            Some(n) => {
                mqtt::check_name(n)?;
                n.clone()
            }
            None => mqtt::default_name(),
        };
        Ok(Some(mqtt::Target { url: broker_url(url)?, ca: self.mqtt_ca.clone(), name }))
    }
}

/// `run --mqtt` and what it publishes.
#[derive(Args, Clone)]
pub struct RunMqttArgs {
    #[command(flatten)]
    pub conn: MqttArgs,
    /// Publish a new label once it held for K consecutive frames.
    #[arg(long, value_name = "K", default_value_t = 3, requires = "mqtt", value_parser = clap::value_parser!(u32).range(1..))]
    pub debounce: u32,
    /// Publish the state at least every S seconds, changed or not.
    #[arg(long, value_name = "S", default_value_t = 60.0, requires = "mqtt", value_parser = parse_seconds)]
    pub heartbeat: f64,
    /// Announce the device to Home Assistant (MQTT discovery) under PREFIX.
    #[arg(long, value_name = "PREFIX", num_args = 0..=1, default_missing_value = "homeassistant", requires = "mqtt")]
    pub ha_discovery: Option<String>,
    /// Classes that get a Home Assistant binary_sensor each (on while that class is the label).
    #[arg(long, value_name = "CLASS,...", value_delimiter = ',', requires = "ha_discovery")]
    pub ha_binary: Vec<String>,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    parse_positive(s, "seconds")
}

fn parse_positive(s: &str, unit: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("'{s}' is not a positive number of {unit}")),
    }
}

impl RunMqttArgs {
    pub fn options(&self) -> Result<Option<PublishOptions>, RuntimeError> {
        let Some(target) = self.conn.target()? else { return Ok(None) };
        if let Some(prefix) = &self.ha_discovery {
            mqtt::check_topic_levels(prefix, "--ha-discovery prefix")
                .map_err(|reason| RuntimeError::BadMqtt { what: "--ha-discovery".into(), reason })?;
        }
        Ok(Some(PublishOptions {
            url: target.url,
            ca: target.ca,
            name: target.name,
            debounce: self.debounce,
            heartbeat: Duration::from_secs_f64(self.heartbeat),
            ha_discovery: self.ha_discovery.clone(),
            ha_binary: self.ha_binary.clone(),
        }))
    }
}

/// How to capture (cameras, ffmpeg sources) and what part of each frame to classify. Ranges
/// and combinations are checked by the library (`CaptureOptions::validate`), once.
#[derive(Args, Clone)]
pub struct CaptureArgs {
    /// Frame width to capture (with --height); video and streams are scaled to it.
    #[arg(long, value_name = "W")]
    pub width: Option<u32>,
    /// Frame height to capture (with --width).
    #[arg(long, value_name = "H")]
    pub height: Option<u32>,
    /// Frames per second to ask of the camera (video and streams are resampled to it).
    #[arg(long, value_name = "F")]
    pub fps: Option<f64>,
    /// Turn each frame clockwise by 0, 90, 180 or 270 degrees.
    #[arg(long, value_name = "DEG", default_value = "0")]
    pub rotate: Rotation,
    /// Mirror each frame (after --rotate): h left-right, v upside down.
    #[arg(long, value_name = "h|v")]
    pub flip: Option<Flip>,
    /// Classify only this region (pixels, of the rotated and flipped frame).
    #[arg(long, value_name = "X,Y,W,H")]
    pub roi: Option<Roi>,
}

impl CaptureArgs {
    pub fn options(&self) -> CaptureOptions {
        CaptureOptions {
            width: self.width,
            height: self.height,
            fps: self.fps,
            rotate: self.rotate,
            flip: self.flip,
            roi: self.roi,
        }
    }
}

impl StreamArgs {
    pub fn options(&self) -> RunOptions {
        RunOptions {
            frames: self.frames,
            threshold: self.threshold,
            class_thresholds: self.threshold_class.clone(),
            smooth: self.smooth.into(),
            top_k: self.top.top_k.into(),
            transform: self.capture.options().transform(),
            ..RunOptions::default()
        }
    }
}

/// `edge-runtime bench`: measure models, or `edge-runtime bench report` to merge reports.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    #[command(flatten)]
    pub measure: MeasureArgs,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Merge reports from several devices into one table (device × model × threads) and plot.
    Report(ReportArgs),
}

/// What `bench` and `bench report` write (the Markdown table goes to stdout without --markdown).
#[derive(Args, Clone)]
pub struct OutputArgs {
    /// Write the report as JSON (`bench report` merges several).
    #[arg(long, value_name = "FILE.json")]
    pub json: Option<PathBuf>,
    /// Write the table as Markdown.
    #[arg(long, value_name = "FILE.md")]
    pub markdown: Option<PathBuf>,
    /// Draw p50/p90 latency bars per device × model × threads (PNG).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
}

impl From<&OutputArgs> for ReportOutputs {
    fn from(o: &OutputArgs) -> Self {
        ReportOutputs { json: o.json.clone(), markdown: o.markdown.clone(), plot: o.plot.clone() }
    }
}

#[derive(Args)]
pub struct ReportArgs {
    /// Reports written by `edge-runtime bench --json`.
    #[arg(required_unless_present = "mqtt", value_name = "REPORT.json")]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Also collect every device's report published by `bench --mqtt` from this broker.
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,
    /// CA certificate (PEM) for an mqtts:// broker.
    #[arg(long, value_name = "FILE", requires = "mqtt")]
    pub mqtt_ca: Option<PathBuf>,
    /// Seconds to collect retained reports from the broker.
    #[arg(long, value_name = "S", default_value_t = 2.0, requires = "mqtt", value_parser = parse_seconds)]
    pub wait: f64,
}

impl ReportArgs {
    pub fn broker(&self) -> Result<Option<ReportFromBroker>, RuntimeError> {
        let Some(url) = &self.mqtt else { return Ok(None) };
        let target = mqtt::Target { url: broker_url(url)?, ca: self.mqtt_ca.clone(), name: mqtt::default_name() };
        Ok(Some(ReportFromBroker { target, wait: Duration::from_secs_f64(self.wait) }))
    }
}

#[derive(Args)]
pub struct MeasureArgs {
    /// ONNX model to measure; repeat to compare several.
    #[arg(long = "model", value_name = "M.onnx")]
    pub models: Vec<PathBuf>,
    /// Backbone preset for models without a perch manifest (as in `classify`); once for all
    /// models or once per --model.
    #[arg(long = "preset", value_name = "NAME")]
    pub presets: Vec<Backbone>,
    /// Labels file (as in `classify`); once for all models or once per --model.
    #[arg(long = "labels", value_name = "FILE")]
    pub labels: Vec<PathBuf>,
    /// Thread counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1", value_name = "N,N,...", value_parser = threads_parser())]
    pub threads: Vec<u16>,
    /// Untimed inferences before measuring.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Timed inferences (and timed preprocessing runs).
    #[arg(long, default_value_t = 200)]
    pub iterations: usize,
    /// Image to preprocess and classify (default: a synthetic 640x480 JPEG frame).
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// For int8 (QDQ) models: measure only this mode (default: both native and weights).
    #[arg(long, value_enum)]
    pub int8: Option<Int8Mode>,
    /// Engines to measure, comma-separated (tract, ort; auto measures both).
    #[arg(long = "engine", value_enum, value_delimiter = ',', default_value = "tract", value_name = "NAME,...")]
    pub engines: Vec<Engine>,
    /// The onnxruntime library for ort rows (as in `classify --ort-lib`).
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub mqtt: MqttArgs,
    /// Internal: measure the one model and thread count in this process and print its row.
    #[arg(long, hide = true)]
    pub child: bool,
}

impl MeasureArgs {
    pub fn options(&self) -> Result<MeasureOptions, RuntimeError> {
        Ok(MeasureOptions {
            models: self.models.clone(),
            presets: self.presets.clone(),
            labels: self.labels.clone(),
            threads: self.threads.iter().copied().map(usize::from).collect(),
            warmup: self.warmup,
            iterations: self.iterations,
            image: self.image.clone(),
            int8: self.int8,
            engines: self.engines.clone(),
            ort_lib: self.ort_lib.clone(),
            outputs: (&self.output).into(),
            mqtt: self.mqtt.target()?,
        })
    }
}

/// `edge-runtime enrol`: exactly one of --class (with --source), --from-folder, --remove, --list.
#[derive(Args)]
#[command(group(ArgGroup::new("action").required(true).args(["class", "from_folder", "remove", "list"])))]
pub struct EnrolArgs {
    /// The model to build on: a perch export, an enrolled model, or a reference model with --preset.
    #[arg(long, value_name = "M.onnx")]
    pub model: PathBuf,
    /// Catalog backbone of a reference ImageNet model without a perch manifest.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<Backbone>,
    /// Class names of a --preset model (only --keep-classes needs them).
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Where to write the new model (may be the --model file itself: replaced atomically).
    #[arg(long, value_name = "NEW.onnx", required_unless_present = "list")]
    pub out: Option<PathBuf>,
    /// Name of the class the --source frames show.
    #[arg(long, value_name = "NAME", requires = "source")]
    pub class: Option<String>,
    /// Where the frames come from: camera:N, libcamera[:N], video:FILE, dir:DIR, a stream URL, ...
    #[arg(long, value_name = "SOURCE", requires = "class")]
    pub source: Option<String>,
    /// Frames to collect from --source (at least 2).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub frames: usize,
    /// Seconds between collected frames on live sources (move the object between them).
    #[arg(long, value_name = "S", default_value_t = 0.5)]
    pub every: f64,
    /// Enrol every class of a folder at once: DIR/<class>/images.
    #[arg(long, value_name = "DIR")]
    pub from_folder: Option<PathBuf>,
    /// With --from-folder: the first N images (by name) of each class.
    #[arg(long, value_name = "N", requires = "from_folder")]
    pub limit_per_class: Option<usize>,
    /// Replace the examples of a class that is already enrolled.
    #[arg(long)]
    pub replace: bool,
    /// Remove an enrolled class.
    #[arg(long, value_name = "NAME")]
    pub remove: Option<String>,
    /// Show the classes and their example counts.
    #[arg(long)]
    pub list: bool,
    /// Keep the trained head's classes beside the enrolled ones (weight imprinting).
    #[arg(long)]
    pub keep_classes: bool,
    /// Head fitted on the enrolled embeddings: prototype (cosine class means) or logistic.
    #[arg(long, value_name = "KIND", default_value_t = HeadKind::Prototype)]
    pub head: HeadKind,
    /// Intra-op threads for the embedding runs (default 1).
    #[arg(long, value_name = "N", value_parser = threads_parser())]
    pub threads: Option<u16>,
    /// Refuse images with more pixels than this (decompression-bomb guard).
    #[arg(long, value_name = "PIXELS", default_value_t = ImageLimits::default().max_pixels)]
    pub max_pixels: u64,
    #[command(flatten)]
    pub capture: CaptureArgs,
}

impl EnrolArgs {
    pub fn input(&self) -> ModelInput {
        ModelInput {
            model: self.model.clone(),
            preset: self.preset,
            labels: self.labels.clone(),
            threads: self.threads.map(usize::from),
            limits: ImageLimits { max_pixels: self.max_pixels },
        }
    }

    /// The library options of an enrolment that changes the model (not --list).
    pub fn options(&self) -> Result<EnrolOptions, RuntimeError> {
        let change = if let Some(name) = &self.remove {
            Change::Remove(name.clone())
        } else if let Some(dir) = &self.from_folder {
            let examples = Examples::Folder { dir: dir.clone(), limit_per_class: self.limit_per_class };
            Change::Add { examples, replace: self.replace }
        } else {
            let spec: SourceSpec = self.source.as_deref().unwrap_or_default().parse()?;
            if !(self.every.is_finite() && self.every >= 0.0) {
                return Err(RuntimeError::BadCapture(format!("--every {} must be 0 or more seconds", self.every)));
            }
            let examples = Examples::Source {
                class: self.class.clone().unwrap_or_default(),
                spec,
                capture: self.capture.options(),
                frames: self.frames,
                every: Duration::from_secs_f64(self.every),
            };
            Change::Add { examples, replace: self.replace }
        };
        Ok(EnrolOptions {
            input: self.input(),
            out: self.out.clone().unwrap_or_default(),
            change,
            head: self.head,
            keep_classes: self.keep_classes,
        })
    }
}

/// `edge-runtime --camera N ...` is `edge-runtime run --source camera:N ...`: rewritten before
/// parsing so both spellings share one set of flags.
pub fn expand_camera_shortcut(mut args: Vec<OsString>) -> Vec<OsString> {
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or_default();
    let index = if first == "--camera" {
        args.get(2).and_then(|a| a.to_str()).map(|n| (n.to_string(), 3))
    } else {
        first.strip_prefix("--camera=").map(|n| (n.to_string(), 2))
    };
    if let Some((n, rest)) = index {
        let tail = args.split_off(rest.min(args.len()));
        args.truncate(1);
        args.extend(["run".into(), "--source".into(), format!("camera:{n}").into()]);
        args.extend(tail);
    }
    args
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("edge-runtime").chain(args.iter().copied()))
    }

    fn bench(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        match parse(args)?.command {
            Command::Bench(b) => Ok(b),
            _ => panic!("not a bench command"),
        }
    }

    #[test]
    fn measure_and_report_modes_parse() {
        let b = bench(&["bench", "--model", "a.onnx", "--model", "b.onnx", "--threads", "1,2,4", "--json", "o.json"])
            .unwrap();
        assert!(b.command.is_none());
        let m = b.measure.options().unwrap();
        assert_eq!(m.models.len(), 2);
        assert_eq!(m.threads, vec![1, 2, 4]);
        assert_eq!((m.warmup, m.iterations), (20, 200));
        assert_eq!(m.outputs.json.as_deref(), Some(Path::new("o.json")));
        let b = bench(&["bench", "report", "a.json", "b.json", "--markdown", "r.md", "--plot", "p.png"]).unwrap();
        let Some(BenchCommand::Report(r)) = b.command else { panic!("report subcommand") };
        assert_eq!(r.inputs.len(), 2);
        assert_eq!(ReportOutputs::from(&r.output).plot.as_deref(), Some(Path::new("p.png")));
        assert!(bench(&["bench", "report"]).is_err(), "report needs at least one input");
        assert!(bench(&["bench", "--model", "a.onnx", "--preset", "resnet"]).is_err());
    }

    #[test]
    fn threads_and_top_k_are_ranged_the_same_everywhere() {
        for zero in [
            &["bench", "--model", "a.onnx", "--threads", "1,0"][..],
            &["classify", "--model", "m.onnx", "--threads", "0", "a.jpg"],
            &["run", "--source", "synthetic", "--model", "m.onnx", "--threads", "0"],
            &["classify", "--model", "m.onnx", "--top-k", "0", "a.jpg"],
            &["run", "--source", "synthetic", "--model", "m.onnx", "--top-k", "0"],
        ] {
            let err = parse(zero).err().unwrap_or_else(|| panic!("{zero:?} accepted"));
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{zero:?}: {err}");
        }
    }

    fn run(args: &[&str]) -> Result<StreamArgs, clap::Error> {
        let mut all = vec!["run", "--source", "synthetic", "--model", "m.onnx"];
        all.extend_from_slice(args);
        match parse(&all)?.command {
            Command::Run(r) => Ok(r.stream),
            _ => panic!("not a run command"),
        }
    }

    #[test]
    fn capture_flags_parse_into_the_library_options() {
        let r = run(&["--width", "640", "--height", "480", "--fps", "15", "--rotate", "270", "--flip", "h"]).unwrap();
        let c = r.capture.options();
        assert_eq!((c.width, c.height, c.fps), (Some(640), Some(480), Some(15.0)));
        assert_eq!((c.rotate, c.flip, c.roi), (Rotation::R270, Some(Flip::Horizontal), None));
        let r = run(&["--roi", "10,20,100,50"]).unwrap();
        assert_eq!(r.options().transform.roi, Some(Roi { x: 10, y: 20, width: 100, height: 50 }));
        assert_eq!(r.capture.options(), CaptureOptions { roi: r.capture.roi, ..CaptureOptions::default() });
        for bad in [&["--rotate", "45"][..], &["--flip", "d"], &["--roi", "1,2,3"], &["--width", "x"]] {
            let err = run(bad).err().unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad:?}: {err}");
        }
        assert!(matches!(parse(&["devices", "--json"]).unwrap().command, Command::Devices(DevicesArgs { json: true })));
    }

    fn enrol(args: &[&str]) -> Result<EnrolArgs, clap::Error> {
        let mut all = vec!["enrol", "--model", "m.onnx"];
        all.extend_from_slice(args);
        match parse(&all)?.command {
            Command::Enrol(e) => Ok(e),
            _ => panic!("not an enrol command"),
        }
    }

    #[test]
    fn enrol_takes_exactly_one_action_and_builds_the_library_options() {
        let e = enrol(&["--out", "n.onnx", "--class", "mug", "--source", "dir:mugs", "--frames", "5"]).unwrap();
        let o = e.options().unwrap();
        let Change::Add { examples: Examples::Source { class, spec, frames, every, .. }, replace: false } = o.change
        else {
            panic!("source enrolment")
        };
        assert_eq!(
            (class.as_str(), spec, frames, every),
            ("mug", SourceSpec::Dir("mugs".into()), 5, Duration::from_millis(500))
        );
        let e = enrol(&["--out", "n.onnx", "--from-folder", "d", "--limit-per-class", "3", "--replace"]).unwrap();
        assert!(matches!(
            e.options().unwrap().change,
            Change::Add { examples: Examples::Folder { limit_per_class: Some(3), .. }, replace: true }
        ));
        assert!(matches!(
            enrol(&["--out", "n.onnx", "--remove", "mug"]).unwrap().options().unwrap().change,
            Change::Remove(_)
        ));
        assert!(enrol(&["--list"]).unwrap().list);
        assert_eq!(enrol(&["--list", "--head", "logistic"]).unwrap().head, HeadKind::Logistic);
        for bad in [
            &[][..],
            &["--list", "--remove", "x"],
            &["--out", "n.onnx", "--class", "mug"],
            &["--out", "n.onnx", "--source", "dir:x"],
            &["--class", "mug", "--source", "dir:x"],
            &["--out", "n.onnx", "--remove", "a", "--from-folder", "d"],
            &["--list", "--head", "knn"],
        ] {
            assert!(enrol(bad).is_err(), "{bad:?} accepted");
        }
        let e = enrol(&["--out", "n.onnx", "--class", "mug", "--source", "webcam"]).unwrap();
        assert!(matches!(e.options().unwrap_err(), RuntimeError::BadSource(_)));
    }

    #[test]
    fn camera_shortcut_becomes_run() {
        let args: Vec<OsString> = ["edge-runtime", "--camera", "0", "--model", "m.onnx"].map(OsString::from).into();
        let expanded = expand_camera_shortcut(args);
        assert_eq!(expanded, ["edge-runtime", "run", "--source", "camera:0", "--model", "m.onnx"].map(OsString::from));
        let args: Vec<OsString> = ["edge-runtime", "--camera=2"].map(OsString::from).into();
        assert_eq!(expand_camera_shortcut(args), ["edge-runtime", "run", "--source", "camera:2"].map(OsString::from));
    }
}
