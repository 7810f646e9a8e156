//! `--engine ort|auto`: onnxruntime loaded at run time beside tract. The same model, manifest,
//! preprocessing and record schema; the two engines must agree. Tests that need the library
//! take it from `ORT_DYLIB_PATH` or the test venv (`perch::ort_library`) and say when they were
//! skipped; the error paths run everywhere.

mod runtime_support;

use std::collections::BTreeMap;

use runtime_support::*;

/// Scores (softmax probabilities) of the two engines may differ by this much on one class.
const SCORE_TOLERANCE: f64 = 1e-4;

/// `classify --json --top-k 5` over the fixture photos: path -> [(label, score)].
fn top5(args: &[String]) -> BTreeMap<String, Vec<(String, f64)>> {
    let mut a: Vec<String> = ["classify", "--json", "--top-k", "5"].iter().map(|s| s.to_string()).collect();
    a.extend_from_slice(args);
    a.push(s(&photos_dir()));
    let out = edge_runtime(&a);
    assert!(out.status.success(), "classify {a:?} failed: {}", stderr(&out));
    json_lines(&out)
        .into_iter()
        .map(|r| {
            let top = r["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p["label"].as_str().unwrap().to_string(), p["score"].as_f64().unwrap()))
                .collect();
            (r["path"].as_str().unwrap().to_string(), top)
        })
        .collect()
}

#[test]
fn ort_and_tract_agree_on_top5_and_scores_for_the_reference_models() {
    let Some(lib) = perch::ort_library_or_skip("ort_and_tract_agree_on_top5_and_scores_for_the_reference_models")
    else {
        return;
    };
    for reference in [MOBILENET, LITE0, B0] {
        let mut tract_args = reference.args();
        tract_args.extend(["--engine".into(), "tract".into()]);
        let mut ort_args = reference.args();
        ort_args.extend(["--engine".into(), "ort".into(), "--ort-lib".into(), s(&lib)]);
        let (tract, ort) = (top5(&tract_args), top5(&ort_args));
        assert!(tract.len() >= 6, "{} photos classified", tract.len());
        assert_eq!(tract.keys().collect::<Vec<_>>(), ort.keys().collect::<Vec<_>>());
        let mut max_diff = 0f64;
        for (path, t) in &tract {
            let o = &ort[path];
            let labels = |v: &Vec<(String, f64)>| v.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>();
            assert_eq!(labels(t), labels(o), "{}: top-5 differs on {path}", reference.preset);
            for ((_, a), (_, b)) in t.iter().zip(o) {
                max_diff = max_diff.max((a - b).abs());
            }
        }
        eprintln!("{}: {} photos, same top-5, max score difference {max_diff:.2e}", reference.preset, tract.len());
        assert!(max_diff <= SCORE_TOLERANCE, "{}: scores differ by {max_diff}", reference.preset);
    }
}

#[test]
fn engine_auto_times_both_and_says_which_it_kept() {
    let Some(lib) = perch::ort_library_or_skip("engine_auto_times_both_and_says_which_it_kept") else { return };
    let mut args: Vec<String> = vec!["classify".into()];
    args.extend(MOBILENET.args());
    args.extend(["--engine".into(), "auto".into(), "--ort-lib".into(), s(&lib)]);
    args.push(s(&photos_dir().join("chelsea.png")));
    let out = edge_runtime(&args);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    // "engine auto: tract fp32 19.3 ms, ort fp32 6.1 ms per inference -> ort fp32"
    let line = err.lines().find(|l| l.starts_with("engine auto:")).unwrap_or_else(|| panic!("no choice line: {err}"));
    assert!(line.contains("tract fp32") && line.contains("ort fp32") && line.contains(" ms"), "{line}");
    let kept = line.rsplit("-> ").next().unwrap();
    assert!(kept == "tract fp32" || kept == "ort fp32", "{line}");
    // The model line names the engine that runs it.
    let engine_word = if kept.starts_with("ort") { "onnxruntime 1." } else { ", tract," };
    assert!(err.lines().any(|l| l.starts_with("model ") && l.contains(engine_word)), "{err}");
    assert!(stdout(&out).contains("tabby") || stdout(&out).contains("tiger cat"), "{}", stdout(&out));
}

#[test]
fn a_missing_or_unloadable_library_is_a_clear_error_and_auto_falls_back_to_tract() {
    let dir = tempfile::tempdir().unwrap();
    let photo = s(&photos_dir().join("chelsea.png"));
    let run = |engine: &str, lib: &str| {
        let mut args: Vec<String> = vec!["classify".into()];
        args.extend(MOBILENET.args());
        args.extend(["--engine".into(), engine.into(), "--ort-lib".into(), lib.into(), photo.clone()]);
        edge_runtime(&args)
    };
    // Not there.
    let missing = s(&dir.path().join("libonnxruntime.so"));
    let out = run("ort", &missing);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("does not exist") && err.contains("pip install onnxruntime") && err.contains("--engine tract"),
        "{err}"
    );
    // There, but not a library.
    let fake = dir.path().join("libonnxruntime.so.1.99.0");
    std::fs::write(&fake, b"not an ELF file").unwrap();
    let out = run("ort", &s(&fake));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot be loaded") && err.contains("libonnxruntime.so.1.99.0"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // auto: tract runs it, with a line saying why onnxruntime was not used.
    let out = run("auto", &missing);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("engine auto: ort not used") && err.contains("does not exist"), "{err}");
    assert!(stdout(&out).contains("tabby") || stdout(&out).contains("tiger cat"), "{}", stdout(&out));
}
