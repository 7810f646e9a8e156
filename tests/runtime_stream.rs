//! `edge-runtime run` and `--camera` end to end: the streaming loop on synthetic frames and
//! on a folder, its sinks, thresholds, and the sources this build cannot open.

mod runtime_support;

use std::sync::atomic::AtomicBool;

use edge_runtime::pipeline::{self, RunOptions, StopReason};
use edge_runtime::sink::{self, EmitFormat, FrameResult};
use edge_runtime::source::{self, SourceSpec};
use edge_runtime::{Classifier, LoadOptions};
use models::{Backbone, ImageLimits};
use runtime_support::*;

/// `frames in N, classified N, dropped N` from the summary line.
fn summary_counts(err: &str) -> (u64, u64, u64) {
    let c = summary(err);
    (c.frames_in, c.classified, c.dropped)
}

fn run_args(source: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["run".to_string(), "--source".into(), source.into()];
    args.extend(LITE0.args());
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

#[test]
fn synthetic_source_runs_200_frames_and_drops_stale_ones() {
    // 1000 fps is faster than any CPU classifies: the newest-wins queue must drop frames.
    let out = edge_runtime(&run_args("synthetic:1000", &["--frames", "200", "--emit", "jsonl"]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let frames: Vec<FrameResult> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(frames.len(), 200);
    assert!(frames.windows(2).all(|w| w[0].seq < w[1].seq), "frames come out in capture order");
    let (frames_in, classified, dropped) = summary_counts(&err);
    assert_eq!(classified, 200);
    assert!(dropped > 0, "a 1000 fps source must lose stale frames: {err}");
    assert_eq!(frames_in, classified + dropped, "{err}");
    assert!(err.contains("fps") && err.contains("p50") && err.contains("p99") && err.contains("FrameLimit"), "{err}");
}

#[test]
fn dir_source_classifies_every_photo_in_order_without_drops() {
    let dir = format!("dir:{}", s(&photos_dir()));
    let out = edge_runtime(&run_args(&dir, &["--emit", "jsonl"]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let frames: Vec<FrameResult> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = frames.iter().map(|f| f.name.as_deref().unwrap()).collect();
    let mut files: Vec<String> = std::fs::read_dir(photos_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| models::preprocess::is_image_path(p))
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    files.sort();
    assert_eq!(names, files);
    let chelsea = frames.iter().find(|f| f.name.as_deref() == Some("chelsea.png")).unwrap();
    assert!(is_cat(chelsea.index.unwrap() as i64), "{chelsea:?}");
    assert!(frames.iter().all(|f| f.source == dir && is_rfc3339_utc(&f.ts)), "{frames:?}");
    assert_eq!(summary_counts(&err), (files.len() as u64, files.len() as u64, 0));
    assert!(err.contains("SourceEnded"), "{err}");
}

#[test]
fn postcard_sink_with_threshold_and_smoothing() {
    let dir = format!("dir:{}", s(&photos_dir()));
    let out =
        edge_runtime(&run_args(&dir, &["--emit", "postcard", "--threshold", "0.6", "--smooth", "2", "--frames", "4"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let frames = sink::read_postcard_stream(&out.stdout).expect("valid postcard stream");
    assert_eq!(frames.len(), 4);
    for f in &frames {
        if f.score < 0.6 {
            assert_eq!((f.label.as_str(), f.index), ("unknown", None), "{f:?}");
        } else {
            assert_eq!(f.index, Some(f.top[0].index));
        }
    }
    // Averaging two different photos rarely leaves one class above 0.6: some frame is unknown.
    assert!(frames.iter().any(|f| f.label == "unknown"), "{frames:?}");
}

#[test]
fn text_output_prints_unknown_below_threshold() {
    let out = edge_runtime(&run_args("synthetic:200", &["--frames", "5", "--threshold", "1.0"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 5);
    assert!(text.lines().all(|l| l.starts_with("frame") && l.contains("unknown")), "{text}");
}

fn expect_failure(out: &std::process::Output, code: i32, message: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", stderr(out));
    assert!(stderr(out).contains(message), "{}", stderr(out));
}

#[test]
fn a_missing_camera_and_a_bad_source_are_clear_errors() {
    let labels = s(&perch::weights_dir().join("imagenet_labels.txt"));
    let model = s(&LITE0.path());
    // Built with the camera feature; this machine has no /dev/video99.
    let top =
        edge_runtime(&["--camera", "99", "--model", &model, "--preset", "efficientnet-lite0", "--labels", &labels]);
    expect_failure(&top, 1, "no camera at index 99");
    assert!(!stderr(&top).contains("panicked"), "{}", stderr(&top));
    let bad = edge_runtime(&run_args("webcam0", &[]));
    expect_failure(&bad, 2, "expected camera:N, libcamera[:N], video:FILE, dir:DIR, synthetic[:FPS] or a stream URL");
    let none = edge_runtime::<&str>(&[]);
    assert_eq!(none.status.code(), Some(2));
}

#[test]
fn a_set_stop_flag_ends_the_loop_cleanly() {
    let opts = LoadOptions {
        preset: Some(Backbone::EfficientNetLite0),
        labels: Some(perch::weights_dir().join("imagenet_labels.txt")),
        ..LoadOptions::new(LITE0.path())
    };
    let classifier = Classifier::load(&opts).unwrap();
    let src = source::open(&SourceSpec::Synthetic { fps: 100.0 }, false, ImageLimits::default()).unwrap();
    let mut buf = Vec::new();
    let mut sink = sink::sink_for(EmitFormat::Jsonl, Box::new(&mut buf));
    let stop = AtomicBool::new(true);
    let outcome = pipeline::run(classifier, src, sink.as_mut(), &RunOptions::default(), &stop);
    assert!(outcome.error.is_none());
    assert_eq!(outcome.summary.stopped, StopReason::Interrupted);
    assert_eq!(outcome.summary.frames_in, outcome.summary.classified + outcome.summary.dropped);
}

#[test]
fn loop_on_a_live_source_warns_instead_of_being_silently_ignored() {
    let out = edge_runtime(&run_args("synthetic:200", &["--frames", "3", "--loop"]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: --loop ignored") && err.contains("live source"), "{err}");
    let plain = edge_runtime(&run_args("synthetic:200", &["--frames", "3"]));
    assert!(!stderr(&plain).contains("warning"), "{}", stderr(&plain));
}
