//! Shared by the `runtime_*` end-to-end tests: the built binary and the reference models.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A reference ImageNet model of `../shared/weights`, described by its preset.
pub struct Reference {
    pub file: &'static str,
    pub preset: &'static str,
}

pub const MOBILENET: Reference = Reference {
    file: "mobilenet_v2_1.0_224.onnx",
    preset: "mobilenetv2",
};
pub const LITE0: Reference = Reference {
    file: "efficientnet_lite0.onnx",
    preset: "efficientnet-lite0",
};

impl Reference {
    pub fn path(&self) -> PathBuf {
        perch::weights_dir().join(self.file)
    }

    /// `--model M --preset P --labels imagenet_labels.txt`
    pub fn args(&self) -> Vec<String> {
        let labels = perch::weights_dir().join("imagenet_labels.txt");
        vec![
            "--model".into(),
            s(&self.path()),
            "--preset".into(),
            self.preset.into(),
            "--labels".into(),
            s(&labels),
        ]
    }
}

pub fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// Runs the built `edge-runtime` with these arguments.
pub fn edge_runtime<S: AsRef<str>>(args: &[S]) -> Output {
    Command::new(perch::bin("edge-runtime"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("run edge-runtime")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `classify --json` lines as JSON values.
pub fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

/// The photos committed under tests/fixtures/photos.
pub fn photos_dir() -> PathBuf {
    perch::fixture("photos")
}

/// ImageNet-1k cat classes 281..=285 (tabby, tiger cat, Persian, Siamese, Egyptian cat).
pub fn is_cat(imagenet_index: i64) -> bool {
    (281..=285).contains(&imagenet_index)
}
