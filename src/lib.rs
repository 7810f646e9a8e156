//! Support for perch's end-to-end tests and benchmarks: where the shared weights and datasets
//! live, and the built binaries (tests run the commands a user would).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// The workspace root (this package's manifest directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared` beside the clone, or `PERCH_SHARED`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("PERCH_SHARED").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("../shared"))
}

/// The weights directory: `PERCH_WEIGHTS`, else `shared/weights`.
pub fn weights_dir() -> PathBuf {
    std::env::var_os("PERCH_WEIGHTS").map(PathBuf::from).unwrap_or_else(|| shared_dir().join("weights"))
}

pub fn dataset_dir(name: &str) -> PathBuf {
    shared_dir().join("datasets").join(name)
}

/// Small committed test fixtures (photos, reference outputs).
pub fn fixture(rel: &str) -> PathBuf {
    workspace_root().join("tests/fixtures").join(rel)
}

/// Path of a workspace binary built in the same profile as the running test, building it first
/// (once per process) so a test never runs a stale binary.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-hash -> target/<profile>
    let profile_dir = exe.parent().and_then(Path::parent).expect("target profile dir").to_path_buf();
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let profile = profile_dir.file_name().and_then(|s| s.to_str()).unwrap_or("debug");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "--quiet", "--workspace", "--bin", name]).current_dir(workspace_root());
        if profile != "debug" {
            cmd.args(["--profile", profile]);
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build --bin {name} failed");
        built.push(name.to_string());
    }
    profile_dir.join(name)
}

/// The built `trainer` with the shared weights and warnings-only logs, as the end-to-end tests
/// run it.
pub fn trainer() -> Command {
    let mut c = Command::new(bin("trainer"));
    c.env("PERCH_WEIGHTS", weights_dir()).env("RUST_LOG", "warn");
    // The export also reports onnxruntime's accuracy when it finds the library.
    if let Some(lib) = ort_library() {
        c.env("ORT_DYLIB_PATH", lib);
    }
    c
}

/// stdout then stderr of a finished command, for assertion messages.
pub fn output_text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The onnxruntime library the `--engine ort` tests load: `ORT_DYLIB_PATH` (CI sets it to the
/// wheel it installs), else the wheel in the test venv (`target/python-venv`, made by
/// `tests/python/venv.sh`). None: those tests print that they were skipped, and why.
pub fn ort_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let lib = workspace_root().join("target/python-venv/lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|py| py.path().join("site-packages/onnxruntime/capi"))
        .flat_map(|capi| std::fs::read_dir(capi).into_iter().flatten().flatten().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so")))
        .collect();
    found.sort();
    found.pop()
}

/// [`ort_library`], or a line on stderr saying the test was skipped and how to run it.
pub fn ort_library_or_skip(test: &str) -> Option<PathBuf> {
    let lib = ort_library();
    if lib.is_none() {
        eprintln!(
            "skipped {test}: no onnxruntime library (set ORT_DYLIB_PATH to a libonnxruntime.so, or run `bash tests/python/venv.sh`, which installs the onnxruntime wheel into target/python-venv; .ci/run does)"
        );
    }
    lib
}
