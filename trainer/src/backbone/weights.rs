//! Backbone weights in safetensors files: the ONE declaration of how perch's logical layer
//! names map to the tensor names in the files, shape checks with clear errors, loading into a
//! [`BackboneNet`] and saving one back in the same naming.
//!
//! Naming (shared/weights/PROVENANCE.md):
//! - MobileNetV2: `stem.conv`, `blocks.i.{expand,depthwise,project}`, `head.conv`, `classifier`;
//!   every conv has `.weight` + `.bias` (BN folded).
//! - EfficientNet-Lite0 / -B0 (efficientnet_pytorch, lukemelas): `_conv_stem` + `_bn0`,
//!   `_blocks.i._expand_conv` + `_bn0`, `_depthwise_conv` + `_bn1`, `_project_conv` + `_bn2`,
//!   B0 only `_blocks.i._se_reduce` / `_se_expand` (conv with bias), `_conv_head` + `_bn1`, `_fc`.
//!   BN tensors are `.weight` (gamma), `.bias` (beta), `.running_mean`, `.running_var`.
//!   B0's shared file has BN folded (every conv has `.bias`, no `_bn*`): perch's B0 is built
//!   folded, and a file with `_bn*` tensors is folded at load.
//!
//! Layouts: conv OIHW (burn's `Conv2d` layout too), classifier PyTorch Linear [out, in]
//! (burn stores [in, out]: transposed on load and on save).

use std::path::Path;

use burn::module::{Param, RunningState};
use burn::nn::{BatchNorm, Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use models::Backbone;
use safetensors::{Dtype, SafeTensors};

use super::BackboneNet;
use super::conv_norm::ConvNormAct;
use crate::error::TrainerError;
use crate::export::fold::{BatchNormParams, fold_conv_bn};
use crate::export::graph::Constant;

/// Logical leaf name -> (conv tensor prefix, BN tensor prefix) in the efficientnet_pytorch
/// naming. Block leaves get the `_blocks.i.` prefix.
const EFFICIENTNET_NAMES: [(&str, &str, &str); 8] = [
    ("stem", "_conv_stem", "_bn0"),
    ("expand", "_expand_conv", "_bn0"),
    ("depthwise", "_depthwise_conv", "_bn1"),
    ("se_reduce", "_se_reduce", ""),
    ("se_expand", "_se_expand", ""),
    ("project", "_project_conv", "_bn2"),
    ("head", "_conv_head", "_bn1"),
    ("classifier", "_fc", ""),
];

/// The same for MobileNetV2's file (no BN tensors: folded).
const MOBILENETV2_NAMES: [(&str, &str, &str); 6] = [
    ("stem", "stem.conv", ""),
    ("expand", "expand", ""),
    ("depthwise", "depthwise", ""),
    ("project", "project", ""),
    ("head", "head.conv", ""),
    ("classifier", "classifier", ""),
];

/// (conv prefix, BN prefix) of a logical layer such as `stem`, `blocks.3.depthwise`,
/// `classifier`.
pub fn tensor_prefixes(kind: Backbone, logical: &str) -> (String, String) {
    let (block, leaf) = match logical.rsplit_once('.') {
        Some((block, leaf)) => (Some(block), leaf),
        None => (None, logical),
    };
    let (table, block_prefix): (&[(&str, &str, &str)], String) = match kind {
        Backbone::MobileNetV2 => (&MOBILENETV2_NAMES, block.map(|b| format!("{b}.")).unwrap_or_default()),
        Backbone::EfficientNetLite0 | Backbone::EfficientNetB0 => {
            (&EFFICIENTNET_NAMES, block.map(|b| format!("_{b}.")).unwrap_or_default())
        }
    };
    let (conv, bn) =
        table.iter().find(|(name, _, _)| *name == leaf).map(|(_, conv, bn)| (*conv, *bn)).unwrap_or((leaf, ""));
    let bn = if bn.is_empty() { String::new() } else { format!("{block_prefix}{bn}") };
    (format!("{block_prefix}{conv}"), bn)
}

/// An example tensor name of the family, for error hints.
fn example_name(kind: Backbone) -> &'static str {
    match kind {
        Backbone::MobileNetV2 => "blocks.1.depthwise.weight",
        Backbone::EfficientNetLite0 => "_blocks.1._depthwise_conv.weight",
        Backbone::EfficientNetB0 => "_blocks.1._se_reduce.weight",
    }
}

pub use models::sha256_hex;

/// Reads a weights file; a missing file names the path and the flag/env to set.
pub fn read_file(path: &Path) -> Result<Vec<u8>, TrainerError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => TrainerError::WeightsMissing {
            path: path.to_path_buf(),
            file: path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
        },
        _ => TrainerError::Io { path: path.to_path_buf(), source },
    })
}

/// Typed, shape-checked access to the tensors of one file.
struct Reader<'a> {
    path: &'a Path,
    kind: Backbone,
    st: SafeTensors<'a>,
    device: &'a Device,
}

impl Reader<'_> {
    fn has(&self, name: &str) -> bool {
        self.st.tensor(name).is_ok()
    }

    /// The tensor `name` as f32 values; `expected` None accepts any shape.
    fn values(&self, name: &str, expected: Option<&[usize]>) -> Result<(Vec<f32>, Vec<usize>), TrainerError> {
        let view = self.st.tensor(name).map_err(|_| TrainerError::WeightsTensorMissing {
            path: self.path.to_path_buf(),
            backbone: self.kind.to_string(),
            tensor: name.to_string(),
            hint: format!(" (the file must use the {} naming, e.g. '{}')", self.kind, example_name(self.kind)),
        })?;
        let shape = view.shape().to_vec();
        if let Some(expected) = expected
            && expected != shape.as_slice()
        {
            return Err(TrainerError::WeightsShape {
                path: self.path.to_path_buf(),
                backbone: self.kind.to_string(),
                tensor: name.to_string(),
                expected: expected.to_vec(),
                found: shape,
            });
        }
        if view.dtype() != Dtype::F32 {
            return Err(TrainerError::WeightsFormat {
                path: self.path.to_path_buf(),
                reason: format!(
                    "tensor '{name}' is {:?}; perch reads float32 weights (convert the file to F32)",
                    view.dtype()
                ),
            });
        }
        let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok((values, shape))
    }

    fn tensor<const D: usize>(&self, name: &str, expected: [usize; D]) -> Result<Tensor<D>, TrainerError> {
        let (values, _) = self.values(name, Some(&expected))?;
        Ok(Tensor::from_data(TensorData::new(values, expected), self.device))
    }

    fn load_layer(&self, logical: &str, layer: &mut ConvNormAct) -> Result<(), TrainerError> {
        let (conv, bn_prefix) = tensor_prefixes(self.kind, logical);
        // A folded layer (conv with bias, no BN) read from a file that has BN tensors
        // (efficientnet_pytorch's B0 naming): fold them into the conv here.
        let bn_var = format!("{bn_prefix}.running_var");
        if layer.bn.is_none() && layer.conv.bias.is_some() && !bn_prefix.is_empty() && self.has(&bn_var) {
            return self.load_folding_bn(&conv, &bn_prefix, layer);
        }
        let weight = self.tensor(&format!("{conv}.weight"), layer.conv.weight.dims())?;
        layer.conv.weight = Param::from_tensor(weight);
        if let Some(bias) = &layer.conv.bias {
            let bias = self.tensor(&format!("{conv}.bias"), bias.dims())?;
            layer.conv.bias = Some(Param::from_tensor(bias));
        }
        if let Some(bn) = layer.bn.take() {
            let dims = bn.gamma.dims();
            let t = |suffix: &str| self.tensor(&format!("{bn_prefix}.{suffix}"), dims);
            layer.bn = Some(BatchNorm {
                gamma: Param::from_tensor(t("weight")?),
                beta: Param::from_tensor(t("bias")?),
                running_mean: RunningState::new(t("running_mean")?),
                running_var: RunningState::new(t("running_var")?),
                ..bn
            });
        }
        Ok(())
    }

    /// `conv.weight` (no bias) + BN (gamma, beta, mean, var; eps 1e-3) -> conv with bias:
    /// `w' = w * s`, `b' = beta - mean * s` with `s = gamma / sqrt(var + eps)` per out channel.
    fn load_folding_bn(&self, conv: &str, bn: &str, layer: &mut ConvNormAct) -> Result<(), TrainerError> {
        let dims = layer.conv.weight.dims();
        let (values, shape) = self.values(&format!("{conv}.weight"), Some(&dims))?;
        let out = dims[0];
        let get = |suffix: &str| self.values(&format!("{bn}.{suffix}"), Some(&[out])).map(|(v, _)| v);
        let (gamma, beta, mean, var) = (get("weight")?, get("bias")?, get("running_mean")?, get("running_var")?);
        let params = BatchNormParams {
            gamma: &gamma,
            beta: &beta,
            mean: &mean,
            var: &var,
            eps: super::efficientnet::BN_EPS as f32,
        };
        // The exporter's fold (f64), so a BN-carrying file loads exactly as it would export.
        let (w, b) = fold_conv_bn(&Constant { shape, values }, None, params);
        layer.conv.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w.values, dims), self.device));
        layer.conv.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(b.values, [out]), self.device)));
        Ok(())
    }

    /// The ImageNet classifier if the file has one ([classes, features], any class count).
    fn classifier(&self, features: usize) -> Result<Option<Linear>, TrainerError> {
        let (prefix, _) = tensor_prefixes(self.kind, "classifier");
        let weight_name = format!("{prefix}.weight");
        if !self.has(&weight_name) {
            return Ok(None);
        }
        let (values, shape) = self.values(&weight_name, None)?;
        let classes = shape.first().copied().unwrap_or(0);
        if shape.len() != 2 || shape[1] != features || classes == 0 {
            return Err(TrainerError::WeightsShape {
                path: self.path.to_path_buf(),
                backbone: self.kind.to_string(),
                tensor: weight_name,
                expected: vec![classes.max(1), features],
                found: shape,
            });
        }
        let bias = self.tensor(&format!("{prefix}.bias"), [classes])?;
        let mut linear = LinearConfig::new(features, classes).init(self.device);
        linear.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(transpose(&values, classes, features), [features, classes]),
            self.device,
        ));
        linear.bias = Some(Param::from_tensor(bias));
        Ok(Some(linear))
    }
}

/// Row-major [rows, cols] -> [cols, rows].
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

/// Loads `path` into `net` (whose structure defines the expected shapes); sets its classifier
/// (if the file has one). Returns the file's sha256.
pub(crate) fn load_into(net: &mut BackboneNet, path: &Path, device: &Device) -> Result<String, TrainerError> {
    let bytes = read_file(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| TrainerError::WeightsFormat {
        path: path.to_path_buf(),
        reason: format!("not a safetensors file ({e})"),
    })?;
    let reader = Reader { path, kind: net.kind(), st, device };
    for (logical, layer) in net.layers_mut() {
        reader.load_layer(&logical, layer)?;
    }
    net.classifier = reader.classifier(net.feature_dim())?;
    Ok(sha256_hex(&bytes))
}

/// Writes `net` as safetensors in its family's naming (the format `load_into` reads), atomically.
#[cfg(test)]
pub(crate) fn save(net: &BackboneNet, path: &Path) -> Result<(), TrainerError> {
    use super::conv_norm::to_vec;
    let kind = net.kind();
    let entry = |name: String, t: Tensor<1>| (name, t.dims().to_vec(), to_vec(t));
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut net = net.clone();
    for (logical, layer) in net.layers_mut() {
        let (conv, bn_prefix) = tensor_prefixes(kind, &logical);
        let w = layer.conv.weight.val();
        tensors.push((format!("{conv}.weight"), w.dims().to_vec(), to_vec(w)));
        if let Some(b) = &layer.conv.bias {
            tensors.push(entry(format!("{conv}.bias"), b.val()));
        }
        if let Some(bn) = &layer.bn {
            tensors.push(entry(format!("{bn_prefix}.weight"), bn.gamma.val()));
            tensors.push(entry(format!("{bn_prefix}.bias"), bn.beta.val()));
            tensors.push(entry(format!("{bn_prefix}.running_mean"), bn.running_mean.value()));
            tensors.push(entry(format!("{bn_prefix}.running_var"), bn.running_var.value()));
        }
    }
    if let Some(classifier) = &net.classifier {
        let (prefix, _) = tensor_prefixes(kind, "classifier");
        let w = classifier.weight.val();
        let [features, classes] = w.dims();
        tensors.push((format!("{prefix}.weight"), vec![classes, features], transpose(&to_vec(w), features, classes)));
        if let Some(b) = &classifier.bias {
            tensors.push(entry(format!("{prefix}.bias"), b.val()));
        }
    }
    let bytes_of = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.into_iter().map(|(name, shape, values)| (name, shape, bytes_of(&values))).collect();
    let views = raw
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data).map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|views| safetensors::serialize(views, None))
        .map_err(|e| TrainerError::WeightsFormat { path: path.to_path_buf(), reason: e.to_string() })?;
    common::write_atomic(path, &views).map_err(TrainerError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_provenance() {
        let lite = Backbone::EfficientNetLite0;
        assert_eq!(tensor_prefixes(lite, "stem"), ("_conv_stem".into(), "_bn0".into()));
        assert_eq!(
            tensor_prefixes(lite, "blocks.3.depthwise"),
            ("_blocks.3._depthwise_conv".into(), "_blocks.3._bn1".into())
        );
        assert_eq!(tensor_prefixes(lite, "head"), ("_conv_head".into(), "_bn1".into()));
        assert_eq!(tensor_prefixes(Backbone::EfficientNetB0, "blocks.0.se_reduce").0, "_blocks.0._se_reduce");
        let mnv2 = Backbone::MobileNetV2;
        assert_eq!(tensor_prefixes(mnv2, "stem").0, "stem.conv");
        assert_eq!(tensor_prefixes(mnv2, "blocks.16.project").0, "blocks.16.project");
        assert_eq!(tensor_prefixes(mnv2, "classifier").0, "classifier");
    }

    #[test]
    fn transpose_round_trips() {
        let v: Vec<f32> = (0..6).map(|x| x as f32).collect();
        let t = transpose(&v, 2, 3);
        assert_eq!(t, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(transpose(&t, 3, 2), v);
    }
}
