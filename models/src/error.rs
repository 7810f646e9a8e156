use std::path::PathBuf;

/// Errors of the `models` crate. Messages name the file and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is empty (0 bytes)")]
    EmptyFile { path: PathBuf },
    #[error("cannot decode image {path}: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error(
        "image {path} is {width}x{height}, larger than the limit of {max_pixels} pixels (raise it with --max-pixels)"
    )]
    TooLarge { path: PathBuf, width: u32, height: u32, max_pixels: u64 },
    #[error("image {path} has a zero dimension ({width}x{height})")]
    ZeroSize { path: PathBuf, width: u32, height: u32 },
    #[error("resize failed: {0}")]
    Resize(String),
    #[error("unknown backbone '{0}': expected one of mobilenetv2, efficientnet-lite0, efficientnet-b0")]
    UnknownBackbone(String),
    #[error("labels file {path} has no labels")]
    NoLabels { path: PathBuf },
    #[error("invalid perch manifest: {0}")]
    Manifest(String),
}

pub type Result<T, E = ModelsError> = std::result::Result<T, E>;
