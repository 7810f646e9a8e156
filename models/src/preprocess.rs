//! The ONE preprocessing definition. Training, export calibration, evaluation and the edge
//! runtime all call [`Preprocessor`]; the [`Preprocessing`] it follows is recorded in the
//! manifest. A mismatch here silently costs accuracy on the device, so there is no second copy.
//!
//! Pipeline: decode (image crate, EXIF orientation applied) -> RGB8 (grayscale, alpha and
//! 16-bit are converted) -> crop + resize in one pass (fast_image_resize, PIL-compatible
//! convolution) -> NCHW f32 `(pixel - mean) / std`.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use fast_image_resize::images::{Image as FirImage, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
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

/// The largest model input side a manifest may declare. Classifier inputs are a few hundred
/// pixels (224 to 600 for the common ImageNet models); 4096 leaves room and still caps one
/// frame's input tensor at 3 x 4096 x 4096 floats (192 MiB).
pub const MAX_INPUT_SIDE: u32 = 4096;

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
    // The jpeg decoder fills a cut-off image with grey and reports success: walk the markers
    // first so a truncated or corrupt JPEG is an error, not a confident wrong answer.
    if bytes.starts_with(&JPEG_SOI) {
        match jpeg_extent(bytes) {
            JpegExtent::Complete(_) => {}
            JpegExtent::Truncated(why) => return Err(decode_err(&format!("truncated JPEG: {why}"))),
            JpegExtent::Cut(at) => {
                return Err(decode_err(&format!(
                    "truncated JPEG: another image starts at byte {at} before this one ended"
                )));
            }
            JpegExtent::Corrupt(why) => return Err(decode_err(&format!("corrupt JPEG: {why}"))),
        }
    }
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| decode_err(&e))?;
    if reader.format().is_none() {
        let reason = if is_heif(bytes) { HEIF_HINT } else { "not a recognised image format" };
        return Err(ModelsError::Decode { path: path_buf(), reason: reason.into() });
    }
    let mut reader = reader;
    let mut img_limits = image::Limits::default();
    // 16-bit RGBA at the pixel limit, plus slack for the decoder.
    img_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(img_limits);
    let mut decoder = reader.into_decoder().map_err(|e| decode_err(&e))?;
    // The header's dimensions, checked before the pixels are allocated.
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(ModelsError::ZeroSize { path: path_buf(), width, height });
    }
    if width as u64 * height as u64 > limits.max_pixels {
        return Err(ModelsError::TooLarge { path: path_buf(), width, height, max_pixels: limits.max_pixels });
    }
    // A phone photo is stored as the sensor saw it and tagged with how to turn it (EXIF
    // Orientation); viewers apply the tag, so the model must see what the user sees. A damaged
    // EXIF block leaves the pixels as stored rather than rejecting the photo.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| decode_err(&e))?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// The start-of-image marker every JPEG (and every frame of an MJPEG stream) begins with.
pub const JPEG_SOI: [u8; 2] = [0xFF, 0xD8];

/// Where a JPEG that starts at byte 0 ends, found by walking its marker segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JpegExtent {
    /// The image is complete: its end-of-image marker ends at this byte offset (trailing
    /// bytes after it are not part of the image).
    Complete(usize),
    /// The bytes end before the image does (more bytes could complete it).
    Truncated(String),
    /// The image is cut short: another image's SOI marker starts at this byte offset before
    /// this one ended (an MJPEG stream that lost bytes, or two files glued together).
    Cut(usize),
    /// The bytes are not a well-formed JPEG (or another image starts inside this one).
    Corrupt(String),
}

/// Walks the marker segments of a JPEG from its SOI: each header segment is skipped by its
/// length (so an EXIF thumbnail's own SOI/EOI inside APP1 is never mistaken for the end),
/// entropy-coded scan data is scanned for the next real marker (`FF 00` is a stuffed data
/// byte, `FF D0..D7` are restart markers, `FF FF` is fill), and the image ends at the EOI
/// after its last scan. Shared by file decoding and the MJPEG stream splitter.
pub fn jpeg_extent(bytes: &[u8]) -> JpegExtent {
    use JpegExtent::{Complete, Corrupt, Truncated};
    if !bytes.starts_with(&JPEG_SOI) {
        return Corrupt("does not start with the JPEG start-of-image marker FF D8".into());
    }
    let n = bytes.len();
    let (mut pos, mut frame_header, mut scans) = (2usize, false, 0u32);
    loop {
        // A marker: FF, optional FF fill bytes, then the marker code.
        match bytes.get(pos) {
            None => return Truncated(format!("ends after {n} bytes, before the end-of-image marker")),
            Some(0xFF) => {}
            Some(b) => return Corrupt(format!("expected a marker at byte {pos}, found {b:#04x}")),
        }
        while bytes.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&code) = bytes.get(pos + 1) else {
            return Truncated(format!("ends after {n} bytes, inside a marker"));
        };
        let marker_at = pos;
        pos += 2;
        match code {
            0xD9 if scans > 0 => return Complete(pos),
            0xD9 => return Corrupt(format!("end-of-image marker at byte {marker_at} before any image data")),
            0xD8 => return JpegExtent::Cut(marker_at),
            0x00 => return Corrupt(format!("invalid marker FF 00 at byte {marker_at}")),
            // Standalone markers: TEM, RST0-7.
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(len) = bytes.get(pos..pos + 2).map(|l| u16::from_be_bytes([l[0], l[1]]) as usize) else {
            return Truncated(format!("ends after {n} bytes, inside the header of segment FF {code:02X}"));
        };
        if len < 2 {
            return Corrupt(format!("segment FF {code:02X} at byte {marker_at} has an invalid length {len}"));
        }
        if pos + len > n {
            return Truncated(format!(
                "segment FF {code:02X} at byte {marker_at} needs {len} bytes but the data ends after {n}"
            ));
        }
        pos += len;
        match code {
            // Start of frame (baseline, progressive, ...; C4 DHT, C8 JPG and CC DAC are not).
            0xC0..=0xCF if !matches!(code, 0xC4 | 0xC8 | 0xCC) => frame_header = true,
            0xDA => {
                if !frame_header {
                    return Corrupt(format!("scan at byte {marker_at} before any frame header"));
                }
                scans += 1;
                // Entropy-coded data runs to the next marker that is not a stuffed byte or a restart.
                loop {
                    let Some(ff) = bytes[pos..].iter().position(|&b| b == 0xFF) else {
                        return Truncated(format!("ends after {n} bytes, inside the image data"));
                    };
                    pos += ff;
                    match bytes.get(pos + 1) {
                        None => return Truncated(format!("ends after {n} bytes, inside the image data")),
                        Some(0x00 | 0xD0..=0xD7) => pos += 2,
                        // Fill byte before a marker: the marker walk skips it.
                        Some(_) => break,
                    }
                }
            }
            _ => {}
        }
    }
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
        self.tensor_rgb(&to_rgb8(img))
    }

    /// The same for an RGB frame the caller keeps (the streaming loop hands it on afterwards).
    pub fn tensor_rgb(&mut self, rgb: &RgbImage) -> Result<Vec<f32>> {
        let resized = self.resize_rgb(rgb)?;
        let mut out = vec![0f32; self.spec.tensor_len()];
        self.normalize_into(&resized, &mut out);
        Ok(out)
    }

    /// Decode + preprocess a file.
    pub fn tensor_from_file(&mut self, path: &Path, limits: ImageLimits) -> Result<Vec<f32>> {
        self.tensor(load_image(path, limits)?)
    }
}

/// Why an iPhone photo (HEIC) or an AVIF is refused, and what to do.
pub const HEIF_HINT: &str = "HEIC/HEIF/AVIF photo: not supported; convert it to JPEG (e.g. `heif-convert`, \
     or `ffmpeg -i IN.heic OUT.jpg`), or set the iPhone to Settings > Camera > Formats > Most Compatible";

/// An ISO-BMFF `ftyp` box with a HEIF-family brand (HEIC from iPhones, AVIF, plain HEIF).
fn is_heif(bytes: &[u8]) -> bool {
    const BRANDS: [&[u8; 4]; 8] = [b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif"];
    bytes.len() >= 12 && &bytes[4..8] == b"ftyp" && BRANDS.iter().any(|b| &bytes[8..12] == *b)
}

/// Whether `path` names a HEIF-family photo (`.heic`, `.heif`, `.avif`) by extension.
pub fn is_heif_path(path: &Path) -> bool {
    has_extension(path, &["heic", "heif", "avif"])
}

/// Whether `path`'s extension is one of `exts` (lower case), in any case.
fn has_extension(path: &Path, exts: &[&str]) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// What a folder listing skips as never being data: hidden entries (`.DS_Store`, the `._x.jpg`
/// AppleDouble twins macOS writes beside every file on a foreign disk, `.git`) and the
/// `__MACOSX` folder of zips made on a Mac. Paths the user names explicitly are not filtered.
pub fn is_hidden_entry(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.') || n == "__MACOSX")
}

/// Image files by extension, case-insensitive (`.jpg`, `.JPEG`, `.png`, ...).
pub fn is_image_path(path: &Path) -> bool {
    has_extension(path, &["jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp"])
}

/// An entry [`find_images`] passed over, and why.
#[derive(Debug)]
pub enum PassedOver {
    /// A HEIC/HEIF/AVIF photo (see [`HEIF_HINT`]).
    Heif,
    /// A file whose extension is not an image's.
    NotImage,
    /// A folder that could not be listed.
    Unlistable(std::io::Error),
}

impl std::fmt::Display for PassedOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PassedOver::Heif => f.write_str(HEIF_HINT),
            PassedOver::NotImage => f.write_str("not an image file (by extension)"),
            PassedOver::Unlistable(e) => write!(f, "cannot list the folder: {e}"),
        }
    }
}

/// The image files under `dir`, recursively: each folder's entries in sorted order (so the
/// result is sorted by path), hidden entries and `__MACOSX` left out. What is passed over is
/// added to `passed`. `seen` holds the real paths of folders already searched: a folder reached
/// twice (a symlink loop such as `latest -> .`) is searched once. The one folder walk of perch:
/// `classify`, `dir:` sources, `enrol --from-folder` and the trainer's class folders.
pub fn find_images(
    dir: &Path,
    seen: &mut std::collections::HashSet<PathBuf>,
    images: &mut Vec<PathBuf>,
    passed: &mut Vec<(PathBuf, PassedOver)>,
) {
    if !seen.insert(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())) {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return passed.push((dir.to_path_buf(), PassedOver::Unlistable(e))),
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths.into_iter().filter(|p| !is_hidden_entry(p)) {
        if p.is_dir() {
            find_images(&p, seen, images, passed);
        } else if is_image_path(&p) {
            images.push(p);
        } else if is_heif_path(&p) {
            passed.push((p, PassedOver::Heif));
        } else {
            passed.push((p, PassedOver::NotImage));
        }
    }
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

    /// A real baseline JPEG with noisy content (so its scan data holds FF 00 stuffing).
    fn jpeg_bytes(w: u32, h: u32) -> Vec<u8> {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let img = RgbImage::from_fn(w, h, |x, y| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            image::Rgb([(x * 7) as u8 ^ seed as u8, (y * 5) as u8, (seed >> 8) as u8])
        });
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(img).write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg).unwrap();
        out
    }

    /// `outer` with an APP1 (EXIF-style) segment holding a whole `thumb` JPEG inserted after SOI.
    fn with_thumbnail(outer: &[u8], thumb: &[u8]) -> Vec<u8> {
        let mut payload = b"Exif\0\0".to_vec();
        payload.extend_from_slice(thumb);
        let mut out = JPEG_SOI.to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&outer[2..]);
        out
    }

    #[test]
    fn a_whole_jpeg_is_complete_and_trailing_bytes_are_not_part_of_it() {
        let jpeg = jpeg_bytes(64, 48);
        assert!(jpeg.windows(2).any(|w| w == [0xFF, 0x00]), "test image should hold stuffed FF bytes");
        assert_eq!(jpeg_extent(&jpeg), JpegExtent::Complete(jpeg.len()));
        let mut padded = jpeg.clone();
        padded.extend_from_slice(b"\0\0trailing");
        assert_eq!(jpeg_extent(&padded), JpegExtent::Complete(jpeg.len()));
        assert!(decode_image(&padded, Path::new("p.jpg"), ImageLimits::default()).is_ok());
    }

    #[test]
    fn every_cut_of_a_jpeg_is_truncated_and_decoding_says_so() {
        let jpeg = jpeg_bytes(64, 48);
        for cut in (2..jpeg.len()).step_by(7).chain([jpeg.len() - 1, jpeg.len() - 2]) {
            assert!(matches!(jpeg_extent(&jpeg[..cut]), JpegExtent::Truncated(_)), "cut at {cut}");
            let err = decode_image(&jpeg[..cut], Path::new("cut.jpg"), ImageLimits::default()).unwrap_err();
            assert!(err.to_string().contains("truncated JPEG") && err.to_string().contains("cut.jpg"), "{err}");
        }
    }

    #[test]
    fn an_exif_thumbnail_does_not_end_the_image() {
        let outer = jpeg_bytes(80, 60);
        let full = with_thumbnail(&outer, &jpeg_bytes(16, 12));
        assert_eq!(jpeg_extent(&full), JpegExtent::Complete(full.len()));
        // Cut just after the APP1 segment: the thumbnail's EOI is behind us, the image is not whole.
        let app1_end = 4 + u16::from_be_bytes([full[4], full[5]]) as usize;
        for cut in [app1_end - 1, app1_end + 10, full.len() - 100] {
            assert!(matches!(jpeg_extent(&full[..cut]), JpegExtent::Truncated(_)), "cut at {cut}");
        }
    }

    #[test]
    fn corrupt_jpegs_and_a_second_soi_are_reported() {
        let jpeg = jpeg_bytes(32, 32);
        let mut broken = jpeg.clone();
        broken[2] = 0x12;
        assert!(matches!(jpeg_extent(&broken), JpegExtent::Corrupt(_)));
        // A frame cut short and followed by the next one (an MJPEG stream that lost bytes).
        let mut joined = jpeg[..jpeg.len() / 2].to_vec();
        joined.extend_from_slice(&jpeg);
        assert_eq!(jpeg_extent(&joined), JpegExtent::Cut(jpeg.len() / 2));
        assert!(matches!(jpeg_extent(&[0xFF, 0xD8, 0xFF, 0xD9]), JpegExtent::Corrupt(_)));
        let err = decode_image(&broken, Path::new("b.jpg"), ImageLimits::default()).unwrap_err();
        assert!(err.to_string().contains("corrupt JPEG"), "{err}");
    }

    #[test]
    fn truncated_pngs_are_decode_errors() {
        let img = jpeg_bytes(64, 64);
        let rgb = image::load_from_memory(&img).unwrap();
        let mut png = Vec::new();
        rgb.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        // Cuts inside the pixel data (IDAT): never a silently grey image.
        for cut in [png.len() / 4, png.len() / 2, png.len() * 9 / 10, png.len() - 16] {
            let err = decode_image(&png[..cut], Path::new("t.png"), ImageLimits::default()).unwrap_err();
            assert!(matches!(err, ModelsError::Decode { .. }), "cut at {cut}: {err}");
        }
    }

    #[test]
    fn image_extensions_match_without_case() {
        assert!(is_image_path(Path::new("a/formica.jpeg")));
        assert!(is_image_path(Path::new("A.JPG")));
        assert!(!is_image_path(Path::new("notes.txt")));
        assert!(is_heif_path(Path::new("IMG_0001.HEIC")) && !is_image_path(Path::new("IMG_0001.HEIC")));
        // An iPhone photo's first box, however it is named: refused with what to do.
        let heic = [&[0, 0, 0, 24][..], b"ftypheic", &[0, 0, 0, 0], b"mif1heic"].concat();
        let err = decode_image(&heic, Path::new("IMG_0001.jpg"), ImageLimits::default()).unwrap_err();
        assert!(err.to_string().contains("HEIC") && err.to_string().contains("convert it to JPEG"), "{err}");
        for hidden in ["a/.DS_Store", "a/._formica.jpg", "d/__MACOSX", ".git"] {
            assert!(is_hidden_entry(Path::new(hidden)), "{hidden}");
        }
        for shown in ["a/formica.jpg", "d/MACOSX", "a.b/c.jpg", "x/_.jpg"] {
            assert!(!is_hidden_entry(Path::new(shown)), "{shown}");
        }
    }
}
