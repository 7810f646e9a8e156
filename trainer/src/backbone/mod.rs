//! ImageNet backbones in burn: MobileNetV2 1.0/224, EfficientNet-Lite0 and EfficientNet-B0,
//! with weight loading from the reference safetensors files (shared/weights/PROVENANCE.md),
//! a stage-wise forward (frozen lower stages, fine-tuned top stages) and a description of
//! themselves as export graph ops.
//!
//! Stages are a flat list: stem, every MBConv block, head conv (MobileNetV2: 19, Lite0/B0: 18).
//! The pooled head output is the 1280-wide feature vector the new classifier head sees.

pub mod arch;
pub mod conv_norm;
pub mod download;
pub mod efficientnet;
pub mod mbconv;
pub mod mobilenetv2;
pub mod squeeze_excite;
pub mod weights;

use std::ops::Range;
use std::path::Path;

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use models::Backbone;

use crate::error::TrainerError;
use crate::export::graph::Op;
use arch::Arch;
use conv_norm::{ConvNormAct, ConvSpec, same_out};
use mbconv::MBConv;

pub use download::{DEFAULT_WEIGHTS_URL, WEIGHTS_DIR_ENV, WEIGHTS_URL_ENV, WeightsSource};

/// `--help` text for where efficientnet-b0 weights come from.
pub const B0_WEIGHTS_HELP: &str = "efficientnet-b0's ImageNet weights are efficientnet_b0.safetensors of the \
shared weights (BatchNorm folded: every conv has a bias) in --weights-dir (or PERCH_WEIGHTS); your own float32 \
file (--weights) may use the same naming or efficientnet_pytorch's (lukemelas) with BatchNorm tensors, folded at \
load: _conv_stem.weight, _bn0.*, _blocks.N._expand_conv.weight, _blocks.N._bn0.*, \
_blocks.N._depthwise_conv.weight, _blocks.N._bn1.*, _blocks.N._se_reduce.{weight,bias}, \
_blocks.N._se_expand.{weight,bias}, _blocks.N._project_conv.weight, _blocks.N._bn2.*, _conv_head.weight, _bn1.*, \
optional _fc.{weight,bias} (BN tensors: weight, bias, running_mean, running_var; eps 1e-3)";

/// A backbone network (opaque to the rest of the trainer: use the methods).
#[derive(Module, Debug)]
pub struct BackboneNet {
    stem: ConvNormAct,
    blocks: Vec<MBConv>,
    head: ConvNormAct,
    /// The ImageNet classifier of the weights file, kept for parity checks only.
    classifier: Option<Linear>,
    #[module(skip)]
    kind: Backbone,
    #[module(skip)]
    weights_sha256: Option<String>,
}

impl BackboneNet {
    /// Random initialisation (training from scratch): BatchNorm uses batch statistics when
    /// training on an autodiff device. No ImageNet classifier.
    pub fn new(kind: Backbone, device: &Device) -> Self {
        let arch = Arch::of(kind);
        let opts = arch.options;
        let conv = |in_ch, out_ch, kernel, stride| ConvSpec {
            in_ch,
            out_ch,
            kernel,
            stride,
            groups: 1,
            norm: opts.norm,
            act: opts.act,
        };
        let last = arch.blocks.last().map_or(arch.stem_channels, |b| b.out_ch);
        BackboneNet {
            stem: conv(3, arch.stem_channels, 3, 2).init(device),
            blocks: arch.blocks.iter().map(|b| MBConv::init(b, &opts, device)).collect(),
            head: conv(last, arch.head_channels, 1, 1).init(device),
            classifier: None,
            kind,
            weights_sha256: None,
        }
    }

    /// ImageNet weights: `weights_dir`, else `PERCH_WEIGHTS`, else the download cache
    /// (see [`download`]). BatchNorm is frozen (running statistics) for fine-tuning.
    pub fn load(kind: Backbone, weights_dir: Option<&Path>, device: &Device) -> Result<Self, TrainerError> {
        let path = WeightsSource::from_env(weights_dir).resolve(kind)?;
        Self::load_file(kind, &path, device)
    }

    /// Weights from an explicit safetensors file in the family's naming (see [`weights`] and
    /// [`B0_WEIGHTS_HELP`]); shapes are checked tensor by tensor.
    pub fn load_file(kind: Backbone, file: &Path, device: &Device) -> Result<Self, TrainerError> {
        let mut net = Self::new(kind, device);
        let sha = weights::load_into(&mut net, file, device)?;
        net.weights_sha256 = Some(sha);
        Ok(net.with_frozen_batchnorm(true))
    }

    /// Writes the backbone (and its ImageNet classifier, if any) as safetensors in the
    /// family's naming, readable by [`BackboneNet::load_file`] (tests make weights files with it).
    #[cfg(test)]
    pub(crate) fn save_weights(&self, file: &Path) -> Result<(), TrainerError> {
        weights::save(self, file)
    }

    /// `true`: BatchNorm always uses running statistics (a frozen affine; gamma/beta still
    /// train). `false`: batch statistics while training on an autodiff device.
    pub fn with_frozen_batchnorm(mut self, frozen: bool) -> Self {
        let training = !frozen;
        self.stem = self.stem.set_norm_training(training);
        self.head = self.head.set_norm_training(training);
        self.blocks = self
            .blocks
            .into_iter()
            .map(|b| MBConv {
                expand: b.expand.map(|l| l.set_norm_training(training)),
                depthwise: b.depthwise.set_norm_training(training),
                project: b.project.set_norm_training(training),
                ..b
            })
            .collect();
        self
    }

    /// Drops the ImageNet classifier (it is not part of a trained perch model).
    pub fn without_imagenet_classifier(mut self) -> Self {
        self.classifier = None;
        self
    }

    pub fn kind(&self) -> Backbone {
        self.kind
    }

    pub fn num_stages(&self) -> usize {
        self.blocks.len() + 2
    }

    /// Width of [`BackboneNet::features`].
    pub fn feature_dim(&self) -> usize {
        self.head.conv.weight.dims()[0]
    }

    /// Runs stages `stages` (clamped to the stage count) on `x`.
    pub fn forward_stages(&self, x: Tensor<4>, stages: Range<usize>) -> Tensor<4> {
        let n = self.num_stages();
        (stages.start.min(n)..stages.end.min(n)).fold(x, |x, i| match i {
            0 => self.stem.forward(x),
            i if i == n - 1 => self.head.forward(x),
            i => self.blocks[i - 1].forward(x),
        })
    }

    /// All stages + global average pool: [N, 3, H, W] -> [N, 1280].
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        Self::pool(self.forward_stages(x, 0..self.num_stages()))
    }

    /// Global average pool [N, C, H, W] -> [N, C].
    pub fn pool(x: Tensor<4>) -> Tensor<2> {
        let [n, c, _, _] = x.dims();
        x.mean_dims(&[2, 3]).reshape([n, c])
    }

    /// Logits of the weights file's ImageNet classifier (MobileNetV2: 1001 with background
    /// at 0; Lite0: 1000).
    pub fn imagenet_logits(&self, x: Tensor<4>) -> Result<Tensor<2>, TrainerError> {
        let classifier = self
            .classifier
            .as_ref()
            .ok_or_else(|| TrainerError::NoImagenetClassifier { backbone: self.kind.to_string() })?;
        Ok(classifier.forward(self.features(x)))
    }

    /// sha256 of the weights file this backbone was loaded from.
    pub fn weights_sha256(&self) -> Option<String> {
        self.weights_sha256.clone()
    }

    /// Logical name of stage `i`: "stem", "blocks.K", "head" (also the export tensor names).
    pub fn stage_name(&self, i: usize) -> String {
        match i {
            0 => "stem".into(),
            i if i + 1 == self.num_stages() => "head".into(),
            i => format!("blocks.{}", i - 1),
        }
    }

    /// Graph ops of `stages` reading tensor `input`, for a network input of size `hw` (TF
    /// "SAME" pads depend on it). Returns the ops and the name of the output tensor (`input`
    /// for an empty range).
    pub fn export_ops(&self, stages: Range<usize>, input: &str, hw: [usize; 2]) -> (Vec<Op>, String) {
        let n = self.num_stages();
        let arch = Arch::of(self.kind);
        let stages = stages.start.min(n)..stages.end.min(n);
        let mut hw = (0..stages.start).fold(hw, |hw, i| same_out(arch.stage_stride(i), hw));
        let mut ops = Vec::new();
        let mut x = input.to_string();
        for i in stages {
            let name = self.stage_name(i);
            let (stage_ops, out_hw) = match i {
                0 => self.stem.export_ops(&name, &x, hw),
                i if i == n - 1 => self.head.export_ops(&name, &x, hw),
                i => self.blocks[i - 1].export_ops(&name, &x, hw),
            };
            ops.extend(stage_ops);
            hw = out_hw;
            x = name;
        }
        (ops, x)
    }

    /// Every conv layer with its logical name ("stem", "blocks.3.depthwise", "head").
    pub(crate) fn layers_mut(&mut self) -> Vec<(String, &mut ConvNormAct)> {
        let mut layers = vec![("stem".to_string(), &mut self.stem)];
        for (i, block) in self.blocks.iter_mut().enumerate() {
            layers.extend(block.layers_mut().into_iter().map(|(leaf, l)| (format!("blocks.{i}.{leaf}"), l)));
        }
        layers.push(("head".to_string(), &mut self.head));
        layers
    }
}

#[cfg(test)]
mod tests;
