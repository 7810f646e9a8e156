//! The runtime's one error type. Every message names the file (or device) involved and says
//! what to do about it; the binary maps variants to exit codes (see `main.rs`).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("model file {path} does not exist: check the --model path")]
    ModelMissing { path: PathBuf },
    #[error("cannot read model {path}: {source}")]
    ModelIo { path: PathBuf, source: std::io::Error },
    #[error("model {path} is empty (0 bytes): the export or copy did not finish; export or copy it again")]
    ModelEmpty { path: PathBuf },
    #[error(
        "{path} is not a readable ONNX model ({reason}): pass an .onnx file; a truncated copy or download also looks like this, so copy it again"
    )]
    NotOnnx { path: PathBuf, reason: String },
    #[error("tract cannot run model {path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("onnxruntime cannot run model {path}: {reason}")]
    OrtModel { path: PathBuf, reason: String },
    #[error(
        "--engine ort needs the onnxruntime library (libonnxruntime.so, version {min} or newer): {reason}. Get it with `pip install onnxruntime` (x86-64 and 64-bit Raspberry Pi OS) and pass --ort-lib with the folder pip printed for it, e.g. --ort-lib ~/.local/lib/python3.11/site-packages/onnxruntime/capi, or set ORT_DYLIB_PATH; --engine tract needs nothing", min = crate::engine::ORT_MIN_VERSION
    )]
    OrtUnavailable { reason: String },
    #[error(
        "--engine {engine} needs the `ort` feature, and this edge-runtime was built without it: rebuild with `cargo build --release -p edge-runtime --features ort`, or use --engine tract"
    )]
    EngineNotBuilt { engine: String },
    #[error(
        "model {path} has no perch manifest (metadata `perch.manifest`): pass --preset NAME (mobilenetv2, efficientnet-lite0, efficientnet-b0) and --labels FILE"
    )]
    NoManifest { path: PathBuf },
    #[error("--preset {preset} needs --labels FILE (one class name per line, in model output order)")]
    PresetWithoutLabels { preset: String },
    #[error("model {path}: {source}")]
    Manifest { path: PathBuf, source: models::ModelsError },
    #[error(
        "model {path} has {outputs} outputs but {labels} labels{hint}: use the labels file made for this model (one line per class, in output order)"
    )]
    LabelMismatch { path: PathBuf, outputs: usize, labels: usize, hint: String },
    #[error("input tensor has {got} values but the model expects {expected} (1x3x{height}x{width})")]
    InputSize { got: usize, expected: usize, width: u32, height: u32 },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("int8 rewrite of {path} failed: {reason}")]
    Int8 { path: PathBuf, reason: String },
    /// A bad image: decoding, size limits, empty files. Classify counts these as skips.
    #[error(transparent)]
    Image(#[from] models::ModelsError),
    #[error("{path} does not exist")]
    InputMissing { path: PathBuf },
    #[error("no image files found in {paths}: pass image files or folders holding .jpg/.png/... files")]
    NoImages { paths: String },
    #[error(
        "invalid --source '{0}': expected camera:N, libcamera[:N], video:FILE, dir:DIR, synthetic[:FPS] or a stream URL (rtsp://, http://, https://, udp://)"
    )]
    BadSource(String),
    #[error("invalid capture settings: {0}")]
    BadCapture(String),
    #[error(
        "--roi {roi} does not fit the {width}x{height} frames of {source_name} (after --rotate {rotate}): X+W must be at most {width} and Y+H at most {height}"
    )]
    RoiOutside { roi: String, source_name: String, width: u32, height: u32, rotate: u32 },
    #[error("{source_name} needs `{program}`, which is not installed (not found on PATH): {install}")]
    ToolMissing { source_name: String, program: String, install: String },
    #[error("{source_name}: {reason}")]
    Capture { source_name: String, reason: String },
    #[error(
        "{path} is not a video ffmpeg can read ({reason}): pass a video file (.mp4, .mkv, .avi, ...), or --source dir:DIR for a folder of images"
    )]
    NotVideo { path: PathBuf, reason: String },
    #[error("no camera at index {index}; found: {found}")]
    NoCamera { index: u32, found: String },
    #[error(
        "camera input needs the `camera` feature, and this edge-runtime was built without it: rebuild with `cargo build --release -p edge-runtime --features camera`"
    )]
    CameraNotBuilt,
    #[error("camera {index}: {reason}")]
    Camera { index: u32, reason: String },
    #[error(
        "source {source_name} lost after {attempts} attempts over {waited_ms} ms: {reason}; check the connection and restart"
    )]
    SourceLost { source_name: String, attempts: u32, waited_ms: u64, reason: String },
    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),
    #[error("cannot write {path}: {source}")]
    WriteFile { path: PathBuf, source: std::io::Error },
    #[error("invalid {what}: {reason}")]
    BadMqtt { what: String, reason: String },
    #[error("MQTT broker {broker}: {reason}")]
    Mqtt { broker: String, reason: String },
    #[error("{flag} names class '{class}', which the model does not have; its classes: {known}")]
    UnknownClass { flag: String, class: String, known: String },
    #[error("new model {path} not swapped in: {reason}")]
    ReloadRejected { path: PathBuf, reason: String },
    #[error("cannot serve --http on {addr}: {reason}")]
    Http { addr: String, reason: String },
    #[error("invalid --capture settings: {0}")]
    BadCaptureDir(String),
}

impl RuntimeError {
    /// True for problems with one input image, which classify skips and counts instead of
    /// stopping the whole run.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, RuntimeError::Image(_) | RuntimeError::InputMissing { .. })
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
