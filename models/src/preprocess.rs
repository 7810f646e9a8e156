//! The ONE preprocessing definition. Training, export calibration, evaluation and the edge
//! runtime all call [`Preprocessor`]; the [`Preprocessing`] it follows is recorded in the
//! manifest. A mismatch here silently costs accuracy on the device, so there is no second copy.
//!
//! Pipeline: decode (image crate) -> RGB8 (grayscale, alpha and 16-bit are converted) ->
//! crop + resize in one pass (fast_image_resize, PIL-compatible convolution) -> NCHW f32
//! `(pixel - mean) / std`.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use fast_image_resize::images::{Image as FirImage, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

use crate::error::{ModelsError, Result};

/// How the source image is mapped onto the model input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "kebab-case")]
pub enum ResizePolicy {
    /// Square central crop of `fraction` of the shorter side (TF/slim eval style, 0.875),
    /// resized to the input size.
    CenterCrop { fraction: f32 },
    /// The whole image resized to the input size, aspect ratio not kept.
    Stretch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeFilter {
    /// PIL `BILINEAR` (antialiased triangle filter).
    Bilinear,
    /// PIL `BICUBIC` (Catmull-Rom, a = -0.5).
    Bicubic,
}

/// What the model expects as input. Layout is always NCHW, channel order RGB, pixels 0..255
/// before normalization: `x = (pixel - mean[c]) / std[c]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    pub width: u32,
    pub height: u32,
    pub resize: ResizePolicy,
    pub filter: ResizeFilter,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Preprocessing {
    /// Values per image (3 x H x W).
    pub fn tensor_len(&self) -> usize {
        3 * self.width as usize * self.height as usize
    }

    /// The source rectangle (left, top, width, height) this policy takes from a `w`x`h` image.
    pub fn source_box(&self, w: u32, h: u32) -> (f64, f64, f64, f64) {
        let (w, h) = (w as f64, h as f64);
        match self.resize {
            ResizePolicy::CenterCrop { fraction } => {
                // Same arithmetic as PIL's `resize(box=...)` in shared/weights/tools/preprocess.py.
                let c = w.min(h) * fraction as f64;
                ((w - c) / 2.0, (h - c) / 2.0, c, c)
            }
            ResizePolicy::Stretch => (0.0, 0.0, w, h),
        }
    }
}

/// Guards against decompression bombs and absurd inputs.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        // 100 megapixels: a 12000x8000 panorama fits, a 50000x50000 bomb does not.
        ImageLimits { max_pixels: 100_000_000 }
    }
}

/// Reads and decodes an image file. Empty, truncated, non-image and oversized files are errors.
pub fn load_image(path: &Path, limits: ImageLimits) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|source| ModelsError::Io { path: path.to_path_buf(), source })?;
    decode_image(&bytes, path, limits)
}

/// Decodes image bytes; `path` is only used in messages.
pub fn decode_image(bytes: &[u8], path: &Path, limits: ImageLimits) -> Result<DynamicImage> {
    let path_buf = || PathBuf::from(path);
    if bytes.is_empty() {
        return Err(ModelsError::EmptyFile { path: path_buf() });
    }
    let decode_err = |e: &dyn std::fmt::Display| ModelsError::Decode { path: path_buf(), reason: e.to_string() };
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| decode_err(&e))?;
    if reader.format().is_none() {
        return Err(ModelsError::Decode { path: path_buf(), reason: "not a recognised image format".into() });
    }
    // Check the header's dimensions before allocating the pixels.
    let (width, height) = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(&e))?
        .into_dimensions()
        .map_err(|e| decode_err(&e))?;
    if width == 0 || height == 0 {
        return Err(ModelsError::ZeroSize { path: path_buf(), width, height });
    }
    if width as u64 * height as u64 > limits.max_pixels {
        return Err(ModelsError::TooLarge { path: path_buf(), width, height, max_pixels: limits.max_pixels });
    }
    let mut reader = reader;
    let mut img_limits = image::Limits::default();
    // 16-bit RGBA at the pixel limit, plus slack for the decoder.
    img_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(img_limits);
    reader.decode().map_err(|e| decode_err(&e))
}

/// Converts any decoded image to 8-bit RGB: grayscale is replicated, alpha is dropped,
/// 16-bit and float are scaled to 0..255.
pub fn to_rgb8(img: DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}

/// Reusable preprocessing state (resizer buffers). One per thread.
pub struct Preprocessor {
    spec: Preprocessing,
    resizer: Resizer,
}

impl Preprocessor {
    pub fn new(spec: Preprocessing) -> Self {
        Preprocessor { spec, resizer: Resizer::new() }
    }

    pub fn spec(&self) -> &Preprocessing {
        &self.spec
    }

    /// Crops and resizes to the model input size, following the policy.
    pub fn resize_rgb(&mut self, img: &RgbImage) -> Result<RgbImage> {
        let sbox = self.spec.source_box(img.width(), img.height());
        self.resize_box(img, sbox)
    }

    /// Resizes an explicit source rectangle (left, top, width, height) to the input size;
    /// used by training augmentation (random crops/zoom) so it shares the resampler.
    pub fn resize_box(&mut self, img: &RgbImage, (left, top, w, h): (f64, f64, f64, f64)) -> Result<RgbImage> {
        let src = ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3)
            .map_err(|e| ModelsError::Resize(e.to_string()))?;
        let mut dst = FirImage::new(self.spec.width, self.spec.height, PixelType::U8x3);
        let filter = match self.spec.filter {
            ResizeFilter::Bilinear => FilterType::Bilinear,
            ResizeFilter::Bicubic => FilterType::CatmullRom,
        };
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter)).crop(left, top, w, h);
        self.resizer.resize(&src, &mut dst, &options).map_err(|e| ModelsError::Resize(e.to_string()))?;
        RgbImage::from_raw(self.spec.width, self.spec.height, dst.into_vec())
            .ok_or_else(|| ModelsError::Resize("resized buffer has the wrong size".into()))
    }

    /// Writes `(pixel - mean) / std` in CHW order into `out` (len 3*H*W) from an RGB image
    /// already at the input size.
    pub fn normalize_into(&self, rgb: &RgbImage, out: &mut [f32]) {
        let plane = (self.spec.width * self.spec.height) as usize;
        debug_assert_eq!(out.len(), 3 * plane);
        debug_assert_eq!(rgb.as_raw().len(), 3 * plane);
        let (mean, std) = (self.spec.mean, self.spec.std);
        for (i, px) in rgb.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (px[c] as f32 - mean[c]) / std[c];
            }
        }
    }

    /// The whole pipeline for one decoded image: NCHW f32 values of one image.
    pub fn tensor(&mut self, img: DynamicImage) -> Result<Vec<f32>> {
        let rgb = to_rgb8(img);
        let resized = self.resize_rgb(&rgb)?;
        let mut out = vec![0f32; self.spec.tensor_len()];
        self.normalize_into(&resized, &mut out);
        Ok(out)
    }

    /// Decode + preprocess a file.
    pub fn tensor_from_file(&mut self, path: &Path, limits: ImageLimits) -> Result<Vec<f32>> {
        self.tensor(load_image(path, limits)?)
    }
}

/// Image files by extension, case-insensitive (`.jpg`, `.JPEG`, `.png`, ...).
pub fn is_image_path(path: &Path) -> bool {
    const EXTS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp"];
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Preprocessing {
        crate::Backbone::MobileNetV2.preprocessing()
    }

    #[test]
    fn center_crop_box_is_centered_square_of_shorter_side() {
        let (l, t, w, h) = spec().source_box(640, 480);
        assert_eq!((w, h), (420.0, 420.0));
        assert_eq!((l, t), (110.0, 30.0));
    }

    #[test]
    fn grayscale_alpha_and_16_bit_images_become_rgb_tensors() {
        let mut p = Preprocessor::new(spec());
        let gray = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(300, 200, image::Luma([255])));
        let t = p.tensor(gray).unwrap();
        assert_eq!(t.len(), 3 * 224 * 224);
        assert!(t.iter().all(|v| (*v - 1.0).abs() < 1e-6), "white maps to +1.0");
        let rgba16 = DynamicImage::ImageRgba16(image::ImageBuffer::from_pixel(50, 80, image::Rgba([0u16, 0, 0, 0])));
        let t = p.tensor(rgba16).unwrap();
        assert!(t.iter().all(|v| (*v + 1.0).abs() < 1e-6), "black maps to -1.0");
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let lim = ImageLimits::default();
        let p = Path::new("x.jpg");
        assert!(matches!(decode_image(&[], p, lim), Err(ModelsError::EmptyFile { .. })));
        assert!(matches!(decode_image(b"hello world, not an image", p, lim), Err(ModelsError::Decode { .. })));
        // A PNG cut in half.
        let mut png = Vec::new();
        DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, image::Rgb([10, 20, 30])))
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let err = decode_image(&png[..png.len() / 2], p, lim).unwrap_err();
        assert!(matches!(err, ModelsError::Decode { .. }), "{err}");
        let err = decode_image(&png, p, ImageLimits { max_pixels: 1000 }).unwrap_err();
        assert!(err.to_string().contains("64x64"), "{err}");
    }

    #[test]
    fn image_extensions_match_without_case() {
        assert!(is_image_path(Path::new("a/formica.jpeg")));
        assert!(is_image_path(Path::new("A.JPG")));
        assert!(!is_image_path(Path::new("notes.txt")));
    }
}
