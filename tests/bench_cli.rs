//! `edge-runtime bench` end to end: the built binary measures a real reference model, its
//! JSON keeps the issue's field names, bad settings are refused, and `bench report` merges
//! reports from two devices into one table, summary and plot.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use edge_runtime::device::DeviceInfo;
use edge_runtime::report::{BenchReport, BenchResult};
use serde_json::Value;

/// The row fields the issue names; renaming any breaks other tools.
const ROW_FIELDS: [&str; 14] = [
    "model",
    "precision",
    "threads",
    "load_ms",
    "first_ms",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "min_ms",
    "fps",
    "preprocess_ms",
    "rss_peak_mb",
    "model_bytes",
];

fn edge_runtime(args: &[&str]) -> Output {
    Command::new(perch::bin("edge-runtime")).args(args).output().expect("run edge-runtime")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mobilenet() -> (PathBuf, PathBuf) {
    let w = perch::weights_dir();
    (w.join("mobilenet_v2_1.0_224.onnx"), w.join("imagenet_labels.txt"))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn schema_round_trips_with_the_issue_field_names() {
    let row = BenchResult {
        model: "m.onnx".into(),
        precision: "int8".into(),
        threads: 2,
        load_ms: 101.5,
        first_ms: 12.25,
        p50_ms: 7.5,
        p90_ms: 8.0,
        p99_ms: 9.75,
        mean_ms: 7.7,
        min_ms: 7.0,
        fps: 101.0,
        preprocess_ms: 2.2,
        rss_peak_mb: None,
        model_bytes: 3_500_000,
        int8_mode: Some("native".into()),
        backbone: Some("mobilenetv2".into()),
        max_ms: Some(11.0),
        iterations: Some(200),
        warmup: Some(20),
        preprocess_share: Some(0.22),
        image: Some("synthetic 640x480 JPEG".into()),
        engine: None,
    };
    let report = BenchReport { device: DeviceInfo::detect(), results: vec![row] };
    let json = report.to_json();
    assert_eq!(serde_json::from_str::<BenchReport>(&json).unwrap(), report);
    let v: Value = serde_json::from_str(&json).unwrap();
    let obj = v["results"][0].as_object().unwrap();
    for field in ROW_FIELDS.iter().chain(&["int8_mode"]) {
        assert!(obj.contains_key(*field), "row lacks {field}: {json}");
    }
    assert!(obj["rss_peak_mb"].is_null(), "unknown RSS is null, not 0");
    for field in [
        "cpu_model",
        "cores",
        "arch",
        "os",
        "kernel",
        "board",
        "perch_version",
        "tract_version",
        "build_profile",
        "target_features",
    ] {
        assert!(v["device"].get(field).is_some(), "device lacks {field}");
    }
    // A report with only the issue's fields (e.g. from an older perch or another tool) still reads.
    let mut minimal = v.clone();
    minimal["results"][0].as_object_mut().unwrap().retain(|k, _| ROW_FIELDS.contains(&k.as_str()));
    minimal["device"] = serde_json::json!({"cpu_model": "Cortex-A72", "cores": 4});
    let back: BenchReport = serde_json::from_value(minimal).unwrap();
    assert_eq!(back.results[0].int8_mode, None);
    assert_eq!(back.device.cpu_model, "Cortex-A72");
}

#[test]
fn refuses_bad_settings_with_clear_errors() {
    let (model, labels) = mobilenet();
    let o = edge_runtime(&[
        "bench",
        "--model",
        s(&model),
        "--preset",
        "mobilenetv2",
        "--labels",
        s(&labels),
        "--iterations",
        "0",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--iterations must be at least 1"), "{}", stderr(&o));
    let o = edge_runtime(&["bench", "--model", "no/such/model.onnx"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no/such/model.onnx"), "{}", stderr(&o));
    let o = edge_runtime(&["bench", "--model", s(&model), "--threads", "0"]);
    assert!(!o.status.success() && stderr(&o).contains("--threads"), "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign.json");
    std::fs::write(&foreign, "[1, 2, 3]").unwrap();
    let o = edge_runtime(&["bench", "report", s(&foreign)]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("foreign.json") && stderr(&o).contains("not an edge-runtime bench report"),
        "{}",
        stderr(&o)
    );
}

/// Measures the real MobileNetV2 reference model (few iterations: correctness, not speed),
/// then merges that report with a second device's and checks table, summary and plot.
#[test]
fn bench_measures_a_real_model_and_report_merges_two_devices() {
    let (model, labels) = mobilenet();
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path().join("here.json");
    let photo = perch::dataset_dir("hymenoptera").join("val/bees/1032546534_06907fe3b3.jpg");
    let o = edge_runtime(&[
        "bench",
        "--model",
        s(&model),
        "--preset",
        "mobilenetv2",
        "--labels",
        s(&labels),
        "--threads",
        "1,2",
        "--warmup",
        "1",
        "--iterations",
        "4",
        "--image",
        s(&photo),
        "--json",
        s(&here),
    ]);
    assert!(o.status.success(), "bench failed: {}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("| mobilenet_v2_1.0_224.onnx |"), "markdown table on stdout: {table}");

    let v: Value = serde_json::from_str(&std::fs::read_to_string(&here).unwrap()).unwrap();
    let rows = v["results"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["engine"] == "tract"), "the default engine is named in every row: {rows:?}");
    assert_eq!(rows.len(), 2, "one row per thread count");
    for (row, threads) in rows.iter().zip([1, 2]) {
        for field in ROW_FIELDS {
            assert!(row.get(field).is_some(), "missing {field}");
        }
        let f = |k: &str| row[k].as_f64().unwrap();
        assert_eq!(row["threads"], threads);
        assert_eq!(row["precision"], "fp32");
        assert_eq!(row["backbone"], "mobilenetv2");
        assert_eq!(row["model_bytes"].as_u64().unwrap(), std::fs::metadata(&model).unwrap().len());
        assert_eq!(row["image"], "1032546534_06907fe3b3.jpg");
        assert!(f("min_ms") > 0.0 && f("min_ms") <= f("p50_ms"), "{row}");
        assert!(f("p50_ms") <= f("p90_ms") && f("p90_ms") <= f("p99_ms"), "{row}");
        assert!(f("load_ms") > 0.0 && f("first_ms") > 0.0 && f("preprocess_ms") > 0.0, "{row}");
        let fps = 1000.0 / (f("preprocess_ms") + f("mean_ms"));
        assert!((f("fps") - fps).abs() < 1e-6 * fps, "{row}");
        if cfg!(target_os = "linux") {
            // The model alone is 14 MB of weights: the measuring process held at least that.
            assert!(f("rss_peak_mb") > 14.0, "{row}");
        }
    }
    assert!(!v["device"]["cpu_model"].as_str().unwrap().is_empty());

    // A second device: the same rows with a Raspberry Pi's device block and its own numbers.
    let mut pi: BenchReport = serde_json::from_value(v.clone()).unwrap();
    pi.device.board = Some("Raspberry Pi 4 Model B Rev 1.4".into());
    pi.device.cpu_model = "Cortex-A72".into();
    pi.device.arch = "aarch64".into();
    for r in &mut pi.results {
        for x in [&mut r.p50_ms, &mut r.p90_ms, &mut r.p99_ms, &mut r.mean_ms, &mut r.min_ms] {
            *x *= 9.0;
        }
    }
    pi.results.truncate(1);
    let pi_path = dir.path().join("pi4.json");
    pi.write_json(&pi_path).unwrap();

    let (md, png, merged) =
        (dir.path().join("report.md"), dir.path().join("latency.png"), dir.path().join("merged.json"));
    let o = edge_runtime(&[
        "bench",
        "report",
        s(&here),
        s(&pi_path),
        "--markdown",
        s(&md),
        "--plot",
        s(&png),
        "--json",
        s(&merged),
    ]);
    assert!(o.status.success(), "report failed: {}", stderr(&o));
    let md = std::fs::read_to_string(&md).unwrap();
    let here_label = serde_json::from_value::<DeviceInfo>(v["device"].clone()).unwrap().label();
    assert!(md.contains(&format!("| model | threads | {here_label} | Raspberry Pi 4 Model B Rev 1.4 |")), "{md}");
    let result_rows = md.lines().filter(|l| l.contains("| mobilenet_v2_1.0_224.onnx | tract | fp32 |")).count();
    assert_eq!(result_rows, 3, "2 rows from here + 1 from the Pi:\n{md}");
    let pi_p50 = pi.results[0].p50_ms;
    assert!(
        md.contains(&format!(
            "| mobilenet_v2_1.0_224.onnx (fp32) | 2 | {:.2} | - |",
            rows[1]["p50_ms"].as_f64().unwrap()
        )),
        "{md}"
    );
    assert!(md.contains(&format!(" | {pi_p50:.2} |")), "{md}");

    let m: Value = serde_json::from_str(&std::fs::read_to_string(&merged).unwrap()).unwrap();
    assert_eq!(m["devices"].as_array().unwrap().len(), 2);
    let merged_rows = m["results"].as_array().unwrap();
    assert_eq!(merged_rows.len(), 3);
    assert_eq!(merged_rows[2]["device"], "Raspberry Pi 4 Model B Rev 1.4");
    // serde_json's default float parsing may be off in the last bit after a write/read round trip.
    let merged_p50 = merged_rows[2]["p50_ms"].as_f64().unwrap();
    assert!((merged_p50 - pi_p50).abs() <= 1e-9 * pi_p50.abs(), "{merged_p50} vs {pi_p50}");

    let img = image::open(&png).expect("plot is a readable PNG");
    assert!(img.width() >= 800 && img.height() >= 200, "{}x{}", img.width(), img.height());
}
