//! `camera:N`: a V4L2 camera (`/dev/videoN`) through nokhwa (feature `camera`, on by default
//! for the binary; needs libclang to build). The capture mode is chosen here, not by nokhwa:
//! at the requested size (default 640x480, else the largest offered up to 1280 wide), the
//! format that reaches the requested rate, YUYV before MJPEG when both do (raw pixels, no JPEG
//! decode), else the faster one (USB 2 carries YUYV at high resolutions only at low rates).
//! MJPEG frames are decoded like files, so a truncated frame is a counted skip.

use image::RgbImage;

use super::FrameSource;
use super::capture::CaptureOptions;
use crate::error::{Result, RuntimeError};

/// Pixel formats perch reads from a V4L2 camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PixelFormat {
    Mjpeg,
    Yuyv,
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PixelFormat::Mjpeg => "MJPEG",
            PixelFormat::Yuyv => "YUYV",
        })
    }
}

/// One capture mode a camera offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CameraMode {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

/// Size used when none is requested, if the camera offers it.
const PREFERRED_SIZE: (u32, u32) = (640, 480);
const DEFAULT_FPS: f64 = 30.0;

/// The mode to capture in, or why none fits (the message lists what the camera offers).
pub fn choose_mode(offered: &[CameraMode], capture: &CaptureOptions) -> std::result::Result<CameraMode, String> {
    if offered.is_empty() {
        return Err("the camera offers no MJPEG or YUYV mode".into());
    }
    let size = match capture.size() {
        Some(s) if offered.iter().any(|m| (m.width, m.height) == s) => s,
        Some((w, h)) => {
            let mut sizes: Vec<(u32, u32)> = offered.iter().map(|m| (m.width, m.height)).collect();
            sizes.sort_unstable();
            sizes.dedup();
            let list = sizes.iter().map(|(w, h)| format!("{w}x{h}")).collect::<Vec<_>>().join(", ");
            return Err(format!("the camera has no {w}x{h} mode; it offers {list}"));
        }
        None if offered.iter().any(|m| (m.width, m.height) == PREFERRED_SIZE) => PREFERRED_SIZE,
        None => offered
            .iter()
            .filter(|m| m.width <= 1280)
            .map(|m| (m.width, m.height))
            .max_by_key(|(w, h)| u64::from(*w) * u64::from(*h))
            .or_else(|| offered.iter().map(|m| (m.width, m.height)).min_by_key(|(w, h)| u64::from(*w) * u64::from(*h)))
            .unwrap_or(PREFERRED_SIZE),
    };
    let want = capture.fps.unwrap_or(DEFAULT_FPS);
    let at_size = offered.iter().filter(|m| (m.width, m.height) == size);
    // Reaching the rate first; then YUYV; then the lowest rate that still reaches it (or the
    // highest when none does).
    at_size
        .max_by(|a, b| {
            let key = |m: &CameraMode| {
                let reaches = f64::from(m.fps) >= want;
                (reaches, m.format == PixelFormat::Yuyv, if reaches { -i64::from(m.fps) } else { i64::from(m.fps) })
            };
            key(a).cmp(&key(b))
        })
        .copied()
        .ok_or_else(|| "no mode at the chosen size".into())
}

/// YUYV 4:2:2 (BT.601, limited range) to RGB.
pub fn yuyv_to_rgb(width: u32, height: u32, data: &[u8]) -> Option<RgbImage> {
    let (w, h) = (width as usize, height as usize);
    if w % 2 != 0 || data.len() < w * h * 2 {
        return None;
    }
    let mut out = Vec::with_capacity(w * h * 3);
    let px = |y: u8, u: i32, v: i32| {
        let c = 298 * (i32::from(y) - 16);
        let clamp = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
        [clamp(c + 409 * v), clamp(c - 100 * u - 208 * v), clamp(c + 516 * u)]
    };
    for q in data[..w * h * 2].chunks_exact(4) {
        let (u, v) = (i32::from(q[1]) - 128, i32::from(q[3]) - 128);
        out.extend_from_slice(&px(q[0], u, v));
        out.extend_from_slice(&px(q[2], u, v));
    }
    RgbImage::from_raw(width, height, out)
}

#[cfg(not(feature = "camera"))]
pub fn open(_index: u32, _capture: &CaptureOptions) -> Result<Box<dyn FrameSource>> {
    Err(RuntimeError::CameraNotBuilt)
}

/// The modes camera `index` offers (MJPEG and YUYV only), and its name.
#[cfg(feature = "camera")]
pub fn camera_modes(index: u32) -> Result<(String, Vec<CameraMode>)> {
    let mut camera = v4l::open_camera(index, None)?;
    let name = camera.info().human_name();
    Ok((name, v4l::modes(index, &mut camera)?))
}

#[cfg(feature = "camera")]
pub use v4l::open;

#[cfg(feature = "camera")]
mod v4l {
    use std::path::Path;

    use models::ImageLimits;
    use models::preprocess::{decode_image, to_rgb8};
    use nokhwa::utils::{ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType};

    use super::super::{Fetch, Frame};
    use super::*;

    const FORMATS: [FrameFormat; 2] = [FrameFormat::MJPEG, FrameFormat::YUYV];

    fn err(index: u32, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Camera { index, reason: e.to_string() }
    }

    /// Opens the device (format `mode`, or any MJPEG/YUYV one) without starting the stream.
    pub(super) fn open_camera(index: u32, mode: Option<CameraMode>) -> Result<nokhwa::Camera> {
        let cameras = nokhwa::query(ApiBackend::Auto).map_err(|e| err(index, format!("cannot list cameras: {e}")))?;
        if !cameras.iter().any(|c| c.index() == &CameraIndex::Index(index)) {
            let found = if cameras.is_empty() {
                "none (no /dev/video* device; `edge-runtime devices` lists what is there)".to_string()
            } else {
                cameras.iter().map(|c| format!("{} ({})", c.index(), c.human_name())).collect::<Vec<_>>().join(", ")
            };
            return Err(RuntimeError::NoCamera { index, found });
        }
        let request = match mode {
            Some(m) => {
                let format = match m.format {
                    PixelFormat::Mjpeg => FrameFormat::MJPEG,
                    PixelFormat::Yuyv => FrameFormat::YUYV,
                };
                RequestedFormatType::Exact(CameraFormat::new_from(m.width, m.height, format, m.fps))
            }
            None => RequestedFormatType::None,
        };
        nokhwa::Camera::new(CameraIndex::Index(index), RequestedFormat::with_formats(request, &FORMATS))
            .map_err(|e| err(index, e))
    }

    pub(super) fn modes(index: u32, camera: &mut nokhwa::Camera) -> Result<Vec<CameraMode>> {
        let formats = camera.compatible_camera_formats().map_err(|e| err(index, format!("cannot list modes: {e}")))?;
        let mut modes: Vec<CameraMode> = formats
            .iter()
            .filter_map(|f| {
                let format = match f.format() {
                    FrameFormat::MJPEG => PixelFormat::Mjpeg,
                    FrameFormat::YUYV => PixelFormat::Yuyv,
                    _ => return None,
                };
                Some(CameraMode { format, width: f.width(), height: f.height(), fps: f.frame_rate() })
            })
            .collect();
        modes.sort_by_key(|m| (m.format, m.width, m.height, m.fps));
        modes.dedup();
        Ok(modes)
    }

    pub fn open(index: u32, capture: &CaptureOptions) -> Result<Box<dyn FrameSource>> {
        let mut probe = open_camera(index, None)?;
        let offered = modes(index, &mut probe)?;
        drop(probe);
        let mode = choose_mode(&offered, capture).map_err(|e| err(index, e))?;
        let mut source = CameraSource { index, mode, camera: None, seq: 0, limits: ImageLimits::default() };
        source.reconnect()?;
        Ok(Box::new(source))
    }

    pub struct CameraSource {
        index: u32,
        mode: CameraMode,
        camera: Option<nokhwa::Camera>,
        seq: u64,
        limits: ImageLimits,
    }

    // nokhwa's Camera holds platform handles that are only touched from the capture thread.
    unsafe impl Send for CameraSource {}

    impl FrameSource for CameraSource {
        fn describe(&self) -> String {
            format!("camera:{}", self.index)
        }

        fn is_live(&self) -> bool {
            true
        }

        fn frame_size(&self) -> Option<(u32, u32)> {
            Some((self.mode.width, self.mode.height))
        }

        fn next(&mut self) -> Result<Fetch> {
            let index = self.index;
            let camera = self.camera.as_mut().ok_or_else(|| err(index, "not open"))?;
            let buffer = camera.frame().map_err(|e| err(index, e))?;
            let (w, h) = (buffer.resolution().width(), buffer.resolution().height());
            let name = format!("camera:{index} frame {}", self.seq);
            let image = match buffer.source_frame_format() {
                FrameFormat::MJPEG => {
                    decode_image(buffer.buffer(), Path::new(&name), self.limits).map(to_rgb8).map_err(|e| e.to_string())
                }
                FrameFormat::YUYV => yuyv_to_rgb(w, h, buffer.buffer())
                    .ok_or_else(|| format!("YUYV frame of {} bytes is too short for {w}x{h}", buffer.buffer().len())),
                other => Err(format!("unexpected pixel format {other}")),
            };
            Ok(match image {
                Ok(img) => Frame::live(&mut self.seq, img),
                Err(reason) => {
                    self.seq += 1;
                    Fetch::Skip { name, reason }
                }
            })
        }

        fn reconnect(&mut self) -> Result<()> {
            self.camera = None;
            let mut camera = open_camera(self.index, Some(self.mode))?;
            camera.open_stream().map_err(|e| err(self.index, e))?;
            self.camera = Some(camera);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(format: PixelFormat, width: u32, height: u32, fps: u32) -> CameraMode {
        CameraMode { format, width, height, fps }
    }

    #[test]
    fn the_mode_is_chosen_by_size_then_rate_then_format() {
        use PixelFormat::{Mjpeg, Yuyv};
        // A typical USB webcam: YUYV is slow at high resolutions, MJPEG is not.
        let offered = [
            m(Yuyv, 640, 480, 30),
            m(Yuyv, 1280, 720, 10),
            m(Mjpeg, 640, 480, 30),
            m(Mjpeg, 1280, 720, 30),
            m(Mjpeg, 1920, 1080, 30),
        ];
        let opts = |w: u32, h: u32, fps: Option<f64>| CaptureOptions {
            width: Some(w),
            height: Some(h),
            fps,
            ..CaptureOptions::default()
        };
        assert_eq!(choose_mode(&offered, &CaptureOptions::default()), Ok(m(Yuyv, 640, 480, 30)));
        assert_eq!(choose_mode(&offered, &opts(1280, 720, None)), Ok(m(Mjpeg, 1280, 720, 30)));
        assert_eq!(choose_mode(&offered, &opts(1280, 720, Some(5.0))), Ok(m(Yuyv, 1280, 720, 10)));
        let err = choose_mode(&offered, &opts(800, 600, None)).unwrap_err();
        assert!(err.contains("800x600") && err.contains("640x480, 1280x720, 1920x1080"), "{err}");
        // No 640x480: the largest mode up to 1280 wide.
        let hd = [m(Mjpeg, 1920, 1080, 30), m(Mjpeg, 1280, 720, 60), m(Mjpeg, 320, 240, 30)];
        assert_eq!(choose_mode(&hd, &CaptureOptions::default()), Ok(m(Mjpeg, 1280, 720, 60)));
        assert!(choose_mode(&[], &CaptureOptions::default()).is_err());
    }

    #[test]
    fn yuyv_converts_to_rgb() {
        // Black, white, and a saturated red pair (BT.601 limited range).
        let img = yuyv_to_rgb(2, 2, &[16, 128, 235, 128, 82, 90, 82, 240]).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 255]);
        let red = img.get_pixel(0, 1).0;
        assert!(red[0] > 240 && red[1] < 15 && red[2] < 15, "{red:?}");
        assert!(yuyv_to_rgb(2, 2, &[0; 7]).is_none());
        assert!(yuyv_to_rgb(3, 1, &[0; 6]).is_none());
    }
}
