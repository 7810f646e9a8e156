//! `edge-runtime classify`: files and folders (recursive) through the classifier, one result
//! per image. Bad images (unreadable, corrupt, truncated, empty, too large) are skipped and
//! counted, never fatal: one broken file must not lose the results of a thousand good ones.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use models::preprocess::{HEIF_HINT, PassedOver, find_images, load_image};
use models::{ImageLimits, Preprocessor};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::model::Classifier;
use crate::stats::Latencies;

/// One classified image: the `classify --json` line (the record `trainer predict --json` prints too).
pub use models::ImageRecord as ImageResult;

/// An input that was not classified, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct ClassifyOptions {
    pub top_k: usize,
    pub limits: ImageLimits,
    /// Debug aid for reference checks: write each preprocessed tensor as raw little-endian
    /// f32 (`<file name>.f32`, NCHW) into this folder.
    pub dump_tensors: Option<PathBuf>,
}

impl Default for ClassifyOptions {
    fn default() -> Self {
        ClassifyOptions { top_k: 5, limits: ImageLimits::default(), dump_tensors: None }
    }
}

/// What happened to one input, in input order.
#[derive(Debug, Clone)]
pub enum Outcome {
    Classified(ImageResult),
    Skipped(Skipped),
}

#[derive(Debug, Clone, Default)]
pub struct ClassifySummary {
    pub classified: usize,
    pub skipped: usize,
    pub latencies: Latencies,
}

/// Image files named by `paths`: files as given (whatever their extension, so a mislabelled
/// file is reported rather than silently ignored), folders searched recursively for image
/// extensions, each folder's files in sorted order, hidden entries and `__MACOSX` left out.
/// Missing paths are returned as skips, and a folder reached twice (a symlink loop such as
/// `latest -> .`) is searched once.
pub fn collect_images(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Skipped>) {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let mut seen = HashSet::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut files, &mut skipped, &mut seen);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            skipped
                .push(Skipped { path: p.clone(), reason: RuntimeError::InputMissing { path: p.clone() }.to_string() });
        }
    }
    (files, skipped)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, skipped: &mut Vec<Skipped>, seen: &mut HashSet<PathBuf>) {
    let mut passed = Vec::new();
    find_images(dir, seen, files, &mut passed);
    // Other files (notes, sidecars, videos) in a photo folder are not worth a line each.
    for (path, why) in passed {
        let reason = match why {
            PassedOver::NotImage => continue,
            PassedOver::Heif => HEIF_HINT.to_string(),
            PassedOver::Unlistable(e) => format!("cannot list folder {}: {e}", path.display()),
        };
        skipped.push(Skipped { path, reason });
    }
}

/// Classifies every image under `paths`, calling `emit` for each outcome as it happens (so
/// output streams), and returns the counts. Fails only when nothing could be found at all or
/// the model itself fails.
pub fn classify_paths(
    classifier: &Classifier,
    paths: &[PathBuf],
    opts: &ClassifyOptions,
    mut emit: impl FnMut(&Outcome) -> Result<()>,
) -> Result<ClassifySummary> {
    let (files, missing) = collect_images(paths);
    if files.is_empty() && missing.is_empty() {
        let paths = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(RuntimeError::NoImages { paths });
    }
    if let Some(dir) = &opts.dump_tensors {
        std::fs::create_dir_all(dir).map_err(|source| RuntimeError::WriteFile { path: dir.clone(), source })?;
    }
    let mut pre = Preprocessor::new(classifier.manifest().preprocessing);
    let mut summary = ClassifySummary::default();
    for s in missing {
        summary.skipped += 1;
        emit(&Outcome::Skipped(s))?;
    }
    for file in files {
        let outcome = match classify_file(classifier, &mut pre, &file, opts) {
            Ok(r) => {
                summary.classified += 1;
                summary.latencies.push(r.latency_ms);
                Outcome::Classified(r)
            }
            Err(e) if e.is_bad_input() => {
                summary.skipped += 1;
                Outcome::Skipped(Skipped { path: file.clone(), reason: e.to_string() })
            }
            Err(e) => return Err(e),
        };
        emit(&outcome)?;
    }
    Ok(summary)
}

/// Decode, preprocess (the manifest's preprocessing), run, softmax, top-k.
pub fn classify_file(
    classifier: &Classifier,
    pre: &mut Preprocessor,
    path: &Path,
    opts: &ClassifyOptions,
) -> Result<ImageResult> {
    let start = Instant::now();
    let tensor = pre.tensor(load_image(path, opts.limits)?)?;
    if let Some(dir) = &opts.dump_tensors {
        dump_tensor(dir, path, &tensor)?;
    }
    let top = classifier.classify(&tensor, opts.top_k)?;
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    Ok(ImageResult { path: path.display().to_string(), top, latency_ms })
}

fn dump_tensor(dir: &Path, image: &Path, tensor: &[f32]) -> Result<()> {
    let name = image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
    let out = dir.join(format!("{name}.f32"));
    let bytes: Vec<u8> = tensor.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&out, bytes).map_err(|source| RuntimeError::WriteFile { path: out, source })
}

/// The human table: one row per image with its best class; the rest of the top-k after it.
pub fn table_header() -> String {
    format!("{:<48} {:>6}  {:<32} {:>6} {:>9}  {}", "PATH", "INDEX", "CLASS", "SCORE", "LATENCY", "NEXT")
}

pub fn table_row(r: &ImageResult) -> String {
    let (index, label, score) =
        r.top.first().map(|p| (p.index.to_string(), p.label.as_str(), p.score)).unwrap_or(("-".into(), "-", 0.0));
    let rest: Vec<String> = r.top.iter().skip(1).map(|p| format!("{} {:.3}", short(&p.label, 24), p.score)).collect();
    format!(
        "{:<48} {:>6}  {:<32} {:>6.3} {:>6.1} ms  {}",
        short(&r.path, 48),
        index,
        short(label, 32),
        score,
        r.latency_ms,
        rest.join(", ")
    )
}

/// Keeps the end of long paths and the start of long labels (ImageNet names run long).
fn short(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    if s.contains('/') {
        let tail: String = s.chars().skip(n - (max - 1)).collect();
        format!("…{tail}")
    } else {
        let head: String = s.chars().take(max - 1).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_searched_recursively_in_sorted_order_and_missing_paths_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("b");
        std::fs::create_dir(&sub).unwrap();
        std::fs::create_dir_all(dir.path().join("__MACOSX/b")).unwrap();
        for f in [
            "z.jpg",
            "a.PNG",
            "notes.txt",
            "b/c.jpeg",
            "._z.jpg",
            "b/.hidden.png",
            "__MACOSX/b/._c.jpeg",
            "b/IMG_1.HEIC",
        ] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        // Symlinks back up the tree: each folder is searched once, no endless recursion.
        std::os::unix::fs::symlink("..", sub.join("up")).unwrap();
        std::os::unix::fs::symlink(".", dir.path().join("here")).unwrap();
        let missing = dir.path().join("nope.jpg");
        let (files, skipped) = collect_images(&[dir.path().to_path_buf(), missing.clone()]);
        let names: Vec<String> =
            files.iter().map(|f| f.strip_prefix(dir.path()).unwrap().display().to_string()).collect();
        assert_eq!(names, ["a.PNG", "b/c.jpeg", "z.jpg"]);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped[0].path.ends_with("b/IMG_1.HEIC") && skipped[0].reason.contains("convert it to JPEG"));
        assert!(skipped[1].reason.contains("nope.jpg") && skipped[1].reason.contains("does not exist"));
    }

    #[test]
    fn long_names_are_shortened_keeping_the_informative_end() {
        assert_eq!(short("tiger cat", 32), "tiger cat");
        assert_eq!(short("a/b/c/d/e/f.jpg", 8), "…e/f.jpg");
        assert_eq!(short("beach wagon, station wagon", 6), "beach…");
    }
}
