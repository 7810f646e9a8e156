//! Where a backbone's ImageNet weights file comes from, in order:
//! 1. `--weights-dir DIR` (the caller passes it), else
//! 2. `PERCH_WEIGHTS=DIR`, else
//! 3. the user cache (`PERCH_CACHE`, else `$XDG_CACHE_HOME/perch/weights`, else
//!    `~/.cache/perch/weights`), downloading the file there first if it is absent: from
//!    `PERCH_WEIGHTS_URL` (a template with `{file}`, or a base URL the file name is appended
//!    to; default [`DEFAULT_WEIGHTS_URL`]), sha256-checked against the catalog
//!    (`models::Backbone::spec`), written atomically.
//!
//! A directory given explicitly is never second-guessed: a missing file there is an error
//! naming the path, not a silent download.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use models::Backbone;

use super::weights::sha256_hex;
use crate::error::TrainerError;

/// Environment variable naming a weights directory (same as `--weights-dir`).
pub const WEIGHTS_DIR_ENV: &str = "PERCH_WEIGHTS";
/// Environment variable overriding the download URL template.
pub const WEIGHTS_URL_ENV: &str = "PERCH_WEIGHTS_URL";
/// Environment variable overriding the download cache directory.
pub const CACHE_DIR_ENV: &str = "PERCH_CACHE";
/// perch's release assets; `{file}` is replaced by the safetensors file name of the catalog.
pub const DEFAULT_WEIGHTS_URL: &str = "https://example.invalid/perch/releases/download/weights-v1/{file}";

/// The resolved settings (explicit so tests need not touch the process environment).
#[derive(Debug, Clone)]
pub struct WeightsSource {
    /// `--weights-dir` or `PERCH_WEIGHTS`.
    pub dir: Option<PathBuf>,
    pub url_template: String,
    /// None when no home/cache directory is known (then downloading is impossible).
    pub cache_dir: Option<PathBuf>,
}

impl WeightsSource {
    /// `weights_dir` (the flag) wins over the environment.
    pub fn from_env(weights_dir: Option<&Path>) -> Self {
        let env_path = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let cache_dir = env_path(CACHE_DIR_ENV)
            .or_else(|| env_path("XDG_CACHE_HOME").map(|d| d.join("perch/weights")))
            .or_else(|| env_path("HOME").map(|d| d.join(".cache/perch/weights")));
        WeightsSource {
            dir: weights_dir.map(Path::to_path_buf).or_else(|| env_path(WEIGHTS_DIR_ENV)),
            url_template: std::env::var(WEIGHTS_URL_ENV)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| DEFAULT_WEIGHTS_URL.to_string()),
            cache_dir,
        }
    }

    /// The download URL of `file`.
    pub fn url_for(&self, file: &str) -> String {
        if self.url_template.contains("{file}") {
            self.url_template.replace("{file}", file)
        } else {
            format!("{}/{file}", self.url_template.trim_end_matches('/'))
        }
    }

    /// Path of the weights file of `kind`, downloading it into the cache if needed.
    pub fn resolve(&self, kind: Backbone) -> Result<PathBuf, TrainerError> {
        let spec = kind.spec();
        let file = spec.safetensors;
        if let Some(dir) = &self.dir {
            let path = dir.join(file);
            return match path.is_file() {
                true => Ok(path),
                false => Err(TrainerError::WeightsMissing { path, file: file.to_string() }),
            };
        }
        let Some(expected) = spec.safetensors_sha256 else {
            // No published weights (efficientnet-b0): only a user-supplied file can work.
            return Err(TrainerError::WeightsMissing {
                path: PathBuf::from(file),
                file: format!("{file} ({})", super::B0_WEIGHTS_HELP),
            });
        };
        let url = self.url_for(file);
        let Some(cache) = &self.cache_dir else {
            return Err(TrainerError::WeightsDownload {
                file: file.to_string(),
                url,
                reason: format!("no cache directory (set {CACHE_DIR_ENV} or HOME)"),
            });
        };
        let path = cache.join(file);
        if path.is_file() {
            let bytes = std::fs::read(&path).map_err(TrainerError::io(&path))?;
            if sha256_hex(&bytes) == expected {
                return Ok(path);
            }
            // A stale or partial copy from elsewhere: fetch a good one over it.
            tracing::warn!("{} has the wrong sha256; downloading it again", path.display());
        }
        std::fs::create_dir_all(cache).map_err(TrainerError::io(cache))?;
        download(&url, &path, expected, file)?;
        Ok(path)
    }
}

/// Downloads `url` to `path` (temp file + rename) after checking its sha256.
fn download(url: &str, path: &Path, expected_sha256: &str, file: &str) -> Result<(), TrainerError> {
    let fail = |reason: String| TrainerError::WeightsDownload { file: file.to_string(), url: url.to_string(), reason };
    tracing::info!("downloading {url} -> {}", path.display());
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_global(Some(Duration::from_secs(600)))
            .build(),
    );
    let response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
    let mut bytes = Vec::new();
    response
        .into_body()
        .into_with_config()
        // The catalog's files are under 20 MB; refuse anything absurd.
        .limit(512 << 20)
        .reader()
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    let actual = sha256_hex(&bytes);
    if actual != expected_sha256 {
        return Err(fail(format!("downloaded file has sha256 {actual}, expected {expected_sha256}")));
    }
    common::write_atomic(path, &bytes).map_err(TrainerError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(dir: Option<PathBuf>, cache: &Path) -> WeightsSource {
        WeightsSource {
            dir,
            // Port 9 (discard) refuses connections at once: an offline machine, fast.
            url_template: "http://127.0.0.1:9/".into(),
            cache_dir: Some(cache.to_path_buf()),
        }
    }

    #[test]
    fn offline_download_fails_naming_file_url_and_flag() {
        let cache = tempfile::tempdir().unwrap();
        let err = source(None, cache.path()).resolve(Backbone::MobileNetV2).unwrap_err().to_string();
        assert!(err.contains("mobilenet_v2_1.0_224.safetensors"), "{err}");
        assert!(err.contains("http://127.0.0.1:9/mobilenet_v2_1.0_224.safetensors"), "{err}");
        assert!(err.contains("--weights-dir") && err.contains("PERCH_WEIGHTS"), "{err}");
        // Nothing half-written is left in the cache.
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
    }

    #[test]
    fn explicit_dir_without_the_file_is_an_error_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = source(Some(dir.path().to_path_buf()), dir.path())
            .resolve(Backbone::EfficientNetLite0)
            .unwrap_err()
            .to_string();
        let expected_path = dir.path().join("efficientnet_lite0.safetensors");
        assert!(err.contains(&expected_path.display().to_string()), "{err}");
        assert!(err.contains("--weights-dir") && err.contains("PERCH_WEIGHTS"), "{err}");
    }

    #[test]
    fn b0_is_fetched_and_checked_like_the_other_backbones() {
        // Its sha256 is in the catalog now: a missing file is downloaded (offline here: the
        // error names the file and the URL), not refused as "no published weights".
        let cache = tempfile::tempdir().unwrap();
        let err = source(None, cache.path()).resolve(Backbone::EfficientNetB0).unwrap_err().to_string();
        assert!(err.contains("efficientnet_b0.safetensors") && err.contains("127.0.0.1:9"), "{err}");
    }

    #[test]
    fn a_cached_file_with_a_wrong_checksum_is_not_used() {
        let cache = tempfile::tempdir().unwrap();
        std::fs::write(cache.path().join("efficientnet_lite0.safetensors"), b"not the weights").unwrap();
        let err = source(None, cache.path()).resolve(Backbone::EfficientNetLite0).unwrap_err().to_string();
        assert!(err.contains("127.0.0.1:9"), "{err}");
    }

    #[test]
    fn url_template_forms() {
        let s = |t: &str| WeightsSource { dir: None, url_template: t.into(), cache_dir: None };
        assert_eq!(s("https://h/x/{file}?dl=1").url_for("a.st"), "https://h/x/a.st?dl=1");
        assert_eq!(s("https://h/x/").url_for("a.st"), "https://h/x/a.st");
        assert_eq!(s(DEFAULT_WEIGHTS_URL).url_for("a.st"), DEFAULT_WEIGHTS_URL.replace("{file}", "a.st"));
    }
}
