//! Inference engines. tract is the default: pure Rust, in the one static binary, nothing to
//! install. onnxruntime (`--engine ort`) is optional: the `ort` crate loads an existing
//! `libonnxruntime.so` at run time (`--ort-lib`, `ORT_DYLIB_PATH`, or a pip-installed
//! onnxruntime found in the usual places), so nothing is downloaded at build time and a binary
//! without the library still runs everything on tract. `auto` times both on the loaded model
//! and keeps the faster.
//!
//! Both engines get the same preprocessed tensor (`models::Preprocessor`) and return the same
//! logits; the classifier, manifest, pipeline, sinks and bench do not care which one ran.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// `--engine NAME`: which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// tract: built in, no system libraries.
    #[default]
    Tract,
    /// onnxruntime, loaded at run time from libonnxruntime.so.
    Ort,
    /// Load the model in both, time a few inferences, keep the faster.
    Auto,
}

impl Engine {
    /// The one spelling: `--engine NAME`, bench's `engine` column, logs, /api/status.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Tract => "tract",
            Engine::Ort => "ort",
            Engine::Auto => "auto",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The oldest onnxruntime perch's `ort` build accepts (the crate's `api-17` feature): sessions
/// from memory, intra-op threads, float tensors in and out are all there since 1.17.
pub const ORT_MIN_VERSION: &str = "1.17";

/// Library file names tried in a folder (the pip wheel ships `libonnxruntime.so.1.NN.N`).
fn is_ort_library_name(name: &str) -> bool {
    name == "libonnxruntime.so" || name.starts_with("libonnxruntime.so.") || name == "libonnxruntime.dylib"
}

/// Where to look for libonnxruntime when neither `--ort-lib` nor `ORT_DYLIB_PATH` says:
/// system library folders, then the `onnxruntime/capi/` folder of pip installs (user, system,
/// the active virtualenv).
fn default_search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = [
        "/usr/local/lib",
        "/usr/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib/arm-linux-gnueabihf",
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect();
    let mut lib_roots: Vec<PathBuf> = vec!["/usr/local/lib".into(), "/usr/lib".into()];
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        lib_roots.insert(0, Path::new(&venv).join("lib"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        lib_roots.insert(0, Path::new(&home).join(".local/lib"));
    }
    for root in lib_roots {
        let Ok(entries) = std::fs::read_dir(&root) else { continue };
        let mut pythons: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path())
            .collect();
        pythons.sort();
        for py in pythons.into_iter().rev() {
            for packages in ["site-packages", "dist-packages"] {
                dirs.push(py.join(packages).join("onnxruntime/capi"));
            }
        }
    }
    dirs.push("/usr/lib/python3/dist-packages/onnxruntime/capi".into());
    dirs
}

/// The library files in `dir` (newest version name last is irrelevant: a wheel holds one).
fn libraries_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| is_ort_library_name(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
}

/// Resolves which libonnxruntime to load: `explicit` (`--ort-lib`, a file or a folder holding
/// one, e.g. a pip install's `onnxruntime/capi`), else `ORT_DYLIB_PATH`, else the first found in
/// [`default_search_dirs`]. An explicit path that holds no library is an error, never a silent
/// fallback to another one.
pub fn find_ort_library(explicit: Option<&Path>) -> Result<PathBuf> {
    let unavailable = |reason: String| RuntimeError::OrtUnavailable { reason };
    let from_path = |p: &Path, what: &str| -> Result<PathBuf> {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        if p.is_dir() {
            for dir in [p.to_path_buf(), p.join("capi"), p.join("onnxruntime/capi")] {
                if let Some(lib) = libraries_in(&dir).pop() {
                    return Ok(lib);
                }
            }
            return Err(unavailable(format!("{what} {} holds no libonnxruntime.so*", p.display())));
        }
        Err(unavailable(format!("{what} {} does not exist", p.display())))
    };
    if let Some(p) = explicit {
        return from_path(p, "--ort-lib");
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return from_path(Path::new(&p), "ORT_DYLIB_PATH");
    }
    let dirs = default_search_dirs();
    for dir in &dirs {
        if let Some(lib) = libraries_in(dir).pop() {
            return Ok(lib);
        }
    }
    Err(unavailable(format!(
        "no libonnxruntime.so* found (looked in {} and the onnxruntime/capi folders of pip installs)",
        dirs.iter().take(5).map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
    )))
}

#[cfg(feature = "ort")]
pub use ort_backend::OrtRunner;

#[cfg(feature = "ort")]
mod ort_backend {
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, OnceLock};

    use ort::session::Session;
    use ort::session::builder::GraphOptimizationLevel;
    use ort::value::TensorRef;

    use super::find_ort_library;
    use crate::error::{Result, RuntimeError};

    /// The process's onnxruntime: one library, loaded once (the first `--ort-lib` wins).
    struct Loaded {
        env: ort::environment::Environment,
        path: PathBuf,
        version: String,
    }

    static LOADED: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();

    fn loaded(explicit: Option<&Path>) -> Result<&'static Loaded> {
        let init = || -> std::result::Result<Loaded, String> {
            let path = find_ort_library(explicit).map_err(|e| match e {
                RuntimeError::OrtUnavailable { reason } => reason,
                other => other.to_string(),
            })?;
            let builder = ort::init_from(&path).map_err(|e| format!("{} cannot be loaded: {e}", path.display()))?;
            let env = builder.with_name("perch").build().map_err(|e| format!("{}: {e}", path.display()))?;
            // The wheel's and the release archives' file is libonnxruntime.so.1.NN.N (a plain
            // libonnxruntime.so is usually a symlink to it).
            let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            let version = real
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("libonnxruntime.so."))
                .unwrap_or("(version unknown)")
                .to_string();
            Ok(Loaded { env, path, version })
        };
        LOADED.get_or_init(init).as_ref().map_err(|reason| RuntimeError::OrtUnavailable { reason: reason.clone() })
    }

    /// One onnxruntime session for one model. `Session::run` needs `&mut`: the classifier is
    /// shared between threads, so the session sits behind a mutex (one inference at a time, as
    /// with tract).
    pub struct OrtRunner {
        session: Mutex<Session>,
        library: String,
    }

    impl OrtRunner {
        /// Builds a session from the model bytes: all graph optimizations (ORT_ENABLE_ALL,
        /// onnxruntime's default, as in Python), `threads` intra-op threads without spinning (a spinning
        /// pool would take the core the pipeline decodes on), one inter-op thread.
        pub fn new(model: &Path, bytes: &[u8], threads: usize, lib: Option<&Path>) -> Result<Self> {
            let l = loaded(lib)?;
            let bad =
                |e: &dyn std::fmt::Display| RuntimeError::OrtModel { path: model.to_path_buf(), reason: e.to_string() };
            let threads = threads.max(1);
            let session = Session::builder(&l.env)
                .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::All)?))
                .and_then(|b| Ok(b.with_intra_threads(threads)?))
                .and_then(|b| Ok(b.with_inter_threads(1)?))
                .and_then(|b| Ok(b.with_intra_op_spinning(false)?))
                .and_then(|mut b| b.commit_from_memory(bytes))
                .map_err(|e| bad(&e))?;
            if session.inputs().len() != 1 {
                return Err(bad(&format!(
                    "the graph has {} inputs; perch feeds one image tensor",
                    session.inputs().len()
                )));
            }
            let library = format!("onnxruntime {} ({})", l.version, l.path.display());
            Ok(OrtRunner { session: Mutex::new(session), library })
        }

        /// Which library runs this session, for logs and /api/status.
        pub fn library(&self) -> &str {
            &self.library
        }

        /// The first output (the logits).
        pub fn run(&self, shape: [usize; 4], input: &[f32]) -> Result<Vec<f32>> {
            self.run_outputs(shape, input, 1).map(|mut outs| outs.swap_remove(0))
        }

        /// The first `count` outputs, in graph order, flattened (the trainer's frozen
        /// backbone pass reads the pooled features and the fine-tuning boundary).
        pub fn run_outputs(&self, shape: [usize; 4], input: &[f32], count: usize) -> Result<Vec<Vec<f32>>> {
            let fail = |e: &dyn std::fmt::Display| RuntimeError::Inference(format!("onnxruntime: {e}"));
            // A view of the caller's buffer: no copy of the input tensor.
            let tensor = TensorRef::from_array_view((shape, input)).map_err(|e| fail(&e))?;
            let mut session = common::lock(&self.session);
            let outputs = session.run(ort::inputs![tensor]).map_err(|e| fail(&e))?;
            if outputs.len() < count {
                return Err(fail(&format!("the graph has {} outputs, {count} expected", outputs.len())));
            }
            (0..count)
                .map(|i| outputs[i].try_extract_tensor::<f32>().map(|(_, v)| v.to_vec()).map_err(|e| fail(&e)))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_are_the_flag_values() {
        use clap::ValueEnum;
        for e in Engine::value_variants() {
            assert_eq!(e.to_possible_value().unwrap().get_name(), e.name());
        }
    }

    #[test]
    fn an_explicit_library_path_that_is_not_there_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_ort_library(Some(&dir.path().join("nope.so"))).unwrap_err().to_string();
        assert!(err.contains("--ort-lib") && err.contains("nope.so") && err.contains("does not exist"), "{err}");
        let err = find_ort_library(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("holds no libonnxruntime.so"), "{err}");
        // A pip install's package folder is searched down to capi/.
        let capi = dir.path().join("onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        std::fs::write(capi.join("libonnxruntime.so.1.32.0"), b"x").unwrap();
        assert_eq!(find_ort_library(Some(dir.path())).unwrap(), capi.join("libonnxruntime.so.1.32.0"));
        assert_eq!(
            find_ort_library(Some(&dir.path().join("onnxruntime"))).unwrap(),
            capi.join("libonnxruntime.so.1.32.0")
        );
    }
}
