//! The new classification head trained on top of the frozen backbone: global-average-pooled
//! features -> dropout -> dense (logits). The pooling lives in the backbone
//! (`BackboneNet::features`/`pool`) so cached features are exactly what the head sees.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::error::TrainerError;
use crate::export::graph::{Constant, Op};

#[derive(Module, Debug)]
pub struct Head {
    dropout: Dropout,
    linear: Linear,
}

impl Head {
    /// A fresh head; `dropout` must be in [0, 1) (checked here so a bad flag is an error,
    /// not burn's panic).
    pub fn new(features: usize, classes: usize, dropout: f64, device: &Device) -> Result<Self, TrainerError> {
        if !(0.0..1.0).contains(&dropout) {
            return Err(TrainerError::InvalidArgument(format!("--dropout {dropout} must be in [0, 1), e.g. 0.2")));
        }
        Ok(Head {
            dropout: DropoutConfig::new(dropout).init(),
            linear: LinearConfig::new(features, classes).init(device),
        })
    }

    pub fn classes(&self) -> usize {
        self.linear.weight.dims()[1]
    }

    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        self.linear.forward(self.dropout.forward(features))
    }

    /// Gemm only: dropout is the identity at inference.
    pub fn export_ops(&self, input: &str, output: &str) -> Vec<Op> {
        // burn's Linear stores [in, out]; ONNX Gemm (transB) wants [out, in].
        let w = self.linear.weight.val().transpose();
        let [out_dim, in_dim] = w.dims();
        let weight = Constant { shape: vec![out_dim, in_dim], values: tensor_values(w) };
        let bias = match &self.linear.bias {
            Some(b) => tensor_values(b.val()),
            None => vec![0.0; out_dim],
        };
        vec![Op::Gemm {
            name: "head".into(),
            input: input.into(),
            output: output.into(),
            weight,
            bias: Constant { shape: vec![out_dim], values: bias },
        }]
    }
}

/// Row-major f32 values of a tensor.
pub fn tensor_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}
