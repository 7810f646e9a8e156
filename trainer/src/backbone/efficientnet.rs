//! EfficientNet-Lite0 and EfficientNet-B0: the same 16-block table (B0 at width/depth 1.0 in
//! efficientnet_pytorch's `efficientnet-b0` block strings equals Lite0's), different blocks:
//! - Lite0: BN (eps 1e-3) + ReLU6, no squeeze-excite (PROVENANCE.md, "BatchNorm NOT folded").
//! - B0: swish, squeeze-excite with ratio 0.25 of the block input channels; BatchNorm folded
//!   into the convs (every conv has a bias, as in shared/weights/efficientnet_b0.safetensors).
//!   A file in efficientnet_pytorch's naming with `_bn*` tensors is folded at load.
//!   Stem 32 and head 1280 channels in both (Lite fixes them; B0 has them at width 1.0).

use super::arch::Arch;
use super::conv_norm::{Activation, Norm};
use super::mbconv::{BlockOptions, BlockSpec};

const fn b(expand: usize, kernel: usize, stride: usize, in_ch: usize, out_ch: usize) -> BlockSpec {
    BlockSpec { expand, kernel, stride, in_ch, out_ch }
}

/// The block table of PROVENANCE.md ("EfficientNet-Lite0 ... Block table", 9 residual adds).
pub const BLOCKS: [BlockSpec; 16] = [
    b(1, 3, 1, 32, 16),
    b(6, 3, 2, 16, 24),
    b(6, 3, 1, 24, 24),
    b(6, 5, 2, 24, 40),
    b(6, 5, 1, 40, 40),
    b(6, 3, 2, 40, 80),
    b(6, 3, 1, 80, 80),
    b(6, 3, 1, 80, 80),
    b(6, 5, 1, 80, 112),
    b(6, 5, 1, 112, 112),
    b(6, 5, 1, 112, 112),
    b(6, 5, 2, 112, 192),
    b(6, 5, 1, 192, 192),
    b(6, 5, 1, 192, 192),
    b(6, 5, 1, 192, 192),
    b(6, 3, 1, 192, 320),
];

/// TF's BatchNorm epsilon of the Lite0 checkpoint (not PyTorch's 1e-5 default), also used to
/// fold a B0 file that carries BN tensors.
pub const BN_EPS: f64 = 1e-3;
const BN: Norm = Norm::BatchNorm { eps: BN_EPS };

pub const LITE0: Arch = Arch {
    stem_channels: 32,
    head_channels: 1280,
    blocks: &BLOCKS,
    options: BlockOptions { norm: BN, act: Activation::Relu6, se_ratio: None },
};

pub const B0: Arch = Arch {
    stem_channels: 32,
    head_channels: 1280,
    blocks: &BLOCKS,
    options: BlockOptions { norm: Norm::Folded, act: Activation::Swish, se_ratio: Some(0.25) },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_provenance_hidden_channels_and_residuals() {
        let hidden: Vec<usize> = BLOCKS.iter().map(BlockSpec::hidden).collect();
        assert_eq!(hidden, [32, 96, 144, 144, 240, 240, 480, 480, 480, 672, 672, 672, 1152, 1152, 1152, 1152]);
        assert_eq!(BLOCKS.iter().filter(|b| b.residual()).count(), 9);
        assert!(BLOCKS.windows(2).all(|w| w[0].out_ch == w[1].in_ch));
    }
}
