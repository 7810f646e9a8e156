//! perch's shared definitions: the model manifest that travels inside every exported ONNX
//! file, the backbone catalog, labels, and the ONE preprocessing implementation that the
//! trainer, the exporter's calibration, evaluation and the edge runtime all call.
//!
//! This crate never depends on tract or burn: both halves of perch can use it.

pub mod backbone;
pub mod enrolment;
pub mod error;
pub mod labels;
pub mod manifest;
pub mod preprocess;
pub mod record;

pub use backbone::Backbone;
pub use enrolment::{EnrolmentTable, FeatureSpec};
pub use error::ModelsError;
pub use labels::Labels;
pub use manifest::{MANIFEST_KEY, Manifest};
pub use preprocess::{ImageLimits, Preprocessing, Preprocessor, ResizeFilter, ResizePolicy};
pub use record::{ImageRecord, Prediction};

/// sha256 of some bytes (a model file, weights), lowercase hex: the identity perch records for
/// files (manifest provenance, `model_sha256` in the edge runtime's records).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

/// The perch version written into manifests and reports.
pub const PERCH_VERSION: &str = env!("CARGO_PKG_VERSION");
