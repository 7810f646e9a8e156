//! The one layer every backbone is made of: convolution -> optional BatchNorm -> activation.
//!
//! Padding is TensorFlow "SAME" (all three backbones were trained in TF, see
//! shared/weights/PROVENANCE.md): burn's `PaddingConfig2d::Same` computes exactly TF's split
//! (the odd pixel goes to the bottom/right), so the burn forward works at any input size and
//! the exporter gets the same numbers from [`same_pads`].
//!
//! BatchNorm choice: burn 0.22's `BatchNorm` uses batch statistics whenever the input lives on
//! an autodiff device *and* its `training` flag is enabled. Pretrained backbones are fine-tuned
//! on small, class-skewed batches, where batch statistics would wreck the ImageNet running
//! statistics, so loaded backbones switch the flag off ([`ConvNormAct::set_norm_training`]):
//! the BN is then a frozen affine on running stats, while gamma/beta stay trainable params.
//! Randomly initialised backbones (training from scratch) keep real batch statistics.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation;
use burn::tensor::{Device, Tensor};

use crate::export::graph::{Constant, Op};

/// Pointwise non-linearity after a conv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Linear bottleneck (project convs).
    Identity,
    /// min(max(x, 0), 6): MobileNetV2 and EfficientNet-Lite.
    Relu6,
    /// x * sigmoid(x): EfficientNet-B0.
    Swish,
    /// Squeeze-excite gate.
    Sigmoid,
}

impl Activation {
    pub fn forward(self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Activation::Identity => x,
            Activation::Relu6 => activation::relu6(x),
            Activation::Swish => activation::silu(x),
            Activation::Sigmoid => activation::sigmoid(x),
        }
    }

    /// The graph op for this activation (None for identity).
    fn export_op(self, input: String, output: String) -> Option<Op> {
        match self {
            Activation::Identity => None,
            Activation::Relu6 => Some(Op::Relu6 { input, output }),
            Activation::Swish => Some(Op::Swish { input, output }),
            Activation::Sigmoid => Some(Op::Sigmoid { input, output }),
        }
    }
}

/// What follows the convolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Norm {
    /// BatchNorm already folded into the conv (MobileNetV2 weights): conv with bias, no BN.
    Folded,
    /// Conv without bias followed by BatchNorm with this epsilon.
    BatchNorm { eps: f64 },
}

/// Shape and options of one [`ConvNormAct`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConvSpec {
    pub in_ch: usize,
    pub out_ch: usize,
    pub kernel: usize,
    pub stride: usize,
    /// 1 for a normal conv, `in_ch` for a depthwise conv.
    pub groups: usize,
    pub norm: Norm,
    pub act: Activation,
}

#[derive(Module, Debug)]
pub struct ConvNormAct {
    pub conv: Conv2d,
    pub bn: Option<BatchNorm>,
    #[module(skip)]
    pub act: Activation,
}

/// TF "SAME" padding of one spatial dim: (before, after); the odd pixel goes after.
pub fn same_pad_1d(kernel: usize, stride: usize, size: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out.max(1) - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// TF "SAME" pads [top, left, bottom, right] for a `kernel` x `kernel` conv on `hw`.
pub fn same_pads(kernel: usize, stride: usize, hw: [usize; 2]) -> [usize; 4] {
    let (t, b) = same_pad_1d(kernel, stride, hw[0]);
    let (l, r) = same_pad_1d(kernel, stride, hw[1]);
    [t, l, b, r]
}

/// Output spatial size of a SAME conv.
pub fn same_out(stride: usize, hw: [usize; 2]) -> [usize; 2] {
    [hw[0].div_ceil(stride), hw[1].div_ceil(stride)]
}

impl ConvSpec {
    /// Randomly initialised layer (Kaiming-uniform conv, BN at identity).
    pub fn init(&self, device: &Device) -> ConvNormAct {
        let bn = match self.norm {
            Norm::Folded => None,
            Norm::BatchNorm { eps } => Some(
                // TF momentum 0.99 == burn/PyTorch momentum 0.01 (PROVENANCE.md).
                BatchNormConfig::new(self.out_ch).with_epsilon(eps).with_momentum(0.01).init(device),
            ),
        };
        let conv = Conv2dConfig::new([self.in_ch, self.out_ch], [self.kernel, self.kernel])
            .with_stride([self.stride, self.stride])
            .with_groups(self.groups)
            .with_padding(PaddingConfig2d::Same)
            .with_bias(bn.is_none())
            .init(device);
        ConvNormAct { conv, bn, act: self.act }
    }
}

impl ConvNormAct {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv.forward(x);
        let x = match &self.bn {
            Some(bn) => bn.forward(x),
            None => x,
        };
        self.act.forward(x)
    }

    /// Frozen (false: running statistics even on an autodiff device) or batch-statistics BN.
    pub fn set_norm_training(mut self, training: bool) -> Self {
        if let Some(bn) = self.bn.take() {
            let flag = bn.training.clone().with_value(training);
            self.bn = Some(BatchNorm { training: flag, ..bn });
        }
        self
    }

    pub fn kernel(&self) -> usize {
        self.conv.kernel_size[0]
    }

    pub fn stride(&self) -> usize {
        self.conv.stride[0]
    }

    /// Graph ops of this layer reading `input` (spatial size `hw`); the last op writes `name`.
    /// Returns the ops and the output spatial size.
    pub fn export_ops(&self, name: &str, input: &str, hw: [usize; 2]) -> (Vec<Op>, [usize; 2]) {
        let mut ops = Vec::with_capacity(3);
        let weight = self.conv.weight.val();
        let shape = weight.dims().to_vec();
        ops.push(Op::Conv {
            name: name.to_string(),
            input: input.to_string(),
            output: format!("{name}.conv"),
            weight: Constant { shape, values: to_vec(weight) },
            bias: self.conv.bias.as_ref().map(|b| {
                let b = b.val();
                Constant { shape: b.dims().to_vec(), values: to_vec(b) }
            }),
            stride: self.conv.stride,
            pads: same_pads(self.kernel(), self.stride(), hw),
            groups: self.conv.groups,
        });
        if let Some(bn) = &self.bn {
            ops.push(Op::BatchNorm {
                name: format!("{name}.bn"),
                input: format!("{name}.conv"),
                output: format!("{name}.bn"),
                gamma: to_vec(bn.gamma.val()),
                beta: to_vec(bn.beta.val()),
                mean: to_vec(bn.running_mean.value()),
                var: to_vec(bn.running_var.value()),
                eps: bn.epsilon as f32,
            });
        }
        let last = ops.last().map(|op| op.output().to_string()).unwrap_or_default();
        if let Some(op) = self.act.export_op(last, format!("{name}.act")) {
            ops.push(op);
        }
        rename_last_output(&mut ops, name);
        (ops, same_out(self.stride(), hw))
    }
}

/// Makes the last op of a layer write `name`, so layers chain by their logical names.
pub(crate) fn rename_last_output(ops: &mut [Op], name: &str) {
    if let Some(op) = ops.last_mut() {
        op.set_output(name);
    }
}

/// Host copy of a float tensor (export and weight saving only, never the hot path).
pub(crate) fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    // A float tensor always converts to f32 values; an empty vector would surface as a shape
    // mismatch in the exporter's checks rather than a panic here.
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_the_provenance_tables() {
        // PROVENANCE.md: stride-2 layers at 224 pad 0,0,1,1 (k=3) and 1,1,2,2 (k=5);
        // stride 1 is symmetric (k-1)/2.
        assert_eq!(same_pads(3, 2, [224, 224]), [0, 0, 1, 1]);
        assert_eq!(same_pads(5, 2, [56, 56]), [1, 1, 2, 2]);
        assert_eq!(same_pads(3, 1, [112, 112]), [1, 1, 1, 1]);
        assert_eq!(same_pads(5, 1, [14, 14]), [2, 2, 2, 2]);
        assert_eq!(same_pads(1, 1, [7, 7]), [0, 0, 0, 0]);
        // Odd sizes (other input sizes): TF puts the extra pixel at the end.
        assert_eq!(same_pads(3, 2, [7, 7]), [1, 1, 1, 1]);
        assert_eq!(same_out(2, [7, 7]), [4, 4]);
    }
}
