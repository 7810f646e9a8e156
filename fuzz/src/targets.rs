//! One function per loader. Each gets arbitrary bytes and drives the library the way the
//! binaries do with a file or a stream of that kind; errors are expected, panics are crashes.
//! Loaders that only take a path get the bytes through a scratch file (on /dev/shm when it
//! exists, so a run does not wear a disk).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::tensor::Device;
use edge_runtime::report::{BenchReport, MergedReport};
use edge_runtime::source::mjpeg::{MjpegSplitter, Piece};
use edge_runtime::{Classifier, Int8Mode, LoadOptions};
use models::preprocess::{JpegExtent, decode_image, jpeg_extent};
use models::{Backbone, ImageLimits, Manifest, Preprocessor};
use trainer::backbone::BackboneNet;
use trainer::checkpoint;
use trainer::head::Head;

/// A fuzz target: its name (the corpus folder), what it covers, the function.
pub struct Target {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(&[u8]),
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "onnx",
        about: "edge-runtime model load: ONNX protobuf, perch.manifest, int8 folding, tract plan, one inference",
        run: onnx,
    },
    Target { name: "manifest", about: "perch.manifest JSON and postcard parsing and validation", run: manifest },
    Target {
        name: "image",
        about: "image decode (JPEG marker walk, PNG, ...) and preprocessing to a tensor",
        run: image,
    },
    Target { name: "mjpeg", about: "MJPEG stream frame splitting, fed in odd-sized chunks", run: mjpeg },
    Target { name: "safetensors", about: "backbone weights (safetensors) loading into MobileNetV2", run: safetensors },
    Target {
        name: "checkpoint",
        about: "run checkpoint loading: model.bpk, optim.bpk, state.json (first byte picks the file)",
        run: checkpoint,
    },
    Target { name: "bench_report", about: "`bench report`: report JSON, merge, markdown and plot", run: bench_report },
];

pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

static SCRATCH: OnceLock<tempfile::TempDir> = OnceLock::new();

/// Removes the scratch folder (a static is never dropped: the runner calls this at its end).
pub fn remove_scratch() {
    if let Some(dir) = SCRATCH.get() {
        let _ = std::fs::remove_dir_all(dir.path());
    }
}

/// Where path-based loaders read their input from (one folder per process).
fn scratch(name: &str) -> PathBuf {
    let dir = SCRATCH.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        tempfile::Builder::new().prefix("perch-fuzz-").tempdir_in(base).expect("scratch folder for the fuzz inputs")
    });
    dir.path().join(name)
}

fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch(name);
    std::fs::write(&path, data).expect("write the scratch input");
    path
}

/// `Classifier::load` as `classify`/`run` call it, then one inference when it loads: a model
/// the loader accepts must also run (or refuse to) without panicking.
pub fn onnx(data: &[u8]) {
    let path = scratch_file("model.onnx", data);
    let mut opts = LoadOptions::new(&path);
    // Both int8 paths (the QDQ graph as is, and its weights folded to float); fp32 models
    // take the same path either way. `auto` only adds timing.
    opts.int8 = if data.len().is_multiple_of(2) { Int8Mode::Native } else { Int8Mode::Weights };
    if let Ok(c) = Classifier::load(&opts) {
        let input = vec![0.5f32; c.input_len()];
        let _ = c.classify(&input, 5);
    }
}

/// The manifest from JSON (as stored in the ONNX metadata) and postcard; one that parses must
/// survive a round trip.
pub fn manifest(data: &[u8]) {
    let parsed = [std::str::from_utf8(data).ok().map(Manifest::from_json), Some(Manifest::from_postcard(data))];
    for m in parsed.into_iter().flatten().flatten() {
        let again = Manifest::from_json(&m.to_json());
        assert!(again.is_ok(), "a manifest that validated does not parse back: {:?}", again.err());
    }
}

/// Decode with the runtime's limits, then the preprocessing every model input goes through.
pub fn image(data: &[u8]) {
    let _ = jpeg_extent(data);
    // A smaller pixel limit than the binaries' 100 MP keeps executions fast; the check itself
    // is the same code.
    let limits = ImageLimits { max_pixels: 4_000_000 };
    if let Ok(img) = decode_image(data, Path::new("fuzz-input"), limits) {
        let mut pre = Preprocessor::new(Backbone::MobileNetV2.preprocessing());
        let t = pre.tensor(img).expect("a decoded image preprocesses");
        assert_eq!(t.len(), pre.spec().tensor_len());
    }
}

/// The splitter as a capture thread drives it: bytes arrive in chunks of varying size; every
/// frame it returns must be a complete JPEG by the same marker walk.
pub fn mjpeg(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let mut splitter = MjpegSplitter::new(1 << 20);
    let mut chunk = (first as usize % 61) + 1;
    let mut out = 0usize;
    let mut check = |p: Piece| {
        if let Piece::Frame(f) = p {
            assert!(matches!(jpeg_extent(&f), JpegExtent::Complete(n) if n == f.len()), "frame is not one JPEG");
            out += f.len();
        }
    };
    for part in rest.chunks(chunk.max(1)) {
        splitter.push(part);
        while let Some(p) = splitter.pop() {
            check(p);
        }
        chunk = chunk * 7 % 509 + 1;
    }
    while let Some(p) = splitter.finish() {
        check(p);
    }
    assert!(out <= rest.len(), "frames hold more bytes than went in");
}

/// `BackboneNet::load_file`: safetensors header, tensor names, shapes and dtypes.
pub fn safetensors(data: &[u8]) {
    let path = scratch_file("weights.safetensors", data);
    let _ = BackboneNet::load_file(Backbone::MobileNetV2, &path, &Device::flex());
}

/// Classes and feature width of the checkpoints in the seed corpus (a MobileNetV2 head on a
/// two-class dataset, as `trainer fit` writes it).
pub const CHECKPOINT_FEATURES: usize = 1280;
pub const CHECKPOINT_CLASSES: usize = 2;

/// What `trainer fit --resume` reads from a checkpoint folder. The first byte picks the file
/// (0: model.bpk, 1: optim.bpk, else state.json, through `checkpoint::latest`).
pub fn checkpoint(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else { return };
    let device = Device::flex();
    match which % 3 {
        0 => {
            let path = scratch_file(checkpoint::MODEL_FILE, body);
            if let Ok(head) = Head::new(CHECKPOINT_FEATURES, CHECKPOINT_CLASSES, 0.2, &device) {
                let _ = checkpoint::load_module(head, &path);
            }
        }
        1 => {
            let dir = scratch("checkpoint");
            std::fs::create_dir_all(&dir).expect("scratch checkpoint folder");
            std::fs::write(dir.join(checkpoint::OPTIM_FILE), body).expect("write the scratch input");
            let _ = checkpoint::load_optimizer(burn::optim::AdamConfig::new().init(), &dir);
        }
        _ => {
            let run = scratch("run");
            let epoch = checkpoint::checkpoints_dir(&run).join("epoch-001");
            std::fs::create_dir_all(&epoch).expect("scratch run folder");
            std::fs::write(epoch.join(checkpoint::STATE_FILE), body).expect("write the scratch input");
            let _ = checkpoint::latest(&run);
        }
    }
}

/// `edge-runtime bench report A.json B.json --markdown --plot`: parse, merge two copies (the
/// same device twice and a clash), render markdown and the plot.
pub fn bench_report(data: &[u8]) {
    let path = scratch_file("report.json", data);
    let Ok(report) = BenchReport::read(&path) else { return };
    let mut other = report.clone();
    other.device.hostname = Some(format!("{}-b", other.device.hostname.unwrap_or_default()));
    let Ok(merged) = MergedReport::merge(vec![("a.json".into(), report), ("b.json".into(), other)]) else { return };
    let _ = merged.to_markdown();
    let _ = merged.write_plot(&scratch("report.png"));
}
