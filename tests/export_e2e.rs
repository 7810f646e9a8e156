//! `trainer export` end to end through the built binaries: a small hymenoptera run is fitted
//! once, exported in fp32 and int8, and the files are run by `edge-runtime classify` with no
//! flag besides the model. The exports, the preprocessed validation tensors and tract's
//! logits are left in `target/perch-exports/` for `tests/python/run_checks.sh` (the ONNX
//! checker and onnxruntime cross-check). Bad inputs must fail clearly and leave no file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use edge_runtime::int8::Int8Mode;
use edge_runtime::model::{Classifier, LoadOptions, embedded_manifest, read_proto};
use models::{ImageLimits, Manifest, Preprocessor};

fn trainer(args: &[&str]) -> Output {
    perch::trainer().args(args).output().expect("run trainer")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "command failed: {}\n{}", out.status, text(&out));
    text(&out)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small mobilenetv2 run on hymenoptera (10 images per class), fitted once per test binary.
fn fitted_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let run = dir.join("run");
        let data = perch::dataset_dir("hymenoptera");
        ok(trainer(&[
            "fit",
            "--backbone",
            "mobilenetv2",
            "--data",
            s(&data),
            "--out",
            s(&run),
            "--cache-dir",
            s(&dir.join("cache")),
            "--limit-per-class",
            "10",
            "--epochs",
            "4",
            "--batch-size",
            "8",
            "--seed",
            "3",
        ]));
        run
    })
}

fn exports_dir() -> PathBuf {
    let dir = perch::workspace_root().join("target/perch-exports");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn manifest_of(path: &Path) -> Manifest {
    let proto = read_proto(path).unwrap();
    Manifest::from_json(embedded_manifest(&proto).expect("perch.manifest in the file")).unwrap()
}

/// Preprocessed validation images of the run (ants first, then bees) and their labels.
fn validation_inputs(n_per_class: usize) -> (Vec<Vec<f32>>, [usize; 4]) {
    let val = perch::dataset_dir("hymenoptera").join("val");
    let mut pre = Preprocessor::new(models::Backbone::MobileNetV2.preprocessing());
    let mut inputs = Vec::new();
    for class in ["ants", "bees"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(val.join(class)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files.iter().rev().take(n_per_class) {
            inputs.push(pre.tensor_from_file(f, ImageLimits::default()).unwrap());
        }
    }
    let shape = [inputs.len(), 3, 224, 224];
    (inputs, shape)
}

#[test]
fn exports_run_in_the_edge_runtime_with_their_manifest_and_feed_the_python_checks() {
    let run = fitted_run();
    let dir = exports_dir();
    let (fp32, int8) = (dir.join("hymenoptera-fp32.onnx"), dir.join("hymenoptera-int8.onnx"));
    let out = ok(trainer(&["export", "--run", s(run), "--out", s(&fp32)]));
    assert!(out.contains("fp32") && out.contains('%'), "prints the accuracy: {out}");
    let out = ok(trainer(&[
        "export",
        "--run",
        s(run),
        "--out",
        s(&int8),
        "--precision",
        "int8",
        "--calibration-images",
        "16",
        "--calibration-method",
        "minmax",
        "--max-drop",
        "10",
        "--reduce-range",
    ]));
    assert!(out.contains("int8-native") && out.contains("int8-weights") && out.contains("drop"), "{out}");
    // With an onnxruntime library (CI installs the wheel), the export also reports its accuracy
    // under --engine ort, for the fp32 reference and the int8 file.
    if perch::ort_library().is_some() {
        assert!(out.contains("ort-fp32") && out.contains("ort-int8-native"), "{out}");
    }

    // Self-describing: labels, preprocessing, precision, calibration and metrics travel inside.
    let (m32, m8) = (manifest_of(&fp32), manifest_of(&int8));
    assert_eq!(m32.labels.0, ["ants", "bees"]);
    assert_eq!(m32.preprocessing, models::Backbone::MobileNetV2.preprocessing());
    assert_eq!(m32.precision.kind, models::manifest::Precision::Fp32);
    assert_eq!(m8.precision.kind, models::manifest::Precision::Int8);
    let cal = m8.precision.calibration.as_ref().expect("calibration summary");
    assert_eq!((cal.method, cal.images), (models::manifest::CalibrationMethod::Minmax, 16));
    assert_eq!(cal.weight_bits, 7, "--reduce-range writes 7-bit weights");
    assert!(cal.weights >= 50 && cal.activations >= 50, "{cal:?}");
    for key in ["val_accuracy", "int8_native_accuracy", "int8_weights_accuracy", "int8_drop_points"] {
        assert!(m8.metrics.contains_key(key), "{key} missing from {:?}", m8.metrics);
    }
    assert!(m32.metrics["val_accuracy"] > 50.0, "a trained ants/bees model beats chance: {:?}", m32.metrics);
    let (size32, size8) = (std::fs::metadata(&fp32).unwrap().len(), std::fs::metadata(&int8).unwrap().len());
    assert!(size8 * 10 <= size32 * 3, "int8 file {size8} bytes should be <= 30% of fp32 {size32}");

    // `edge-runtime classify --model FILE IMAGE`: nothing else needed.
    let photo = perch::dataset_dir("hymenoptera").join("val/bees");
    for model in [&fp32, &int8] {
        let out = Command::new(perch::bin("edge-runtime"))
            .args(["classify", "--json", "--model", s(model), s(&photo)])
            .output()
            .unwrap();
        let stdout = ok(out);
        let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
        let label = first["top"][0]["label"].as_str().unwrap_or_default().to_string();
        assert!(label == "ants" || label == "bees", "{stdout}");
    }

    // Material for tests/python/check_exports.py: inputs, tract's logits per model.
    let (inputs, shape) = validation_inputs(8);
    let raw: Vec<u8> = inputs.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("inputs.f32"), raw).unwrap();
    let mut cases = Vec::new();
    for (model, precision) in [(&fp32, "fp32"), (&int8, "int8")] {
        let c = Classifier::load(&LoadOptions { int8: Int8Mode::Native, ..LoadOptions::new(model.as_path()) }).unwrap();
        let logits: Vec<Vec<f32>> = inputs.iter().map(|x| c.infer(x).unwrap()).collect();
        cases.push(serde_json::json!({
            "file": model.file_name().unwrap().to_str().unwrap(),
            "precision": precision,
            "tract_logits": logits,
        }));
    }
    let spec = serde_json::json!({ "inputs": "inputs.f32", "shape": shape, "models": cases });
    std::fs::write(dir.join("cases.json"), serde_json::to_string(&spec).unwrap()).unwrap();
}

/// Files in `dir` other than the ones listed (a failed export must leave no temp file).
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

fn fails_with(args: &[&str], expect: &[&str]) {
    let out = trainer(args);
    let msg = text(&out);
    assert!(!out.status.success(), "should fail: {args:?}\n{msg}");
    assert!(!msg.contains("panicked"), "no panic: {msg}");
    for e in expect {
        assert!(msg.contains(e), "message should mention '{e}': {msg}");
    }
}

#[test]
fn bad_inputs_are_clear_errors_and_leave_nothing_behind() {
    let run = fitted_run();
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("model.onnx");

    // Missing run folder.
    let missing = tmp.path().join("no-such-run");
    fails_with(&["export", "--run", s(&missing), "--out", s(&out)], &["no-such-run", "trainer fit"]);

    // A run folder without a best model (fit never finished an epoch).
    let empty_run = tmp.path().join("unfinished");
    std::fs::create_dir(&empty_run).unwrap();
    std::fs::copy(run.join("run.json"), empty_run.join("run.json")).unwrap();
    fails_with(&["export", "--run", s(&empty_run), "--out", s(&out)], &["best"]);

    // Unwritable output: its parent is a file.
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let bad_out = blocker.join("model.onnx");
    fails_with(&["export", "--run", s(run), "--out", s(&bad_out)], &["model.onnx"]);

    // No readable calibration image: the run's training images are all broken.
    let broken = tmp.path().join("broken-data");
    for class in ["ants", "bees"] {
        std::fs::create_dir_all(broken.join("train").join(class)).unwrap();
        std::fs::write(broken.join("train").join(class).join("x.jpg"), b"not a jpeg").unwrap();
        let val = perch::dataset_dir("hymenoptera").join("val").join(class);
        let first = std::fs::read_dir(&val).unwrap().map(|e| e.unwrap().path()).min().unwrap();
        std::fs::create_dir_all(broken.join("val").join(class)).unwrap();
        std::fs::copy(&first, broken.join("val").join(class).join(first.file_name().unwrap())).unwrap();
    }
    let broken_run = tmp.path().join("broken-run");
    std::fs::create_dir(&broken_run).unwrap();
    for f in std::fs::read_dir(run).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, broken_run.join(f.file_name().unwrap())).unwrap();
        }
    }
    let mut info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    info["data_dir"] = serde_json::json!(broken);
    std::fs::write(broken_run.join("run.json"), info.to_string()).unwrap();
    fails_with(
        &["export", "--run", s(&broken_run), "--out", s(&out), "--precision", "int8"],
        &["calibration", "--precision fp32"],
    );

    // The accuracy gate: a negative allowance always fails, after printing the numbers.
    fails_with(
        &[
            "export",
            "--run",
            s(run),
            "--out",
            s(&out),
            "--precision",
            "int8",
            "--calibration-images",
            "8",
            "--max-drop",
            "-1",
        ],
        &["int8-native", "--max-drop -1", "nothing was written"],
    );
    fails_with(&["export", "--run", s(run), "--out", s(&out), "--max-drop", "-1"], &["fp32", "nothing was written"]);

    assert!(leftovers(&out_dir).is_empty(), "failed exports left files: {:?}", leftovers(&out_dir));
}
