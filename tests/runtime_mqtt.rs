//! `--mqtt` end to end against a real broker: each test starts its own mosquitto on a free
//! 127.0.0.1 port and listens with the real `mosquitto_sub`. Availability, state, event and
//! Home Assistant discovery payloads; a broker restarted mid-stream; a wrong password; and two
//! devices' bench reports merged through the broker.

mod runtime_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtime_support::*;
use serde_json::Value;

/// The real broker, killed when the test ends.
struct Mosquitto {
    port: u16,
    _child: KillOnDrop,
}

fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{name} is not installed: these tests need a real broker. Install it: `sudo apt-get install -y mosquitto mosquitto-clients`"
    )
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Mosquitto {
    /// Starts mosquitto on 127.0.0.1:`port` (no persistence: a restart forgets retained
    /// messages, like a broker that lost its disk) with extra config lines.
    fn start(dir: &Path, port: u16, extra: &str) -> Self {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let conf = dir.join(format!("mosquitto-{port}-{n}.conf"));
        // As root mosquitto would switch to the `mosquitto` user, which cannot read the test's
        // private temporary folder.
        let user = if running_as_root() { "user root\n" } else { "" };
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\npersistence false\n{user}{extra}\n")).unwrap();
        let log = std::fs::File::create(dir.join(format!("mosquitto-{port}-{n}.log"))).unwrap();
        let child = Command::new(tool("mosquitto"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mosquitto");
        let child = KillOnDrop(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_listening(port) {
            assert!(Instant::now() < deadline, "mosquitto did not listen on 127.0.0.1:{port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Mosquitto { port, _child: child }
    }

    fn open(dir: &Path) -> Self {
        Self::start(dir, free_port(), "allow_anonymous true")
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

/// `mosquitto_sub` writing `retain topic payload` lines to a file, until dropped.
struct Subscriber {
    file: PathBuf,
    _child: KillOnDrop,
}

impl Subscriber {
    fn start(dir: &Path, port: u16, topics: &[&str]) -> Self {
        let file = dir.join(format!("sub-{port}-{}.txt", free_port()));
        let out = std::fs::File::create(&file).unwrap();
        // Line-buffered: mosquitto_sub's stdout to a file is block-buffered otherwise.
        let mut cmd = Command::new("stdbuf");
        cmd.arg("-oL").arg(tool("mosquitto_sub"));
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-F", "%r %t %p"]);
        for t in topics.iter().chain(&["test/ready"]) {
            cmd.args(["-t", t]);
        }
        let child = KillOnDrop(cmd.stdout(out).stderr(Stdio::null()).spawn().expect("start mosquitto_sub"));
        let sub = Subscriber { file, _child: child };
        // Subscribed once a probe published after the start comes through.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let _ = Command::new(tool("mosquitto_pub"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "test/ready", "-m", "1"])
                .status();
            if sub.all_lines().iter().any(|l| l.topic == "test/ready") {
                return sub;
            }
            assert!(Instant::now() < deadline, "mosquitto_sub did not subscribe");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What perch published (the readiness probes left out).
    fn lines(&self) -> Vec<Line> {
        self.all_lines().into_iter().filter(|l| l.topic != "test/ready").collect()
    }

    fn all_lines(&self) -> Vec<Line> {
        parse_lines(&std::fs::read_to_string(&self.file).unwrap_or_default())
    }

    /// Waits until a message on `topic` satisfies `ok`.
    fn wait_for(&self, topic: &str, ok: impl Fn(&str) -> bool, within: Duration) -> Line {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| l.topic == topic && ok(&l.payload)) {
                return l;
            }
            assert!(Instant::now() < deadline, "nothing on {topic} within {within:?}; got:\n{:#?}", self.lines());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[derive(Debug, Clone)]
struct Line {
    retained: bool,
    topic: String,
    payload: String,
}

impl Line {
    fn json(&self) -> Value {
        serde_json::from_str(&self.payload)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", self.topic, self.payload))
    }
}

/// Only the retained messages under these topics (a fresh subscriber, as Home Assistant
/// starting up would see them).
fn retained(port: u16, topics: &[&str]) -> Vec<Line> {
    let mut cmd = Command::new(tool("mosquitto_sub"));
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-F", "%r %t %p", "--retained-only", "-W", "2"]);
    for t in topics {
        cmd.args(["-t", t]);
    }
    let out = cmd.output().expect("mosquitto_sub");
    parse_lines(&String::from_utf8_lossy(&out.stdout))
}

/// `mosquitto_sub -F '%r %t %p'` output: retain flag, topic, payload per line.
fn parse_lines(text: &str) -> Vec<Line> {
    text.lines()
        .filter_map(|l| {
            let (retained, rest) = l.split_once(' ')?;
            let (topic, payload) = rest.split_once(' ').unwrap_or((rest, ""));
            Some(Line { retained: retained == "1", topic: topic.into(), payload: payload.into() })
        })
        .collect()
}

/// A `dir:` of fixture photos in a known order: 3 cats, 3 of another ImageNet class, 3 cats.
fn cat_other_cat(dir: &Path) -> PathBuf {
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let cat = image::open(photos_dir().join("chelsea.png")).unwrap().to_rgb8();
    cat.save_with_format(frames.join("cat.jpg"), image::ImageFormat::Jpeg).unwrap();
    let cat = std::fs::read(frames.join("cat.jpg")).unwrap();
    std::fs::remove_file(frames.join("cat.jpg")).unwrap();
    let other = std::fs::read(photos_dir().join("imagenet_02_438.jpg")).unwrap();
    for (i, bytes) in [&cat, &cat, &cat, &other, &other, &other, &cat, &cat, &cat].iter().enumerate() {
        std::fs::write(frames.join(format!("{i:02}.jpg")), bytes).unwrap();
    }
    frames
}

fn run_args(frames: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["run".to_string(), "--source".into(), format!("dir:{}", s(frames))];
    args.extend(MOBILENET.args());
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

#[test]
fn run_publishes_availability_state_events_and_discovery() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::open(dir.path());
    let sub = Subscriber::start(dir.path(), broker.port, &["perch/#", "homeassistant/#"]);
    let frames = cat_other_cat(dir.path());
    let url = broker.url();
    let out = edge_runtime(&run_args(
        &frames,
        &[
            "--mqtt",
            &url,
            "--name",
            "testpi",
            "--debounce",
            "2",
            "--ha-discovery",
            "--ha-binary",
            "tiger cat",
            "--emit",
            "jsonl",
        ],
    ));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let recs = json_lines(&out);
    assert_eq!(recs.len(), 9, "{err}");
    let cat_label = recs[0]["label"].as_str().unwrap().to_string();
    let other_label = recs[3]["label"].as_str().unwrap().to_string();
    assert_ne!(cat_label, other_label);
    assert!(err.contains("summary: mqtt published"), "{err}");
    // The broker has everything once the run exited (a clean disconnect flushes).
    let got = sub.lines();
    let on = |topic: &str| got.iter().filter(|l| l.topic == topic).cloned().collect::<Vec<_>>();

    let availability: Vec<String> = on("perch/testpi/availability").into_iter().map(|l| l.payload).collect();
    assert_eq!(availability, ["online", "offline"], "{got:#?}");

    // Debounce 2 over cat ×3, other ×3, cat ×3: three changes, the first from nothing.
    let events: Vec<Value> = on("perch/testpi/event").iter().map(Line::json).collect();
    let changes: Vec<(Value, Value)> = events.iter().map(|e| (e["from"].clone(), e["to"].clone())).collect();
    assert_eq!(
        changes,
        [
            (Value::Null, Value::from(cat_label.clone())),
            (Value::from(cat_label.clone()), Value::from(other_label.clone())),
            (Value::from(other_label.clone()), Value::from(cat_label.clone())),
        ],
        "{events:#?}"
    );
    for e in &events {
        assert!(e["score"].as_f64().is_some_and(|s| s > 0.0 && s <= 1.0) && is_rfc3339_utc(e["ts"].as_str().unwrap()));
    }

    let states: Vec<Value> = on("perch/testpi/state").iter().map(Line::json).collect();
    assert_eq!(states.len(), 3, "one state per change (heartbeat 60 s): {states:#?}");
    let labels: Vec<&str> = states.iter().map(|s| s["label"].as_str().unwrap()).collect();
    assert_eq!(labels, [cat_label.as_str(), other_label.as_str(), cat_label.as_str()]);
    for st in &states {
        let top = st["top"].as_array().unwrap();
        assert_eq!(top.len(), 5);
        assert!(top.iter().all(|p| p["label"].is_string() && p["score"].is_f64()), "{st}");
        assert_eq!(st["model"], "mobilenetv2-imagenet", "{st}");
        assert!(st["fps"].as_f64().is_some_and(|f| f > 0.0), "{st}");
        assert!(is_rfc3339_utc(st["ts"].as_str().unwrap()), "{st}");
    }

    let sensor = on("homeassistant/sensor/perch_testpi/label/config");
    assert_eq!(sensor.len(), 1, "{got:#?}");
    let sensor = sensor[0].json();
    assert_eq!(sensor["state_topic"], "perch/testpi/state");
    assert_eq!(sensor["availability_topic"], "perch/testpi/availability");
    assert_eq!(sensor["value_template"], "{{ value_json.label }}");
    assert_eq!(sensor["unique_id"], "perch_testpi_label");
    assert_eq!(sensor["device"]["name"], "testpi");
    assert_eq!(sensor["device"]["model"], "mobilenetv2-imagenet");
    assert!(sensor["device"]["sw_version"].is_string());
    let binary = on("homeassistant/binary_sensor/perch_testpi/tiger_cat/config");
    assert_eq!(binary.len(), 1, "{got:#?}");
    let binary = binary[0].json();
    assert_eq!(binary["unique_id"], "perch_testpi_tiger_cat");
    assert!(binary["value_template"].as_str().unwrap().contains(r#"value_json.label == "tiger cat""#));

    // What a subscriber arriving later (Home Assistant after a restart) gets: retained
    // discovery, the last state, and `offline`; never the events.
    let kept = retained(broker.port, &["perch/#", "homeassistant/#"]);
    assert!(kept.iter().all(|l| l.retained), "{kept:#?}");
    let topic_payload = |t: &str| kept.iter().find(|l| l.topic == t).map(|l| l.payload.clone());
    assert_eq!(topic_payload("perch/testpi/availability").as_deref(), Some("offline"));
    let last: Value = serde_json::from_str(&topic_payload("perch/testpi/state").unwrap()).unwrap();
    assert_eq!(last["label"], Value::from(cat_label));
    assert!(topic_payload("homeassistant/sensor/perch_testpi/label/config").is_some());
    assert!(topic_payload("perch/testpi/event").is_none(), "events are not retained");
}

#[test]
fn per_class_thresholds_and_flag_errors() {
    let dir = tempfile::tempdir().unwrap();
    let frames = cat_other_cat(dir.path());
    // The cat frames score below 0.99 for their class: with a per-class threshold they become
    // `unknown`, while the other class keeps the global threshold (0).
    let probe = edge_runtime(&run_args(&frames, &["--emit", "jsonl", "--frames", "1"]));
    assert!(probe.status.success(), "{}", stderr(&probe));
    let cat_label = json_lines(&probe)[0]["label"].as_str().unwrap().to_string();
    let out =
        edge_runtime(&run_args(&frames, &["--emit", "jsonl", "--threshold-class", &format!("{cat_label}=0.999")]));
    assert!(out.status.success(), "{}", stderr(&out));
    let labels: Vec<String> = json_lines(&out).iter().map(|r| r["label"].as_str().unwrap().to_string()).collect();
    assert_eq!(labels[..3], ["unknown", "unknown", "unknown"], "{labels:?}");
    assert!(labels[3] != "unknown" && labels[3] != cat_label, "{labels:?}");

    for (extra, says) in [
        (&["--threshold-class", "unicorn=0.5"][..], "--threshold-class names class 'unicorn'"),
        (&["--threshold-class", "bee=1.5"], "not a probability"),
        (&["--mqtt", "tcp://127.0.0.1"], "expected mqtt://"),
        (&["--mqtt", "mqtt://u:secret@127.0.0.1:0"], "invalid port"),
        (&["--mqtt", "mqtt://127.0.0.1", "--name", "a/b"], "--name 'a/b'"),
        (&["--ha-discovery"], "--mqtt"),
    ] {
        let out = edge_runtime(&run_args(&frames, extra));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(says), "{extra:?}: {err}");
        assert!(!err.contains("secret"), "the password is never printed: {err}");
    }
}

#[test]
fn the_run_survives_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let frames = cat_other_cat(dir.path());
    let url = format!("mqtt://127.0.0.1:{port}");
    let args =
        run_args(&frames, &["--loop", "--mqtt", &url, "--name", "restart", "--debounce", "1", "--heartbeat", "0.5"]);
    // The broker is not there yet when the run starts: a warning, and inference goes on.
    let mut run = KillOnDrop(
        Command::new(perch::bin("edge-runtime"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("run.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    let run_err = || std::fs::read_to_string(dir.path().join("run.err")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !run_err().contains("not reachable") {
        assert!(Instant::now() < deadline, "no warning about the missing broker: {}", run_err());
        assert!(run.0.try_wait().unwrap().is_none(), "the run must not stop: {}", run_err());
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = Mosquitto::start(dir.path(), port, "allow_anonymous true");
    let sub = Subscriber::start(dir.path(), port, &["perch/#"]);
    sub.wait_for("perch/restart/state", |p| p.contains("\"label\""), Duration::from_secs(60));
    drop(sub);
    drop(first);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(run.0.try_wait().unwrap().is_none(), "the run must go on without the broker");
    let second = Mosquitto::start(dir.path(), port, "allow_anonymous true");
    let sub = Subscriber::start(dir.path(), port, &["perch/#"]);
    // The new broker knows nothing (no persistence): availability and state come back.
    sub.wait_for("perch/restart/availability", |p| p == "online", Duration::from_secs(30));
    let state = sub.wait_for("perch/restart/state", |p| p.contains("\"label\""), Duration::from_secs(30));
    assert!(state.json()["label"].is_string());
    let pid = run.0.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = run.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the run did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = run_err();
    assert!(status.success(), "{err}");
    let line = err.lines().find(|l| l.starts_with("summary: mqtt")).unwrap_or_else(|| panic!("{err}"));
    // Connected late once, then back after the restart; states replaced while the broker was
    // away were counted as dropped.
    assert!(!line.contains("reconnects 0") && !line.contains("dropped 0"), "{line}");
    assert!(err.contains("reconnecting"), "{err}");
    sub.wait_for("perch/restart/availability", |p| p == "offline", Duration::from_secs(5));
    drop(second);
}

#[test]
fn a_wrong_password_is_a_clear_error_and_the_right_one_works() {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwd");
    let ok =
        Command::new(tool("mosquitto_passwd")).arg("-b").arg("-c").arg(&passwords).args(["perch", "s3cret"]).status();
    assert!(ok.unwrap().success());
    let port = free_port();
    let broker = Mosquitto::start(dir.path(), port, &format!("allow_anonymous false\npassword_file {}", s(&passwords)));
    let frames = cat_other_cat(dir.path());
    let wrong = format!("mqtt://perch:hunter2@127.0.0.1:{}", broker.port);
    let out = edge_runtime(&run_args(&frames, &["--mqtt", &wrong, "--frames", "2"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("connection refused") && (err.contains("password") || err.contains("not authorized")),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "the password is never printed: {err}");
    assert!(stdout(&out).is_empty(), "nothing classified before the broker refused: {}", stdout(&out));

    // The password from the environment, not the command line.
    let out = Command::new(perch::bin("edge-runtime"))
        .args(run_args(&frames, &["--mqtt", &format!("mqtt://perch@127.0.0.1:{port}"), "--frames", "2"]))
        .env("PERCH_MQTT_PASSWORD", "s3cret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("s3cret"));
}

#[test]
fn bench_reports_of_two_devices_merge_through_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::open(dir.path());
    let url = broker.url();
    for name in ["pi-a", "pi-b"] {
        let mut args = vec!["bench".to_string()];
        args.extend(MOBILENET.args());
        args.extend(["--warmup", "1", "--iterations", "3", "--mqtt", &url, "--name", name].map(String::from));
        let out = edge_runtime(&args);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        assert!(err.contains(&format!("published the report to perch/{name}/bench")), "{err}");
    }
    let merged = dir.path().join("merged.json");
    let md = dir.path().join("merged.md");
    let out =
        edge_runtime(&["bench", "report", "--mqtt", &url, "--wait", "1", "--json", &s(&merged), "--markdown", &s(&md)]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("collected 2 report(s)"), "{err}");
    let merged: Value = serde_json::from_str(&std::fs::read_to_string(&merged).unwrap()).unwrap();
    let names: Vec<&str> =
        merged["devices"].as_array().unwrap().iter().map(|d| d["device"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["pi-a", "pi-b"]);
    let rows = merged["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{merged:#}");
    assert!(rows.iter().all(|r| r["p50_ms"].as_f64().is_some_and(|p| p > 0.0)), "{merged:#}");
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(md.contains("pi-a (") && md.contains("pi-b ("), "{md}");

    // A broker nobody listens on: a clear error, no hang.
    let out = edge_runtime(&["bench", "report", "--mqtt", &format!("mqtt://127.0.0.1:{}", free_port()), "--wait", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not reachable"), "{}", stderr(&out));
}

/// A CA and a server certificate for 127.0.0.1 (openssl), for an `mqtts://` listener.
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let [ca_key, ca, key, csr, cert] =
        ["ca.key", "ca.pem", "server.key", "server.csr", "server.pem"].map(|f| dir.join(f));
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().expect("openssl is needed for the TLS test");
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=perch test CA",
        "-keyout",
        &s(&ca_key),
        "-out",
        &s(&ca),
    ]);
    openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", &s(&key), "-out", &s(&csr)]);
    let ext = dir.join("san.ext");
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca),
        "-CAkey",
        &s(&ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &s(&ext),
        "-out",
        &s(&cert),
    ]);
    (ca, cert, key)
}

#[test]
fn mqtts_needs_the_broker_ca_and_works_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path());
    let port = free_port();
    let _broker = Mosquitto::start(
        dir.path(),
        port,
        &format!("allow_anonymous true\ncertfile {}\nkeyfile {}", s(&cert), s(&key)),
    );
    let frames = cat_other_cat(dir.path());
    let url = format!("mqtts://127.0.0.1:{port}");
    // The system roots do not know the test CA: refused at start with what to do.
    let out = edge_runtime(&run_args(&frames, &["--mqtt", &url, "--frames", "1"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("TLS failed") && err.contains("--mqtt-ca"), "{err}");
    let out =
        edge_runtime(&run_args(&frames, &["--mqtt", &url, "--mqtt-ca", &s(&ca), "--frames", "3", "--debounce", "1"]));
    assert!(out.status.success(), "{}", stderr(&out));
    // What reached the broker, read back over TLS by mosquitto_sub.
    let sub = Command::new(tool("mosquitto_sub"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--cafile", &s(&ca), "-F", "%t %p", "--retained-only"])
        .args(["-W", "2", "-t", "perch/#"])
        .output()
        .unwrap();
    let got = String::from_utf8_lossy(&sub.stdout);
    assert!(got.contains("/availability offline") && got.contains("/state {\"label\""), "{got}");
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn a_reloaded_model_renames_the_device_in_state_and_discovery() {
    let (bugs, _) = enrolled_models();
    let dir = tempfile::tempdir().unwrap();

    // A model with another name: flowers enrolled on the Lite0 reference.
    let flowers = dir.path().join("flowers-lite0.onnx");
    let folder = perch::dataset_dir("flowers12").join("train");
    let o = edge_runtime(&[
        "enrol",
        "--model",
        &s(&LITE0.path()),
        "--preset",
        LITE0.preset,
        "--out",
        &s(&flowers),
        "--from-folder",
        &s(&folder),
        "--limit-per-class",
        "2",
    ]);
    assert!(o.status.success(), "enrol: {}", stderr(&o));
    let broker = Mosquitto::open(dir.path());
    let sub = Subscriber::start(dir.path(), broker.port, &["perch/#", "homeassistant/#"]);
    let model = dir.path().join("model.onnx");
    std::fs::copy(bugs, &model).unwrap();
    let frames = cat_other_cat(dir.path());
    let url = broker.url();
    let args = [
        "run",
        "--source",
        &format!("dir:{}", s(&frames)),
        "--model",
        &s(&model),
        "--loop",
        "--mqtt",
        &url,
        "--name",
        "reload",
        "--debounce",
        "1",
        "--heartbeat",
        "0.5",
        "--ha-discovery",
    ];
    let mut run = KillOnDrop(
        Command::new(perch::bin("edge-runtime"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("run.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    let config = "homeassistant/sensor/perch_reload/label/config";
    let first = sub.wait_for(config, |_| true, Duration::from_secs(60)).json();
    let old_name = first["device"]["model"].as_str().unwrap().to_string();
    let state = sub.wait_for("perch/reload/state", |p| p.contains("\"label\""), Duration::from_secs(60)).json();
    assert_eq!(state["model"], old_name.as_str());

    // A different export renamed over the file: the state names the new model, and the
    // discovery config is published again with it as the device's model.
    let tmp = model.with_extension("onnx.part");
    std::fs::copy(&flowers, &tmp).unwrap();
    std::fs::rename(&tmp, &model).unwrap();
    let renamed = |p: &str| serde_json::from_str::<Value>(p).is_ok_and(|v| v["device"]["model"] != old_name.as_str());
    let config2 = sub.wait_for(config, renamed, Duration::from_secs(60)).json();
    let new_name = config2["device"]["model"].as_str().unwrap().to_string();
    let has_new = |p: &str| serde_json::from_str::<Value>(p).is_ok_and(|v| v["model"] == new_name.as_str());
    sub.wait_for("perch/reload/state", has_new, Duration::from_secs(30));
    assert_eq!(
        (config2["device"]["name"].as_str(), config2["unique_id"].as_str()),
        (Some("reload"), first["unique_id"].as_str())
    );
    // What Home Assistant sees when it starts now: the retained config names the new model.
    let kept = retained(broker.port, &["homeassistant/#"]);
    let kept = kept.iter().find(|l| l.topic == config).unwrap().json();
    assert_eq!(kept["device"]["model"], new_name.as_str());

    let pid = run.0.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while run.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the run did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = std::fs::read_to_string(dir.path().join("run.err")).unwrap();
    assert!(err.contains("model reloaded (file replaced)"), "{err}");
}
