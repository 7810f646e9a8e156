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
    c
}

/// stdout then stderr of a finished command, for assertion messages.
pub fn output_text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}
