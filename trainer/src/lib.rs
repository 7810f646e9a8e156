//! perch's trainer: transfer learning with burn (frozen ImageNet backbone, cached features,
//! new head, optional fine-tuning of the top layers) and ONNX export. The `trainer` binary is
//! a thin clap layer (`src/cli.rs`) over this library, which takes plain option structs.

pub mod augment;
pub mod backbone;
pub mod cache;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod eval;
pub mod export;
pub mod fit;
pub mod frozen;
pub mod head;
pub mod history;
pub mod metrics;
pub mod plots;
pub mod predict;
pub mod run;
