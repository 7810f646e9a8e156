//! Squeeze-and-excitation (EfficientNet-B0): per-channel gates computed from the block's
//! globally pooled activations, `x * sigmoid(expand(swish(reduce(mean(x)))))`.
//! Lite variants drop it (it is slow on edge accelerators), so it is optional in `MBConv`.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::conv_norm::{Activation, ConvNormAct, ConvSpec, Norm};
use crate::export::graph::Op;

#[derive(Module, Debug)]
pub struct SqueezeExcite {
    /// 1x1 conv with bias, hidden -> squeezed channels, swish.
    pub reduce: ConvNormAct,
    /// 1x1 conv with bias, squeezed -> hidden channels, sigmoid.
    pub expand: ConvNormAct,
}

impl SqueezeExcite {
    pub fn init(channels: usize, squeezed: usize, act: Activation, device: &Device) -> Self {
        let spec =
            |in_ch, out_ch, act| ConvSpec { in_ch, out_ch, kernel: 1, stride: 1, groups: 1, norm: Norm::Folded, act };
        SqueezeExcite {
            reduce: spec(channels, squeezed, act).init(device),
            expand: spec(squeezed, channels, Activation::Sigmoid).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let gate = x.clone().mean_dims(&[2, 3]);
        let gate = self.expand.forward(self.reduce.forward(gate));
        x.mul(gate)
    }

    /// Ops for the block `block` (e.g. "blocks.3"); reads `input`, writes "{block}.se".
    pub fn export_ops(&self, block: &str, input: &str) -> Vec<Op> {
        let pooled = format!("{block}.se.pool");
        let mut ops = vec![Op::GlobalAveragePool { input: input.to_string(), output: pooled.clone() }];
        let reduce = format!("{block}.se_reduce");
        let expand = format!("{block}.se_expand");
        ops.extend(self.reduce.export_ops(&reduce, &pooled, [1, 1]).0);
        ops.extend(self.expand.export_ops(&expand, &reduce, [1, 1]).0);
        ops.push(Op::Mul { a: input.to_string(), b: expand, output: format!("{block}.se") });
        ops
    }
}
