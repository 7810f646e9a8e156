//! End-to-end `trainer fit / eval / predict` on small subsets of the shared datasets, through
//! the built binary (what a user runs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn trainer() -> Command {
    let mut c = Command::new(perch::bin("trainer"));
    c.env("PERCH_WEIGHTS", perch::weights_dir()).env("RUST_LOG", "warn");
    c
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run trainer");
    assert!(
        out.status.success(),
        "trainer failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A small fit on hymenoptera: 12 images per class, head + fine-tuning of the top 2 stages.
fn fit_args(run: &Path, cache: &Path) -> Vec<String> {
    let hym = perch::dataset_dir("hymenoptera");
    [
        "fit",
        "--backbone",
        "mobilenetv2",
        "--data",
        hym.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "--limit-per-class",
        "12",
        "--epochs",
        "6",
        "--batch-size",
        "8",
        "--fine-tune-layers",
        "2",
        "--fine-tune-epochs",
        "3",
        "--seed",
        "7",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn history(run: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("history.json")).expect("history.json");
    serde_json::from_str::<serde_json::Value>(&text).unwrap().as_array().unwrap().clone()
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// `trainer eval --run RUN --split SPLIT --json OUT`: the metrics it wrote.
fn eval_split(run: &Path, split: &str, out: &Path) -> serde_json::Value {
    run_ok(trainer().args(["eval", "--run", run.to_str().unwrap(), "--split", split, "--json", out.to_str().unwrap()]));
    read_json(out)
}

fn field(row: &serde_json::Value, name: &str) -> f64 {
    row[name].as_f64().unwrap_or_else(|| panic!("{name} in {row}"))
}

#[test]
fn killed_fit_resumes_to_the_same_result_as_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));

    // Uninterrupted reference run (also fills the shared feature cache).
    let out = run_ok(trainer().args(fit_args(&a, &cache)));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("24 train, 24 val, 0 skipped"), "{summary}");
    let ha = history(&a);
    assert_eq!(ha.len(), 9);
    for f in ["metrics.json", "curves.png", "confusion.png", "predictions.png", "best.bpk", "history.csv"] {
        assert!(a.join(f).is_file(), "{f} missing");
    }
    let metrics = read_json(&a.join("metrics.json"));
    assert!(metrics["accuracy"].as_f64().unwrap() >= 0.75, "{metrics}");
    assert_eq!(metrics["confusion"].as_array().unwrap().len(), 2);

    // Same run, SIGKILLed as soon as the second checkpoint exists, then resumed.
    let mut child = trainer().args(fit_args(&b, &cache)).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let killed = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break !status.success();
        }
        if b.join("checkpoints/epoch-002").is_dir() {
            child.kill().unwrap();
            child.wait().unwrap();
            break true;
        }
        assert!(Instant::now() < deadline, "fit never wrote a checkpoint");
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(killed, "the run finished before it could be killed");
    let partial = history(&b).len();
    assert!(partial < 9, "killed run already has {partial} epochs");
    let mut resume = trainer();
    resume.args(fit_args(&b, &cache)).arg("--resume");
    let out = run_ok(&mut resume);
    assert!(String::from_utf8_lossy(&out.stdout).contains("resumed"), "{}", String::from_utf8_lossy(&out.stdout));

    let hb = history(&b);
    let epochs: Vec<u64> = hb.iter().map(|r| r["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, (1..=9).collect::<Vec<u64>>(), "no missing or duplicated epoch");
    for (ra, rb) in ha.iter().zip(&hb) {
        assert_eq!(ra["phase"], rb["phase"]);
        for f in ["train_loss", "train_acc", "val_loss", "val_acc", "lr"] {
            assert!(
                (field(ra, f) - field(rb, f)).abs() < 1e-5,
                "epoch {}: {f} {} vs {}",
                ra["epoch"],
                field(ra, f),
                field(rb, f)
            );
        }
    }
    assert_eq!(hb.iter().filter(|r| r["phase"] == "fine-tune").count(), 3);

    // eval and predict use the run's best model.
    let hym = perch::dataset_dir("hymenoptera");
    let eval_json = tmp.path().join("eval.json");
    let out = run_ok(trainer().args([
        "eval",
        "--run",
        a.to_str().unwrap(),
        "--data",
        hym.to_str().unwrap(),
        "--limit-per-class",
        "12",
        "--json",
        eval_json.to_str().unwrap(),
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    let eval = read_json(&eval_json);
    assert_eq!(eval["accuracy"], metrics["accuracy"], "eval on the same val images: {text}");
    assert_eq!(eval["confusion"], metrics["confusion"], "eval on the same val images: {text}");

    let bee = first_image(&hym.join("val/bees"));
    let out = run_ok(trainer().args(["predict", "--run", a.to_str().unwrap(), "--json", bee.to_str().unwrap()]));
    // The record `edge-runtime classify --json` prints: path, top [{index, label, score}], latency_ms.
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["path"].as_str(), bee.to_str(), "{line}");
    let top = line["top"].as_array().unwrap();
    assert_eq!(top.len(), 2, "{line}");
    let best = &top[0];
    assert!(
        best["index"].as_u64().unwrap() < 2 && ["ants", "bees"].contains(&best["label"].as_str().unwrap()),
        "{line}"
    );
    assert!(best["score"].as_f64().unwrap() >= top[1]["score"].as_f64().unwrap(), "{line}");
    assert!(line["latency_ms"].as_f64().unwrap() > 0.0, "{line}");
    let out = run_ok(trainer().args([
        "predict",
        "--run",
        a.to_str().unwrap(),
        "--json",
        "--top-k",
        "1",
        bee.to_str().unwrap(),
    ]));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["top"].as_array().unwrap().len(), 1, "{line}");
    fails_with(&["predict", "--run", a.to_str().unwrap(), "--top-k", "0", bee.to_str().unwrap()], &["--top-k", "0"]);

    let junk = tmp.path().join("junk.jpg");
    std::fs::write(&junk, b"not a jpeg").unwrap();
    let out = trainer()
        .args(["predict", "--run", a.to_str().unwrap(), junk.to_str().unwrap(), bee.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.jpg"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("bees") || String::from_utf8_lossy(&out.stdout).contains("ants")
    );

    // A folder is searched recursively, in path order, as `edge-runtime classify` does; other
    // files in it are passed over.
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(photos.join("2023")).unwrap();
    std::fs::copy(&bee, photos.join("b.jpg")).unwrap();
    std::fs::copy(&bee, photos.join("2023/a.jpg")).unwrap();
    std::fs::write(photos.join("notes.txt"), b"not a photo").unwrap();
    let out = run_ok(trainer().args(["predict", "--run", a.to_str().unwrap(), "--json", photos.to_str().unwrap()]));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let paths: Vec<&str> = lines.iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(paths, [photos.join("2023/a.jpg").to_str().unwrap(), photos.join("b.jpg").to_str().unwrap()]);
    assert_eq!(lines[0]["top"], lines[1]["top"], "the same photo twice");
    fails_with(&["predict", "--run", a.to_str().unwrap(), tmp.path().join("nowhere").to_str().unwrap()], &["nowhere"]);
}

fn first_image(dir: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v.remove(0)
}

/// A tiny train/val folder from hymenoptera images: `per_class` images per class.
fn tiny_dataset(root: &Path, classes: &[&str], per_class: usize) {
    let hym = perch::dataset_dir("hymenoptera");
    for split in ["train", "val"] {
        for (i, c) in classes.iter().enumerate() {
            let src = hym.join(split).join(["ants", "bees"][i % 2]);
            let dst = root.join(split).join(c);
            std::fs::create_dir_all(&dst).unwrap();
            let mut files: Vec<PathBuf> = std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            for f in files.iter().take(per_class) {
                std::fs::copy(f, dst.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let out = trainer().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail: {args:?}");
    assert!(!err.contains("panicked"), "panic instead of an error: {err}");
    for n in needles {
        assert!(err.contains(n), "expected '{n}' in: {err}");
    }
}

#[test]
fn bad_input_is_a_clear_error_or_a_counted_skip() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |s: &str| tmp.path().join(s).to_string_lossy().into_owned();
    let data = tmp.path().join("data");
    tiny_dataset(&data, &["ants", "bees"], 3);
    // A corrupt image and a non-image file: skipped and counted, the run completes.
    std::fs::write(data.join("train/ants/broken.jpg"), b"\xff\xd8\xff garbage").unwrap();
    std::fs::write(data.join("train/bees/notes.txt"), b"hello").unwrap();
    let out = run_ok(trainer().args([
        "fit",
        "--backbone",
        "mobilenetv2",
        "--data",
        &p("data"),
        "--out",
        &p("run"),
        "--epochs",
        "2",
    ]));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("6 train, 6 val, 2 skipped") || summary.contains("5 train, 6 val, 2 skipped"),
        "{summary}"
    );
    assert!(summary.contains("broken.jpg"), "{summary}");
    // The same --out again without --resume must not overwrite the run.
    fails_with(&["fit", "--backbone", "mobilenetv2", "--data", &p("data"), "--out", &p("run")], &["--resume"]);

    fails_with(
        &["fit", "--backbone", "resnet50", "--data", &p("data"), "--out", &p("r1")],
        &["unknown backbone 'resnet50'"],
    );
    let mut c = trainer();
    c.env_remove("PERCH_WEIGHTS").env("PERCH_WEIGHTS_URL", "http://127.0.0.1:9/none");
    let out = c
        .args([
            "fit",
            "--backbone",
            "mobilenetv2",
            "--data",
            &p("data"),
            "--out",
            &p("r2"),
            "--weights-dir",
            &p("no-weights"),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("mobilenet_v2_1.0_224.safetensors") && !err.contains("panicked"),
        "{err}"
    );
    let mobilenet = perch::weights_dir().join("mobilenet_v2_1.0_224.safetensors");
    fails_with(
        &[
            "fit",
            "--backbone",
            "efficientnet-lite0",
            "--data",
            &p("data"),
            "--out",
            &p("r3"),
            "--weights",
            mobilenet.to_str().unwrap(),
        ],
        &["does not fit efficientnet-lite0"],
    );

    let single = tmp.path().join("single");
    tiny_dataset(&single, &["ants"], 2);
    fails_with(&["fit", "--backbone", "mobilenetv2", "--data", &p("single"), "--out", &p("r4")], &["single class"]);
    std::fs::create_dir_all(data.join("train/wasps")).unwrap();
    fails_with(&["fit", "--backbone", "mobilenetv2", "--data", &p("data"), "--out", &p("r5")], &["wasps", "no images"]);
    fails_with(
        &["fit", "--backbone", "mobilenetv2", "--data", &p("nowhere"), "--out", &p("r6")],
        &["nowhere", "not a folder"],
    );
    fails_with(&["eval", "--run", &p("r6"), "--data", &p("data")], &["run.json"]);
}

#[test]
fn flags_that_would_be_ignored_are_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let hym = perch::dataset_dir("hymenoptera");
    let cache = tmp.path().join("cache");
    let quick_fit = |run: &str, extra: &[&str]| {
        let mut args = vec!["fit", "--backbone", "mobilenetv2", "--data", hym.to_str().unwrap()];
        let out = tmp.path().join(run);
        args.extend(["--out", out.to_str().unwrap(), "--cache-dir", cache.to_str().unwrap()]);
        args.extend(["--epochs", "1", "--limit-per-class", "4"]);
        args.extend_from_slice(extra);
        let out = run_ok(trainer().args(&args));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Adam ignores --momentum; no --fine-tune-layers ignores its two flags; no --augment
    // ignores --augment-views. The run itself goes ahead.
    let err = quick_fit(
        "run",
        &["--momentum", "0.5", "--fine-tune-epochs", "2", "--fine-tune-lr-factor", "0.5", "--augment-views", "3"],
    );
    for flag in ["--momentum", "--fine-tune-epochs", "--fine-tune-lr-factor", "--augment-views"] {
        assert!(
            err.lines().any(|l| l.contains("WARN") && l.contains(&format!("{flag} is ignored"))),
            "no warning for {flag}: {err}"
        );
    }
    // The same flag where it is used: no warning.
    let err = quick_fit("used", &["--optimizer", "sgd", "--momentum", "0.5"]);
    assert!(!err.contains("is ignored"), "{err}");
}

/// A dataset with train/ and test/ but no val/: validation is held out of train/ (the best
/// epoch is never chosen on test/), test/ is scored once on the chosen model and by
/// `trainer eval --split test`; unequal classes are warned about and `--class-weights auto`
/// weighs them; the frozen pass names its engine and is skipped when everything is cached;
/// GPU devices missing from the build are clear errors.
#[test]
fn test_split_is_scored_once_and_never_chooses_the_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let hym = perch::dataset_dir("hymenoptera");
    let data = tmp.path().join("data");
    for (split, src, counts) in [("train", "train", [12, 3]), ("test", "val", [6, 6])] {
        for (class, n) in ["ants", "bees"].iter().zip(counts) {
            let dst = data.join(split).join(class);
            std::fs::create_dir_all(&dst).unwrap();
            let mut files: Vec<PathBuf> =
                std::fs::read_dir(hym.join(src).join(class)).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            for f in files.iter().take(n) {
                std::fs::copy(f, dst.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    let cache = tmp.path().join("cache");
    let fit = |run: &str, extra: &[&str]| {
        let out = tmp.path().join(run);
        let mut args = vec!["fit", "--backbone", "mobilenetv2", "--data", data.to_str().unwrap()];
        args.extend(["--out", out.to_str().unwrap(), "--cache-dir", cache.to_str().unwrap(), "--epochs", "3"]);
        args.extend_from_slice(extra);
        let o = run_ok(trainer().args(&args).env("RUST_LOG", "info"));
        let info = read_json(&out.join("run.json"));
        (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned(), info)
    };
    let (stdout, stderr, info) = fit("plain", &["--frozen-engine", "tract"]);
    // 15 % of each train/ class held out (at least one image): ants 12 -> 10 + 2, bees 3 -> 2 + 1.
    assert!(stdout.contains("12 train, 3 val, 12 test"), "{stdout}");
    assert_eq!((info["train_images"].as_u64(), info["val_images"].as_u64()), (Some(12), Some(3)));
    assert_eq!(info["test_images"].as_u64(), Some(12));
    assert_eq!(info["frozen_engine"], "tract", "{info}");
    assert!(stdout.contains("frozen pass: tract"), "{stdout}");
    assert!(stderr.contains("frozen pass: tract (--frozen-engine tract)"), "{stderr}");
    // 10 ants vs 2 bees after the hold-out: 5x.
    assert!(
        stderr.lines().any(|l| l.contains("WARN") && l.contains("'ants' has 10") && l.contains("--class-weights auto")),
        "{stderr}"
    );
    let test = read_json(&tmp.path().join("plain/test_metrics.json"));
    assert_eq!(info["test_accuracy"], test["accuracy"], "{info}");
    assert_eq!(test["images"].as_u64(), Some(12), "{test}");
    assert!(stdout.contains("test           accuracy"), "{stdout}");
    let val = read_json(&tmp.path().join("plain/metrics.json"));
    assert_eq!(val["images"].as_u64(), Some(3), "{val}");

    // trainer eval --split test (on the run's own data folder) scores the same 12 images.
    let run = tmp.path().join("plain");
    let eval = eval_split(&run, "test", &tmp.path().join("eval-test.json"));
    assert_eq!(eval["accuracy"], test["accuracy"]);
    assert_eq!(eval["confusion"], test["confusion"]);
    // --split val without --data: the 3 images the run held out of train/ (metrics.json's).
    let eval = eval_split(&run, "val", &tmp.path().join("eval-val.json"));
    assert_eq!((eval["images"].as_u64(), &eval["confusion"]), (Some(3), &val["confusion"]), "{eval}");
    fails_with(
        &["eval", "--run", run.to_str().unwrap(), "--data", data.to_str().unwrap(), "--split", "val"],
        &["has no val/ folder"],
    );
    // A run.json from before held-out validation (no split_version) validated on test/ and
    // trained on all of train/: its val split is test/ again (the export gate uses it too).
    let mut old = info.clone();
    old.as_object_mut().unwrap().remove("split_version");
    std::fs::write(run.join("run.json"), serde_json::to_vec_pretty(&old).unwrap()).unwrap();
    let eval = eval_split(&run, "val", &tmp.path().join("eval-legacy.json"));
    assert_eq!((eval["images"].as_u64(), &eval["confusion"]), (Some(12), &test["confusion"]), "{eval}");
    assert_eq!(info["split_version"].as_u64(), Some(1), "{info}");

    // --class-weights auto: no warning, the weights balance 10 ants against 2 bees; every
    // feature is in the cache now, so no engine runs.
    let (stdout, stderr, info) = fit("weighted", &["--class-weights", "auto"]);
    assert!(!stderr.contains("classes differ a lot in size"), "{stderr}");
    let w: Vec<f64> = info["class_weights"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(w.len(), 2);
    assert!((w[0] - 0.6).abs() < 1e-6 && (w[1] - 3.0).abs() < 1e-6, "{w:?}");
    assert_eq!(info["config"]["class_weights"], "auto");
    assert!(info["frozen_engine"].is_null(), "{info}");
    assert!(stdout.contains("0 computed, 27 from cache"), "{stdout}");

    // --refit: val picks the epoch, then epochs 1..=best run again on train + val (val with
    // its augmented views too); best.bpk is that model, selected.bpk val's choice, and test/
    // is scored on best.bpk.
    let (stdout, _, info) = fit("refit", &["--refit", "--augment", "flip", "--augment-views", "2"]);
    let best = info["best_epoch"].as_u64().unwrap();
    assert_eq!(info["refit_epochs"].as_u64(), Some(best), "{info}");
    // Epoch 1's images/s counts backbone passes: 2 views of the 12 train and 3 val images, 12 test.
    let first = &history(&tmp.path().join("refit"))[0];
    assert_eq!((field(first, "images_per_s") * field(first, "seconds")).round(), 42.0, "{first}");
    assert_eq!(info["config"]["refit"], true);
    assert!(stdout.contains(&format!("refit          epochs 1-{best} again on 12 train + 3 val")), "{stdout}");
    let run = tmp.path().join("refit");
    let refit_info = read_json(&run.join("refit/run.json"));
    assert_eq!(refit_info["train_images"].as_u64(), Some(15), "{refit_info}");
    assert_eq!(history(&run.join("refit")).len() as u64, best);
    let (selected, refit) =
        (std::fs::read(run.join("selected.bpk")).unwrap(), std::fs::read(run.join("best.bpk")).unwrap());
    assert_ne!(selected, refit, "best.bpk is the refit model");
    assert_eq!(refit, std::fs::read(run.join("refit/best.bpk")).unwrap());
    let test = read_json(&run.join("test_metrics.json"));
    let eval = eval_split(&run, "test", &tmp.path().join("eval-refit.json"));
    assert_eq!(eval["confusion"], test["confusion"]);
    // run.json's val accuracy is metrics.json's: the selected model's, scored before the refit.
    let val = read_json(&run.join("metrics.json"));
    assert_eq!(info["val_accuracy"], val["accuracy"]);
    // --resume on the finished run redoes nothing: val is scored on selected.bpk again, the
    // refit resumes at its last epoch, best.bpk and the scores stay.
    let (_, _, again) = fit("refit", &["--refit", "--augment", "flip", "--augment-views", "2", "--resume"]);
    assert_eq!((&again["val_accuracy"], &again["test_accuracy"]), (&info["val_accuracy"], &info["test_accuracy"]));
    assert_eq!(std::fs::read(run.join("best.bpk")).unwrap(), refit);
    assert_eq!(std::fs::read(run.join("selected.bpk")).unwrap(), selected);

    // GPU devices this binary was not built with: a clear error before any work.
    for device in ["cuda", "wgpu"] {
        if std::env::var("PERCH_TEST_GPU").is_ok() {
            break;
        }
        let out = tmp.path().join(format!("gpu-{device}"));
        fails_with(
            &[
                "fit",
                "--backbone",
                "mobilenetv2",
                "--data",
                data.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--device",
                device,
            ],
            &[&format!("--device {device}"), &format!("built without the {device} feature"), "--device flex"],
        );
    }
}
