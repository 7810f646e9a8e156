//! A framework-neutral description of an inference graph, made from the trained burn model
//! (backbone + head) and written to ONNX by `export::onnx`. Backbones describe themselves
//! in these ops (`BackboneNet::export_ops`); the exporter folds BatchNorm into the
//! preceding Conv, drops training-only ops, and quantizes for int8.
//!
//! Tensors are named by strings; every op reads named inputs and writes one named output.
//! Layouts follow ONNX: activations NCHW, conv weights OIHW, Gemm weights [out, in].

/// A constant tensor (row-major f32).
#[derive(Debug, Clone, PartialEq)]
pub struct Constant {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// 2-D convolution. `pads` are [top, left, bottom, right] (TF "SAME" is asymmetric).
    Conv {
        name: String,
        input: String,
        output: String,
        /// [out, in / groups, kh, kw]
        weight: Constant,
        bias: Option<Constant>,
        stride: [usize; 2],
        pads: [usize; 4],
        groups: usize,
    },
    /// Inference-mode batch normalization over channels (axis 1).
    BatchNorm {
        name: String,
        input: String,
        output: String,
        gamma: Vec<f32>,
        beta: Vec<f32>,
        mean: Vec<f32>,
        var: Vec<f32>,
        eps: f32,
    },
    /// min(max(x, 0), 6)
    Relu6 {
        input: String,
        output: String,
    },
    Relu {
        input: String,
        output: String,
    },
    Sigmoid {
        input: String,
        output: String,
    },
    /// x * sigmoid(x) (a.k.a. SiLU).
    Swish {
        input: String,
        output: String,
    },
    /// Element-wise sum (residual connections).
    Add {
        a: String,
        b: String,
        output: String,
    },
    /// Element-wise product with broadcasting (squeeze-excite scaling: [N,C,H,W] * [N,C,1,1]).
    Mul {
        a: String,
        b: String,
        output: String,
    },
    /// [N,C,H,W] -> [N,C,1,1]
    GlobalAveragePool {
        input: String,
        output: String,
    },
    /// [N,C,1,1] -> [N,C]
    Flatten {
        input: String,
        output: String,
    },
    /// y = x W^T + b; `weight` is [out, in] (PyTorch Linear layout).
    Gemm {
        name: String,
        input: String,
        output: String,
        weight: Constant,
        bias: Constant,
    },
}

/// An ordered list of ops (topologically sorted) from `input` to `output`.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub input: String,
    /// [channels, height, width] of one input image; batch is the leading dim.
    pub input_chw: [usize; 3],
    pub output: String,
    pub ops: Vec<Op>,
}

/// The `output` field of any op, as `&String` or `&mut String` depending on how `$op` is
/// borrowed: the one match over every variant's output.
macro_rules! output_field {
    ($op:expr) => {
        match $op {
            Op::Conv { output, .. }
            | Op::BatchNorm { output, .. }
            | Op::Relu6 { output, .. }
            | Op::Relu { output, .. }
            | Op::Sigmoid { output, .. }
            | Op::Swish { output, .. }
            | Op::Add { output, .. }
            | Op::Mul { output, .. }
            | Op::GlobalAveragePool { output, .. }
            | Op::Flatten { output, .. }
            | Op::Gemm { output, .. } => output,
        }
    };
}

impl Op {
    /// The tensor this op writes.
    pub fn output(&self) -> &str {
        output_field!(self)
    }

    /// Renames the tensor this op writes (layers chain by their logical names).
    pub fn set_output(&mut self, name: &str) {
        *output_field!(self) = name.to_string();
    }

    /// The tensors this op reads.
    pub fn inputs(&self) -> Vec<&str> {
        match self {
            Op::Add { a, b, .. } | Op::Mul { a, b, .. } => vec![a, b],
            Op::Conv { input, .. }
            | Op::BatchNorm { input, .. }
            | Op::Relu6 { input, .. }
            | Op::Relu { input, .. }
            | Op::Sigmoid { input, .. }
            | Op::Swish { input, .. }
            | Op::GlobalAveragePool { input, .. }
            | Op::Flatten { input, .. }
            | Op::Gemm { input, .. } => vec![input],
        }
    }
}
