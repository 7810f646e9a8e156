//! `edge-runtime run --http`, model hot reload and `--capture`, end to end through the built
//! binary on real photos and models: every endpoint fetched over 127.0.0.1, the page rendered
//! by headless Chromium (Debian `chromium`; its screenshot is kept in
//! `target/test-artifacts/live-page.png`), a model replaced under a running loop (by another
//! enrolled model, then by a truncated file), and uncertain frames captured into class folders
//! that `trainer fit` trains on.

mod runtime_support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtime_support::*;
use serde_json::Value;

/// A GET (or another method) over 127.0.0.1: (status, content type, body).
fn http(port: u16, method: &str, path: &str) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the run's --http port");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let content_type = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.trim()))
        .unwrap_or("")
        .to_string();
    (status, content_type, raw[split + 4..].to_vec())
}

fn get_json(port: u16, path: &str) -> (u16, Value) {
    let (status, ct, body) = http(port, "GET", path);
    assert!(ct.starts_with("application/json"), "{path}: content type {ct}");
    (status, serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// Waits until `ok` holds, failing with `what` after `within`.
fn wait_until<T>(within: Duration, what: &str, mut ok: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = ok() {
            return v;
        }
        assert!(start.elapsed() < within, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `run` in the background: stdout (jsonl) and stderr go to files; stopped with SIGINT.
struct Run {
    child: KillOnDrop,
    out: PathBuf,
    err: PathBuf,
}

impl Run {
    fn start(dir: &Path, args: &[String]) -> Self {
        let (out, err) = (dir.join("run.jsonl"), dir.join("run.err"));
        let child = Command::new(perch::bin("edge-runtime"))
            .args(args)
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
            .spawn()
            .expect("start edge-runtime run");
        Run { child: KillOnDrop(child), out, err }
    }

    fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        // The last line may still be being written.
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits for /healthz to say 200 (the model is loaded and frames flow).
    fn wait_healthy(&self, port: u16) {
        wait_until(Duration::from_secs(120), "/healthz 200", || {
            (is_listening(port) && http(port, "GET", "/healthz").0 == 200).then_some(())
        });
    }

    /// SIGINT, as Ctrl-C; returns stderr once the process ended.
    fn stop(mut self) -> String {
        let pid = self.child.0.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().expect("kill -INT");
        let start = Instant::now();
        while self.child.0.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < Duration::from_secs(30), "run did not stop on SIGINT:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stderr()
    }
}

/// `run --source dir:DIR ... --emit jsonl` plus `extra`.
fn run_args(model: &[String], dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> =
        vec!["run".into(), "--source".into(), format!("dir:{}", s(dir)), "--emit".into(), "jsonl".into()];
    a.extend_from_slice(model);
    a.extend(extra.iter().map(|x| x.to_string()));
    a
}

/// Prometheus text format, checked line by line: every sample belongs to a family declared
/// by a `# TYPE` line before it. Returns `name{labels}` -> value.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{line}");
            assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "family declared twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment line: {line}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .enumerate()
                .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())),
            "bad metric name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')), "bad labels: {line}");
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix).filter(|base| types.get(*base).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its # TYPE line: {line}");
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        samples.insert(series.to_string(), v);
    }
    samples
}

fn reference_model() -> Vec<String> {
    MOBILENET.args()
}

fn hymenoptera(split: &str) -> PathBuf {
    perch::dataset_dir("hymenoptera").join(split)
}

#[test]
fn live_page_api_frame_health_and_metrics_of_a_running_loop() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    let run = Run::start(
        tmp.path(),
        &run_args(&reference_model(), &photos_dir(), &["--loop", "--http", &addr, "--roi", "0,0,200,200"]),
    );
    run.wait_healthy(port);
    eprintln!("healthy after {:.1} s", t0.elapsed().as_secs_f64());
    assert!(run.stderr().contains(&format!("http: live page on http://{addr}/")), "{}", run.stderr());

    // The page: one self-contained document (nothing fetched from elsewhere).
    let (status, ct, page) = http(port, "GET", "/");
    let page = String::from_utf8(page).unwrap();
    assert_eq!((status, ct.as_str()), (200, "text/html; charset=utf-8"));
    assert!(page.contains("<title>perch live</title>") && page.contains("/api/status"), "{page}");
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http") && !page.contains("@import"),
        "external resource"
    );

    // /api/latest: a jsonl record plus the model's name; its sha is the model file's.
    let (status, latest) = get_json(port, "/api/latest");
    assert_eq!(status, 200);
    let sha = models::sha256_hex(&std::fs::read(MOBILENET.path()).unwrap());
    assert_eq!(latest["model_sha256"], sha.as_str());
    assert_eq!(latest["model"], "mobilenetv2-imagenet");
    for field in ["seq", "ts", "source", "name", "label", "index", "score", "top", "latency_ms", "age_ms"] {
        assert!(latest.get(field).is_some(), "/api/latest lacks {field}: {latest}");
    }
    assert!(is_rfc3339_utc(latest["ts"].as_str().unwrap()));
    let record = run.records().into_iter().next().expect("jsonl records on stdout");
    let latest_keys: Vec<&String> = latest.as_object().unwrap().keys().collect();
    assert!(record.as_object().unwrap().keys().all(|k| latest_keys.contains(&k)), "{record} vs {latest}");
    assert_eq!(record["model_sha256"], sha.as_str(), "every jsonl record names its model");

    // The frame: a real JPEG of the whole (unrotated) photo, with the ROI drawn.
    let (status, ct, jpeg) = http(port, "GET", "/api/frame.jpg");
    assert_eq!((status, ct.as_str()), (200, "image/jpeg"));
    let img = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).expect("decodable JPEG").to_rgb8();
    assert!(img.width() > 200 && img.height() > 200, "{}x{}", img.width(), img.height());
    let px = img.get_pixel(100, 0); // on the ROI's top edge: yellow
    assert!(px[0] > 200 && px[1] > 160 && px[2] < 90, "ROI edge pixel {px:?}");

    // Health, then metrics twice: counters only grow, the histogram counts every frame.
    let (status, health) = get_json(port, "/healthz");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")), "{health}");
    let (status, ct, text) = http(port, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let first = parse_prometheus(&String::from_utf8(text).unwrap());
    std::thread::sleep(Duration::from_millis(1500));
    let second = parse_prometheus(&String::from_utf8(http(port, "GET", "/metrics").2).unwrap());
    let m = |map: &BTreeMap<String, f64>, k: &str| *map.get(k).unwrap_or_else(|| panic!("{k} missing: {map:?}"));
    assert!(m(&second, "perch_frames_classified_total") > m(&first, "perch_frames_classified_total"));
    assert!(m(&second, "perch_frames_in_total") >= m(&second, "perch_frames_classified_total"));
    for counter in ["perch_frames_dropped_total", "perch_frames_skipped_total", "perch_source_reconnects_total"] {
        assert!(m(&second, counter) >= m(&first, counter), "{counter}");
    }
    assert_eq!(m(&second, "perch_frames_skipped_total"), 0.0);
    let count = m(&second, "perch_inference_latency_seconds_count");
    assert_eq!(m(&second, "perch_inference_latency_seconds_bucket{le=\"+Inf\"}"), count);
    assert!(count >= m(&first, "perch_frames_classified_total"));
    let info = format!(
        "perch_model_info{{name=\"mobilenetv2-imagenet\",sha256=\"{sha}\",execution=\"fp32\",engine=\"tract\"}}"
    );
    assert_eq!(m(&second, &info), 1.0);
    assert!(m(&second, "perch_model_load_seconds") > 0.0);
    assert_eq!(m(&second, "perch_source_up"), 1.0);

    // Wrong path, wrong method.
    assert_eq!(http(port, "GET", "/nope").0, 404);
    assert_eq!(http(port, "POST", "/api/latest").0, 405);

    eprintln!("endpoints checked after {:.1} s", t0.elapsed().as_secs_f64());
    // Headless Chromium runs the page's script: the DOM shows the current label, and a
    // screenshot is kept.
    let label_now = get_json(port, "/api/latest").1["label"].as_str().unwrap().to_string();
    let dom = chromium(&["--virtual-time-budget=4000", "--dump-dom", &format!("http://{addr}/")]);
    let shown = dom.split("id=\"label\">").nth(1).and_then(|r| r.split('<').next()).unwrap_or_default();
    let labels: Vec<String> = run.records().iter().map(|r| r["label"].as_str().unwrap().to_string()).collect();
    assert!(
        !shown.is_empty() && shown != "-" && labels.iter().any(|l| l == shown),
        "page label '{shown}' (now {label_now})"
    );
    assert!(dom.contains("class=\"ok\">healthy"), "health badge: {dom}");
    let artifacts = perch::workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    eprintln!("chromium DOM after {:.1} s", t0.elapsed().as_secs_f64());
    let png = artifacts.join("live-page.png");
    let _ = std::fs::remove_file(&png);
    chromium(&[
        "--window-size=1100,620",
        "--virtual-time-budget=4000",
        &format!("--screenshot={}", s(&png)),
        &format!("http://{addr}/"),
    ]);
    let shot = image::open(&png).expect("Chromium wrote a PNG screenshot");
    assert_eq!((shot.width(), shot.height()), (1100, 620));

    eprintln!("chromium screenshot after {:.1} s", t0.elapsed().as_secs_f64());
    let err = run.stop();
    assert!(err.contains("stopped: Interrupted"), "{err}");
}

/// Headless Chromium with the flags that keep it off the network; its stdout.
fn chromium(args: &[&str]) -> String {
    let bin = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("Chromium is not installed: this test needs it. Install it: `sudo apt-get install -y chromium`");
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", s(profile.path())))
        .args(args)
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Puts `bytes` at `path` the way `trainer export` does: a new file renamed over the old one.
fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("onnx.part");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_replaced_model_is_swapped_in_between_frames_and_a_broken_one_is_refused() {
    let (bugs, flowers) = enrolled_models();
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model.onnx");
    std::fs::copy(bugs, &model).unwrap();
    let (sha_a, sha_b) =
        (models::sha256_hex(&std::fs::read(bugs).unwrap()), models::sha256_hex(&std::fs::read(flowers).unwrap()));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let model_args = vec!["--model".to_string(), s(&model)];
    let run = Run::start(tmp.path(), &run_args(&model_args, &photos_dir(), &["--loop", "--http", &addr]));
    run.wait_healthy(port);
    assert!(run.records().iter().all(|r| r["model_sha256"] == sha_a.as_str()));

    // A different export renamed over the file: records switch within seconds.
    let swapped_at = Instant::now();
    replace_file(&model, &std::fs::read(flowers).unwrap());
    wait_until(Duration::from_secs(20), "records from the new model", || {
        run.records().iter().any(|r| r["model_sha256"] == sha_b.as_str()).then_some(())
    });
    eprintln!("new model in the records {:.2} s after the rename", swapped_at.elapsed().as_secs_f64());
    let (_, latest) = get_json(port, "/api/latest");
    wait_until(Duration::from_secs(5), "/api/latest from the new model", || {
        let (_, l) = get_json(port, "/api/latest");
        (l["model_sha256"] == sha_b.as_str()).then_some(())
    });
    assert!(latest.get("model").is_some());
    let metrics = parse_prometheus(&String::from_utf8(http(port, "GET", "/metrics").2).unwrap());
    assert_eq!(metrics["perch_model_reloads_total"], 1.0);

    // A truncated file: refused, the flowers model keeps classifying, /healthz says why.
    let whole = std::fs::read(bugs).unwrap();
    replace_file(&model, &whole[..whole.len() / 2]);
    let health = wait_until(Duration::from_secs(20), "/healthz to report the rejected model", || {
        let (status, h) = get_json(port, "/healthz");
        h["model_reload_error"].is_string().then_some((status, h))
    });
    assert_eq!(health.0, 200, "frames still flow: {}", health.1);
    let why = health.1["model_reload_error"].as_str().unwrap();
    assert!(why.contains("not a readable ONNX model"), "{why}");
    let n = run.records().len();
    wait_until(Duration::from_secs(20), "frames after the rejected reload", || {
        (run.records().len() > n + 3).then_some(())
    });
    assert!(run.records()[n..].iter().all(|r| r["model_sha256"] == sha_b.as_str()), "still the flowers model");
    let flower_labels: Vec<Value> =
        run.records()[n..].iter().map(|r| r["label"].clone()).filter(|l| l == "ants" || l == "bees").collect();
    assert!(flower_labels.is_empty(), "flowers model gave hymenoptera labels: {flower_labels:?}");

    // SIGHUP reloads on demand (here: the good model put back in place by a copy).
    std::fs::write(tmp.path().join("copy.onnx"), &whole).unwrap();
    std::fs::rename(tmp.path().join("copy.onnx"), &model).unwrap();
    wait_until(Duration::from_secs(20), "records from the restored model", || {
        run.records().iter().rev().take(2).all(|r| r["model_sha256"] == sha_a.as_str()).then_some(())
    });
    let pid = run.child.0.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    wait_until(Duration::from_secs(20), "the SIGHUP reload attempt", || {
        run.stderr().contains("model reload (SIGHUP)").then_some(())
    });

    let err = run.stop();
    let records = run_records_after_stop(tmp.path());
    // No frame lost to the swaps: the loop's frame numbers are consecutive and none dropped.
    for w in records.windows(2) {
        assert_eq!(w[1]["seq"].as_u64(), Some(w[0]["seq"].as_u64().unwrap() + 1), "gap around {w:?}");
    }
    assert!(err.contains("model reloaded (file replaced)"), "{err}");
    assert!(err.contains("warning: model reload (file replaced) failed, still running sha256"), "{err}");
    assert!(err.contains("summary: model reloads 2, rejected 1"), "{err}");
}

fn run_records_after_stop(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("run.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `n` images of each hymenoptera val class in one folder (a `dir:` source).
fn val_subset(dir: &Path, n: usize) -> PathBuf {
    let out = dir.join("frames");
    std::fs::create_dir_all(&out).unwrap();
    for class in ["ants", "bees"] {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(hymenoptera("val").join(class)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files.iter().take(n) {
            std::fs::copy(f, out.join(format!("{class}-{}", f.file_name().unwrap().to_string_lossy()))).unwrap();
        }
    }
    out
}

/// Captured files: (class folder, file name, size).
fn captured(dir: &Path) -> Vec<(String, String, u64)> {
    let mut v = Vec::new();
    for class in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()) {
        for f in std::fs::read_dir(class.path()).unwrap().map(|e| e.unwrap()) {
            let name = f.file_name().to_string_lossy().into_owned();
            v.push((class.file_name().to_string_lossy().into_owned(), name, f.metadata().unwrap().len()));
        }
    }
    v.sort();
    v
}

#[test]
fn uncertain_frames_are_captured_into_class_folders_within_caps_and_trainer_fit_trains_on_them() {
    let (bugs, _) = enrolled_models();
    let tmp = tempfile::tempdir().unwrap();
    let frames = val_subset(tmp.path(), 10);
    let cap = tmp.path().join("captured");
    let model = vec!["--model".to_string(), s(bugs)];
    let threshold = 0.95f64;

    // Every frame below the threshold is saved (a folder source never loses one).
    let out = edge_runtime(&run_args(&model, &frames, &["--capture", &s(&cap), "--capture-below", "0.95"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let records = json_lines(&out);
    assert_eq!(records.len(), 20);
    let uncertain: Vec<&Value> = records.iter().filter(|r| r["score"].as_f64().unwrap() < threshold).collect();
    assert!(!uncertain.is_empty() && uncertain.len() < 20, "threshold catches some frames: {}", uncertain.len());
    let files = captured(&cap);
    assert_eq!(files.len(), uncertain.len(), "{files:?}");
    for r in &uncertain {
        let label = r["top"][0]["label"].as_str().unwrap();
        let name = format!("{}-{:.3}.jpg", r["ts"].as_str().unwrap().replace(':', "-"), r["score"].as_f64().unwrap());
        assert!(files.iter().any(|(c, f, _)| c == label && *f == name), "{label}/{name} not in {files:?}");
    }
    for (class, name, _) in &files {
        let img = image::open(cap.join(class).join(name)).expect("a decodable JPEG");
        assert!(img.width() > 100 && img.height() > 100);
    }
    assert!(stderr(&out).contains(&format!("summary: captured {} frame(s) this run", files.len())), "{}", stderr(&out));

    // Caps count what DIR already holds: one more file allowed, then capture stops with one
    // warning while every frame is still classified.
    let max = (files.len() + 1).to_string();
    let out = edge_runtime(&run_args(
        &model,
        &frames,
        &["--capture", &s(&cap), "--capture-below", "0.95", "--capture-max", &max],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&out).len(), 20);
    assert_eq!(captured(&cap).len(), files.len() + 1);
    let err = stderr(&out);
    assert_eq!(err.matches("warning: capture stopped").count(), 1, "{err}");
    assert!(err.contains("(--capture-max)"), "{err}");
    // A size cap already exceeded: nothing more is written.
    let out = edge_runtime(&run_args(
        &model,
        &frames,
        &["--capture", &s(&cap), "--capture-below", "0.95", "--capture-max-mb", "0.01"],
    ));
    assert!(out.status.success());
    assert_eq!(captured(&cap).len(), files.len() + 1);
    assert!(stderr(&out).contains("(--capture-max-mb)"), "{}", stderr(&out));
    // Flags that need each other.
    let out = edge_runtime(&run_args(&model, &frames, &["--capture", &s(&cap)]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // The loop's next step: the user sorts the frames into their true classes (here: the
    // source file name says), and `trainer fit` trains on the folder.
    let sorted = tmp.path().join("sorted");
    let all =
        edge_runtime(&run_args(&model, &frames, &["--capture", &s(&tmp.path().join("all")), "--capture-below", "1.0"]));
    let recs = json_lines(&all);
    for r in &recs {
        let truth = r["name"].as_str().unwrap().split('-').next().unwrap();
        let name = format!("{}-{:.3}.jpg", r["ts"].as_str().unwrap().replace(':', "-"), r["score"].as_f64().unwrap());
        let from = tmp.path().join("all").join(r["top"][0]["label"].as_str().unwrap()).join(&name);
        std::fs::create_dir_all(sorted.join(truth)).unwrap();
        std::fs::rename(&from, sorted.join(truth).join(&name)).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    let fit = Command::new(perch::bin("trainer"))
        .env("PERCH_WEIGHTS", perch::weights_dir())
        .env("RUST_LOG", "warn")
        .args(["fit", "--backbone", "mobilenetv2", "--data", &s(&sorted), "--val-split", "0.3", "--epochs", "2"])
        .args([
            "--batch-size",
            "8",
            "--seed",
            "3",
            "--out",
            &s(&tmp.path().join("fit")),
            "--cache-dir",
            &s(&tmp.path().join("cache")),
        ])
        .output()
        .unwrap();
    assert!(fit.status.success(), "trainer fit on captured frames: {}\n{}", stdout(&fit), stderr(&fit));
    assert!(stdout(&fit).contains("14 train, 6 val, 0 skipped"), "{}", stdout(&fit));
}
