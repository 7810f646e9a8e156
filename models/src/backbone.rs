//! The backbone catalog: one name per backbone everywhere (`--backbone`, `--preset`, the
//! manifest), and the facts about the reference weights in `../shared/weights`
//! (see PROVENANCE.md there for where each number comes from).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ModelsError;
use crate::preprocess::{Preprocessing, ResizeFilter, ResizePolicy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Backbone {
    #[serde(rename = "mobilenetv2")]
    MobileNetV2,
    #[serde(rename = "efficientnet-lite0")]
    EfficientNetLite0,
    #[serde(rename = "efficientnet-b0")]
    EfficientNetB0,
}

/// Facts about a backbone's ImageNet weights as perch ships/expects them.
#[derive(Debug, Clone, Copy)]
pub struct BackboneSpec {
    pub backbone: Backbone,
    /// Reference ONNX file (ImageNet classifier) in the weights directory, if one exists.
    pub reference_onnx: Option<&'static str>,
    /// Safetensors weights file name in the weights directory.
    pub safetensors: &'static str,
    /// sha256 of the safetensors file we know (None: user-supplied, any content).
    pub safetensors_sha256: Option<&'static str>,
    /// Classes of the ImageNet head (MobileNetV2: 1001, background at 0).
    pub imagenet_classes: usize,
    /// Leading non-ImageNet classes in the output (MobileNetV2's `background`).
    pub label_offset: usize,
    /// Channels of the pooled feature vector the new head sees.
    pub feature_dim: usize,
    /// The pooled-embedding tensor of the reference ONNX file (the Flatten output feeding its
    /// ImageNet Gemm, `[1, feature_dim]`): what `edge-runtime enrol --preset` builds on. Read
    /// from the graphs in `../shared/weights` (GlobalAveragePool -> Flatten -> Gemm -> Identity).
    pub reference_features: &'static str,
    pub input_size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub filter: ResizeFilter,
    /// True when ImageNet weights for this backbone are available at all.
    pub has_imagenet_weights: bool,
}

impl Backbone {
    pub const ALL: [Backbone; 3] = [Backbone::MobileNetV2, Backbone::EfficientNetLite0, Backbone::EfficientNetB0];

    pub fn name(self) -> &'static str {
        match self {
            Backbone::MobileNetV2 => "mobilenetv2",
            Backbone::EfficientNetLite0 => "efficientnet-lite0",
            Backbone::EfficientNetB0 => "efficientnet-b0",
        }
    }

    pub fn spec(self) -> BackboneSpec {
        match self {
            // PROVENANCE.md: TF-slim inception preprocessing, (p - 127.5) / 127.5, bilinear,
            // central crop 87.5 %; 1001 logits with background at 0.
            Backbone::MobileNetV2 => BackboneSpec {
                backbone: self,
                reference_onnx: Some("mobilenet_v2_1.0_224.onnx"),
                safetensors: "mobilenet_v2_1.0_224.safetensors",
                safetensors_sha256: Some("2835c6caee79edef6de356753cf766a8dc0ddc0edd81fb5b6aeb6db514c9af81"),
                imagenet_classes: 1001,
                label_offset: 1,
                feature_dim: 1280,
                reference_features: "flatten_99",
                input_size: 224,
                mean: [127.5; 3],
                std: [127.5; 3],
                filter: ResizeFilter::Bilinear,
                has_imagenet_weights: true,
            },
            // PROVENANCE.md: tensorflow/tpu lite builder MEAN_RGB 127, STDDEV_RGB 128, bicubic,
            // central crop 87.5 %; 1000 logits.
            Backbone::EfficientNetLite0 => BackboneSpec {
                backbone: self,
                reference_onnx: Some("efficientnet_lite0.onnx"),
                safetensors: "efficientnet_lite0.safetensors",
                safetensors_sha256: Some("c0f07a24d31a974942c115aa171295e6d03ad2f1eab151ae480018c1db770337"),
                imagenet_classes: 1000,
                label_offset: 0,
                feature_dim: 1280,
                reference_features: "flatten_142",
                input_size: 224,
                mean: [127.0; 3],
                std: [128.0; 3],
                filter: ResizeFilter::Bicubic,
                has_imagenet_weights: true,
            },
            // PROVENANCE.md: Google's B0 (TF Hub via TF.js), BatchNorm folded, ImageNet
            // mean/std on 0-255, bicubic, central crop 87.5 %; 1000 logits.
            Backbone::EfficientNetB0 => BackboneSpec {
                backbone: self,
                reference_onnx: Some("efficientnet_b0.onnx"),
                safetensors: "efficientnet_b0.safetensors",
                safetensors_sha256: Some("4914a0a1ac9765e86c9c17d3f42de236bb91b8be4ac16a94b61f7ea49e70c501"),
                imagenet_classes: 1000,
                label_offset: 0,
                feature_dim: 1280,
                reference_features: "flatten_238",
                input_size: 224,
                mean: [123.675, 116.28, 103.53],
                std: [58.395, 57.12, 57.375],
                filter: ResizeFilter::Bicubic,
                has_imagenet_weights: true,
            },
        }
    }

    /// The preprocessing the backbone's weights were trained with.
    pub fn preprocessing(self) -> Preprocessing {
        let s = self.spec();
        Preprocessing {
            width: s.input_size,
            height: s.input_size,
            resize: ResizePolicy::CenterCrop { fraction: 0.875 },
            filter: s.filter,
            mean: s.mean,
            std: s.std,
        }
    }
}

impl fmt::Display for Backbone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backbone {
    type Err = ModelsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backbone::ALL.into_iter().find(|b| b.name() == s).ok_or_else(|| ModelsError::UnknownBackbone(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_parse_and_serde() {
        for b in Backbone::ALL {
            assert_eq!(b.name().parse::<Backbone>().unwrap(), b);
            let json = serde_json::to_string(&b).unwrap();
            assert_eq!(json, format!("\"{}\"", b.name()));
        }
        let err = "resnet50".parse::<Backbone>().unwrap_err().to_string();
        assert!(err.contains("resnet50") && err.contains("mobilenetv2"), "{err}");
    }
}
