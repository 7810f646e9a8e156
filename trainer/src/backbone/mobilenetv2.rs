//! MobileNetV2 1.0 / 224 (TF-slim `MobilenetV2`, the coral quantization-aware checkpoint).
//! Weights have BatchNorm folded into conv weight + bias, so every conv carries a bias and
//! no BN runs (shared/weights/PROVENANCE.md, "BatchNorm FOLDED").

use super::arch::Arch;
use super::conv_norm::{Activation, Norm};
use super::mbconv::{BlockOptions, BlockSpec};

const fn b(expand: usize, stride: usize, in_ch: usize, out_ch: usize) -> BlockSpec {
    BlockSpec { expand, kernel: 3, stride, in_ch, out_ch }
}

/// The block table of PROVENANCE.md ("MobileNetV2 ... Block table", strides from the TFLite
/// op options; all depthwise kernels are 3x3; 10 residual adds).
pub const BLOCKS: [BlockSpec; 17] = [
    b(1, 1, 32, 16),
    b(6, 2, 16, 24),
    b(6, 1, 24, 24),
    b(6, 2, 24, 32),
    b(6, 1, 32, 32),
    b(6, 1, 32, 32),
    b(6, 2, 32, 64),
    b(6, 1, 64, 64),
    b(6, 1, 64, 64),
    b(6, 1, 64, 64),
    b(6, 1, 64, 96),
    b(6, 1, 96, 96),
    b(6, 1, 96, 96),
    b(6, 2, 96, 160),
    b(6, 1, 160, 160),
    b(6, 1, 160, 160),
    b(6, 1, 160, 320),
];

pub const ARCH: Arch = Arch {
    stem_channels: 32,
    head_channels: 1280,
    blocks: &BLOCKS,
    options: BlockOptions { norm: Norm::Folded, act: Activation::Relu6, se_ratio: None },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_provenance_hidden_channels_and_residuals() {
        let hidden: Vec<usize> = BLOCKS.iter().map(BlockSpec::hidden).collect();
        assert_eq!(hidden, [32, 96, 144, 144, 192, 192, 192, 384, 384, 384, 384, 576, 576, 576, 960, 960, 960]);
        assert_eq!(BLOCKS.iter().filter(|b| b.residual()).count(), 10);
        assert!(BLOCKS.windows(2).all(|w| w[0].out_ch == w[1].in_ch));
    }
}
