//! Build facts for `edge-runtime bench`'s device block: the tract version actually linked
//! (read from the workspace Cargo.lock so it can never drift from a hand-written string) and
//! the optimisation level of this build.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let lock = manifest_dir.join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    println!("cargo:rerun-if-env-changed=OPT_LEVEL");
    let version = std::fs::read_to_string(&lock)
        .ok()
        .and_then(|text| locked_version(&text, "tract-onnx"))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=PERCH_TRACT_VERSION={version}");
    let opt = std::env::var("OPT_LEVEL").unwrap_or_else(|_| "unknown".to_string());
    println!("cargo:rustc-env=PERCH_OPT_LEVEL={opt}");
    // OUT_DIR is target/[<triple>/]<profile>/build/<pkg>-<hash>/out: the profile's name
    // (dev builds live in "debug"), which tells `release` from custom ones such as `deploy`.
    let profile = std::env::var_os("OUT_DIR")
        .map(PathBuf::from)
        .and_then(|out| out.ancestors().nth(3).and_then(|p| p.file_name()).map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=PERCH_CARGO_PROFILE={profile}");
}

/// The `version` of `[[package]] name = "<name>"` in a Cargo.lock.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            let next = lines.next()?.trim();
            return next.strip_prefix("version = \"")?.strip_suffix('"').map(str::to_string);
        }
    }
    None
}
