//! Shared by the `runtime_*` end-to-end tests: the built binary and the reference models.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A reference ImageNet model of `../shared/weights`, described by its preset.
pub struct Reference {
    pub file: &'static str,
    pub preset: &'static str,
}

pub const MOBILENET: Reference = Reference { file: "mobilenet_v2_1.0_224.onnx", preset: "mobilenetv2" };
pub const LITE0: Reference = Reference { file: "efficientnet_lite0.onnx", preset: "efficientnet-lite0" };
pub const B0: Reference = Reference { file: "efficientnet_b0.onnx", preset: "efficientnet-b0" };

impl Reference {
    pub fn path(&self) -> PathBuf {
        perch::weights_dir().join(self.file)
    }

    /// `--model M --preset P --labels imagenet_labels.txt`
    pub fn args(&self) -> Vec<String> {
        let labels = perch::weights_dir().join("imagenet_labels.txt");
        vec!["--model".into(), s(&self.path()), "--preset".into(), self.preset.into(), "--labels".into(), s(&labels)]
    }
}

pub fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// Runs the built `edge-runtime` with these arguments.
pub fn edge_runtime<S: AsRef<str>>(args: &[S]) -> Output {
    Command::new(perch::bin("edge-runtime")).args(args.iter().map(|a| a.as_ref())).output().expect("run edge-runtime")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `classify --json` lines as JSON values.
pub fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}"))).collect()
}

/// The photos committed under tests/fixtures/photos.
pub fn photos_dir() -> PathBuf {
    perch::fixture("photos")
}

/// ImageNet-1k cat classes 281..=285 (tabby, tiger cat, Persian, Siamese, Egyptian cat).
pub fn is_cat(imagenet_index: i64) -> bool {
    (281..=285).contains(&imagenet_index)
}

/// Runs the built `edge-runtime` with `dir` first on its PATH (stand-in capture programs).
pub fn edge_runtime_with_path<S: AsRef<str>>(args: &[S], dir: &Path) -> Output {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    Command::new(perch::bin("edge-runtime"))
        .args(args.iter().map(|a| a.as_ref()))
        .env("PATH", std::env::join_paths(dirs).expect("PATH"))
        .output()
        .expect("run edge-runtime")
}

/// `frames in N, classified N, dropped N, skipped N, reconnects N` from the summary line.
pub struct Counts {
    pub frames_in: u64,
    pub classified: u64,
    pub dropped: u64,
    pub skipped: u64,
    pub reconnects: u64,
}

pub fn summary(err: &str) -> Counts {
    let line = err.lines().find(|l| l.starts_with("summary:")).unwrap_or_else(|| panic!("no summary:\n{err}"));
    let num = |key: &str| -> u64 {
        let at = line.find(key).unwrap_or_else(|| panic!("{key} missing: {line}"));
        let rest = &line[at + key.len()..];
        rest.trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    Counts {
        frames_in: num("frames in"),
        classified: num("classified"),
        dropped: num("dropped"),
        skipped: num("skipped"),
        reconnects: num("reconnects"),
    }
}

/// `2026-12-01T21:50:03.123Z`: RFC 3339, UTC, milliseconds.
pub fn is_rfc3339_utc(ts: &str) -> bool {
    let b = ts.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z'
}

/// Fails (never skips) when ffmpeg is missing: the video and stream tests need the real one.
pub fn require_ffmpeg() {
    for tool in ["ffmpeg", "ffprobe"] {
        let ok = Command::new(tool).arg("-version").output().is_ok_and(|o| o.status.success());
        assert!(ok, "{tool} is not installed: these tests need it. Install it: `sudo apt-get install -y ffmpeg`");
    }
}

/// Runs ffmpeg to completion (quiet), failing the test with its stderr on error.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", stderr(&out));
}

/// A port on 127.0.0.1 nothing listens on (just released by the OS).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Whether something listens on 127.0.0.1:`port`, from /proc/net/tcp (a test connection would
/// use up a one-client server such as `ffmpeg -listen 1`).
pub fn is_listening(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let want = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1] == want && f[3] == "0A"
    })
}

/// A child process killed and reaped when the test ends, however it ends.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two different enrolled models on the MobileNetV2 reference (manifest inside, same input):
/// hymenoptera ants/bees and flowers12, few shots each; made once per test binary.
pub fn enrolled_models() -> &'static (PathBuf, PathBuf) {
    static MODELS: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    MODELS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let mk = |name: &str, folder: PathBuf, shots: &str| {
            let out = dir.join(name);
            let mut args = vec!["enrol".to_string()];
            args.extend(["--model".into(), s(&MOBILENET.path()), "--preset".into(), MOBILENET.preset.into()]);
            args.extend([
                "--out".into(),
                s(&out),
                "--from-folder".into(),
                s(&folder),
                "--limit-per-class".into(),
                shots.into(),
            ]);
            let o = edge_runtime(&args);
            assert!(o.status.success(), "enrol: {}", stderr(&o));
            out
        };
        let a = mk("bugs.onnx", perch::dataset_dir("hymenoptera").join("train"), "5");
        let b = mk("flowers.onnx", perch::dataset_dir("flowers12").join("train"), "2");
        (a, b)
    })
}
