//! perch's edge runtime: inference on CPU-only devices (tract, or onnxruntime when installed). The `edge-runtime` binary is a
//! thin clap layer over this library.

pub mod bench;
pub mod classify;
pub mod collect;
pub mod device;
pub mod devices;
pub mod engine;
pub mod enrol;
pub mod error;
pub mod int8;
pub mod live;
pub mod model;
pub mod mqtt;
pub mod pipeline;
pub mod reload;
pub mod report;
pub mod sink;
pub mod source;
pub mod stats;

pub use engine::Engine;
pub use error::RuntimeError;
pub use int8::Int8Mode;
pub use model::{Classifier, Execution, LoadOptions};
pub use models::{ImageRecord, Prediction};
