//! The mobile inverted-residual block shared by all three backbones ("MBConv"):
//! [expand 1x1] -> depthwise kxk -> [squeeze-excite] -> project 1x1 (linear) -> [+ input].
//! MobileNetV2's "inverted residual" is this block with folded BN, ReLU6 and no SE;
//! EfficientNet-Lite0 adds BatchNorm; EfficientNet-B0 adds SE and swish.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::conv_norm::{Activation, ConvNormAct, ConvSpec, Norm};
use super::squeeze_excite::SqueezeExcite;
use crate::export::graph::Op;

/// One row of a backbone's block table (shared/weights/PROVENANCE.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpec {
    pub expand: usize,
    pub kernel: usize,
    pub stride: usize,
    pub in_ch: usize,
    pub out_ch: usize,
}

impl BlockSpec {
    pub const fn hidden(&self) -> usize {
        self.in_ch * self.expand
    }

    /// Residual add when the block keeps the shape.
    pub const fn residual(&self) -> bool {
        self.stride == 1 && self.in_ch == self.out_ch
    }
}

/// Family-wide options of the blocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockOptions {
    pub norm: Norm,
    pub act: Activation,
    /// Squeeze ratio relative to the block's *input* channels (efficientnet_pytorch:
    /// `max(1, int(input_filters * se_ratio))`), None for no SE.
    pub se_ratio: Option<f64>,
}

#[derive(Module, Debug)]
pub struct MBConv {
    pub expand: Option<ConvNormAct>,
    pub depthwise: ConvNormAct,
    pub se: Option<SqueezeExcite>,
    pub project: ConvNormAct,
    #[module(skip)]
    pub residual: bool,
}

impl MBConv {
    pub fn init(spec: &BlockSpec, opts: &BlockOptions, device: &Device) -> Self {
        let hidden = spec.hidden();
        let conv = |in_ch, out_ch, kernel, stride, groups, act| ConvSpec {
            in_ch,
            out_ch,
            kernel,
            stride,
            groups,
            norm: opts.norm,
            act,
        };
        let expand = (spec.expand != 1).then(|| conv(spec.in_ch, hidden, 1, 1, 1, opts.act).init(device));
        let depthwise = conv(hidden, hidden, spec.kernel, spec.stride, hidden, opts.act).init(device);
        let se = opts.se_ratio.map(|ratio| {
            let squeezed = ((spec.in_ch as f64 * ratio) as usize).max(1);
            SqueezeExcite::init(hidden, squeezed, opts.act, device)
        });
        let project = conv(hidden, spec.out_ch, 1, 1, 1, Activation::Identity).init(device);
        MBConv { expand, depthwise, se, project, residual: spec.residual() }
    }

    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let mut x = match &self.expand {
            Some(expand) => expand.forward(input.clone()),
            None => input.clone(),
        };
        x = self.depthwise.forward(x);
        if let Some(se) = &self.se {
            x = se.forward(x);
        }
        x = self.project.forward(x);
        if self.residual { x.add(input) } else { x }
    }

    /// Every conv layer of the block with its logical name suffix, in forward order.
    pub fn layers_mut(&mut self) -> Vec<(&'static str, &mut ConvNormAct)> {
        let mut layers = Vec::with_capacity(5);
        if let Some(expand) = &mut self.expand {
            layers.push(("expand", expand));
        }
        layers.push(("depthwise", &mut self.depthwise));
        if let Some(se) = &mut self.se {
            layers.push(("se_reduce", &mut se.reduce));
            layers.push(("se_expand", &mut se.expand));
        }
        layers.push(("project", &mut self.project));
        layers
    }

    /// Ops of block `name` ("blocks.3"); the last op writes `name`.
    pub fn export_ops(&self, name: &str, input: &str, hw: [usize; 2]) -> (Vec<Op>, [usize; 2]) {
        let mut ops = Vec::new();
        let mut x = input.to_string();
        if let Some(expand) = &self.expand {
            let out = format!("{name}.expand");
            ops.extend(expand.export_ops(&out, &x, hw).0);
            x = out;
        }
        let out = format!("{name}.depthwise");
        let (dw_ops, hw_out) = self.depthwise.export_ops(&out, &x, hw);
        ops.extend(dw_ops);
        x = out;
        if let Some(se) = &self.se {
            ops.extend(se.export_ops(name, &x));
            x = format!("{name}.se");
        }
        let project = format!("{name}.project");
        ops.extend(self.project.export_ops(&project, &x, hw_out).0);
        if self.residual {
            ops.push(Op::Add { a: project, b: input.to_string(), output: name.to_string() });
        } else {
            super::conv_norm::rename_last_output(&mut ops, name);
        }
        (ops, hw_out)
    }
}
