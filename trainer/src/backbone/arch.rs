//! What distinguishes the backbones: stem and head widths, the block table and the block
//! options. The modules in `mobilenetv2.rs` / `efficientnet.rs` hold one `Arch` each.

use models::Backbone;

use super::mbconv::{BlockOptions, BlockSpec};

#[derive(Debug, Clone, Copy)]
pub struct Arch {
    pub stem_channels: usize,
    /// Channels of the head conv = the pooled feature vector.
    pub head_channels: usize,
    pub blocks: &'static [BlockSpec],
    pub options: BlockOptions,
}

impl Arch {
    pub fn of(kind: Backbone) -> &'static Arch {
        match kind {
            Backbone::MobileNetV2 => &super::mobilenetv2::ARCH,
            Backbone::EfficientNetLite0 => &super::efficientnet::LITE0,
            Backbone::EfficientNetB0 => &super::efficientnet::B0,
        }
    }

    /// Stem + one stage per block + head conv.
    pub fn num_stages(&self) -> usize {
        self.blocks.len() + 2
    }

    /// Stride of stage `i` (stem and stride-2 blocks halve the resolution).
    pub fn stage_stride(&self, i: usize) -> usize {
        match i {
            0 => 2,
            i if i <= self.blocks.len() => self.blocks[i - 1].stride,
            _ => 1,
        }
    }
}
