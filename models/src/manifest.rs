//! The perch manifest: everything a runtime needs to use a model correctly, stored inside the
//! ONNX file as `metadata_props["perch.manifest"]` (JSON) so one .onnx is self-describing.
//! Labels travel here, never in a side file that can drift.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backbone::Backbone;
use crate::enrolment::{EnrolmentSummary, FeatureSpec};
use crate::error::{ModelsError, Result};
use crate::labels::Labels;
use crate::preprocess::Preprocessing;

/// The ONNX `metadata_props` key holding the manifest JSON.
pub const MANIFEST_KEY: &str = "perch.manifest";
/// Bumped when a field changes meaning; readers accept older versions.
pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    /// None for models perch did not build from a catalog backbone.
    pub backbone: Option<Backbone>,
    /// One label per model output, in output order.
    pub labels: Labels,
    pub input: InputSpec,
    pub preprocessing: Preprocessing,
    pub precision: PrecisionSpec,
    /// Named measurements, e.g. `val_accuracy`, `int8_weights_accuracy`, `int8_drop_points`.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    pub provenance: Provenance,
    /// The pooled-embedding output the head reads (`trainer export` writes it as a second graph
    /// output); absent in files exported before it existed, which still load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<FeatureSpec>,
    /// Classes learned on the device by `edge-runtime enrol` (counts; the embeddings are in the
    /// `perch.enrolment` table of the same file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrolment: Option<EnrolmentSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub channels: u32,
    /// Always "NCHW" for perch models.
    pub layout: String,
    /// Always "RGB" for perch models.
    pub color: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Int8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrecisionSpec {
    pub kind: Precision,
    pub calibration: Option<Calibration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub method: CalibrationMethod,
    pub images: usize,
    /// Quantized activation tensors.
    pub activations: usize,
    /// Quantized weight tensors (per-channel int8).
    pub weights: usize,
    /// Bits the weights use: 8 ([-127, 127]), or 7 ([-63, 63], `trainer export --reduce-range`:
    /// onnxruntime's u8 x s8 kernels on x86 CPUs without VNNI saturate with 8-bit weights).
    #[serde(default = "eight")]
    pub weight_bits: u8,
}

fn eight() -> u8 {
    8
}

/// How the int8 export chose its activation ranges (`trainer export --calibration-method`),
/// stored in the manifest as `"minmax"`, `"percentile"` or `"entropy"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CalibrationMethod {
    /// The observed range.
    Minmax,
    /// |x| clipped at its 99.99th percentile (the default: it clips the rare outliers minmax keeps).
    #[default]
    Percentile,
    /// The clipping threshold with the smallest KL divergence (TensorRT's method).
    Entropy,
}

impl CalibrationMethod {
    /// The manifest and command-line spelling.
    pub fn name(self) -> &'static str {
        match self {
            CalibrationMethod::Minmax => "minmax",
            CalibrationMethod::Percentile => "percentile",
            CalibrationMethod::Entropy => "entropy",
        }
    }
}

impl std::fmt::Display for CalibrationMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub perch_version: String,
    /// Where the model came from: `trainer export`, `preset`, a file name.
    pub source: String,
    /// sha256 over the sorted (relative path, file hash) list of the training data.
    pub dataset_fingerprint: Option<String>,
    /// sha256 of the backbone weights file the training started from.
    pub weights_sha256: Option<String>,
    /// Seconds since the Unix epoch.
    pub created_unix: u64,
}

impl InputSpec {
    pub fn nchw_rgb(name: &str, p: &Preprocessing) -> Self {
        InputSpec {
            name: name.to_string(),
            width: p.width,
            height: p.height,
            channels: 3,
            layout: "NCHW".into(),
            color: "RGB".into(),
        }
    }
}

impl Manifest {
    /// The manifest for one of the catalog's reference ImageNet models, given its labels
    /// (already including any offset classes such as MobileNetV2's background).
    pub fn for_preset(backbone: Backbone, labels: Labels, source: &str) -> Self {
        let preprocessing = backbone.preprocessing();
        Manifest {
            format: MANIFEST_FORMAT,
            name: format!("{backbone}-imagenet"),
            backbone: Some(backbone),
            labels,
            input: InputSpec::nchw_rgb("input", &preprocessing),
            preprocessing,
            precision: PrecisionSpec { kind: Precision::Fp32, calibration: None },
            metrics: BTreeMap::new(),
            provenance: Provenance {
                perch_version: crate::PERCH_VERSION.into(),
                source: source.into(),
                dataset_fingerprint: None,
                weights_sha256: None,
                created_unix: now_unix(),
            },
            features: None,
            enrolment: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("manifest serializes")
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let m: Manifest = serde_json::from_str(text).map_err(|e| ModelsError::Manifest(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Compact binary form (postcard) for embedding in streams and caches.
    pub fn to_postcard(&self) -> Vec<u8> {
        // postcard cannot encode the internally tagged `ResizePolicy`; JSON bytes inside keep
        // one schema for both forms.
        postcard::to_stdvec(&self.to_json()).expect("manifest serializes")
    }

    pub fn from_postcard(bytes: &[u8]) -> Result<Self> {
        let json: String = postcard::from_bytes(bytes).map_err(|e| ModelsError::Manifest(e.to_string()))?;
        Self::from_json(&json)
    }

    pub fn validate(&self) -> Result<()> {
        if self.format > MANIFEST_FORMAT {
            return Err(ModelsError::Manifest(format!(
                "format {} is newer than this perch understands ({MANIFEST_FORMAT}): upgrade perch",
                self.format
            )));
        }
        if self.labels.is_empty() {
            return Err(ModelsError::Manifest("no labels".into()));
        }
        let p = &self.preprocessing;
        if p.width == 0 || p.height == 0 || p.std.contains(&0.0) {
            return Err(ModelsError::Manifest("preprocessing has a zero size or a zero std".into()));
        }
        // Found by fuzzing (fuzz/regressions/manifest/): an infinite crop fraction validated,
        // then could not be written back (JSON has no inf) and broke every crop; a huge input
        // size would make every frame's tensor a multi-gigabyte allocation.
        let max = crate::preprocess::MAX_INPUT_SIDE;
        if p.width > max || p.height > max {
            return Err(ModelsError::Manifest(format!(
                "preprocessing input {}x{} is larger than {max}x{max}: not a classifier input size",
                p.width, p.height
            )));
        }
        if !p.mean.iter().chain(&p.std).all(|v| v.is_finite()) {
            return Err(ModelsError::Manifest("preprocessing mean/std are not all finite numbers".into()));
        }
        if let crate::ResizePolicy::CenterCrop { fraction } = p.resize
            && !(fraction > 0.0 && fraction <= 1.0)
        {
            return Err(ModelsError::Manifest(format!("center-crop fraction {fraction} is not in (0, 1]")));
        }
        if let Some((name, v)) = self.metrics.iter().find(|(_, v)| !v.is_finite()) {
            return Err(ModelsError::Manifest(format!("metric {name} is {v}, not a finite number")));
        }
        if let Some(e) = &self.enrolment
            && !e.temperature.is_finite()
        {
            return Err(ModelsError::Manifest(format!("enrolment temperature {} is not finite", e.temperature)));
        }
        Ok(())
    }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_json_and_postcard() {
        let labels = Labels(vec!["ants".into(), "bees".into()]);
        let mut m = Manifest::for_preset(Backbone::EfficientNetLite0, labels, "test");
        m.metrics.insert("val_accuracy".into(), 0.95);
        m.precision = PrecisionSpec {
            kind: Precision::Int8,
            calibration: Some(Calibration {
                weight_bits: 8,
                method: CalibrationMethod::Minmax,
                images: 200,
                activations: 60,
                weights: 50,
            }),
        };
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
        assert_eq!(Manifest::from_postcard(&m.to_postcard()).unwrap(), m);
        assert!(m.to_json().contains("\"backbone\":\"efficientnet-lite0\""));
        assert!(m.to_json().contains("\"method\":\"minmax\""), "the calibration method keeps its JSON spelling");
    }

    /// Values that parse but cannot describe a model (fuzzing found the infinite crop fraction:
    /// 1e39 is a valid JSON number that becomes inf as an f32).
    #[test]
    fn refuses_non_finite_and_oversized_preprocessing() {
        let m = Manifest::for_preset(Backbone::MobileNetV2, Labels(vec!["a".into()]), "t");
        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
            f(&mut v);
            v.to_string()
        };
        let bad = [
            (edit(&|v| v["preprocessing"]["resize"]["fraction"] = 1e39.into()), "center-crop fraction inf"),
            (edit(&|v| v["preprocessing"]["resize"]["fraction"] = 1.5.into()), "not in (0, 1]"),
            (edit(&|v| v["preprocessing"]["width"] = 65535.into()), "larger than 4096x4096"),
            (edit(&|v| v["preprocessing"]["std"][1] = (-1e39).into()), "mean/std"),
        ];
        assert!(Manifest::from_json(&edit(&|_| {})).is_ok());
        for (text, want) in bad {
            let err = Manifest::from_json(&text).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        // JSON cannot carry a NaN metric, but a writer could compute one (and write `null`).
        let mut nan = m.clone();
        nan.metrics.insert("int8_drop_points".into(), f64::NAN);
        assert!(nan.validate().unwrap_err().to_string().contains("metric int8_drop_points is NaN"));
    }

    #[test]
    fn calibration_methods_keep_their_json_spelling() {
        for m in [CalibrationMethod::Minmax, CalibrationMethod::Percentile, CalibrationMethod::Entropy] {
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{}\"", m.name()));
            assert_eq!(serde_json::from_str::<CalibrationMethod>(&format!("\"{m}\"")).unwrap(), m);
        }
        assert_eq!(CalibrationMethod::default(), CalibrationMethod::Percentile);
        assert!(serde_json::from_str::<CalibrationMethod>("\"kl\"").is_err());
    }

    #[test]
    fn invalid_manifests_are_rejected_with_a_reason() {
        let mut m = Manifest::for_preset(Backbone::MobileNetV2, Labels(vec!["a".into()]), "test");
        m.format = 99;
        assert!(Manifest::from_json(&m.to_json()).unwrap_err().to_string().contains("upgrade"));
        assert!(Manifest::from_json("{\"format\":1}").is_err());
    }
}
