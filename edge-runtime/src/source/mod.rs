//! Frame sources for the streaming loop:
//! - `libcamera[:N]`: the Pi camera through Raspberry Pi's own `rpicam-vid` (or Bullseye's
//!   `libcamera-vid`) as a child process, its MJPEG stdout split into frames ([`mjpeg`]);
//! - `camera:N`: a V4L2 camera through nokhwa (feature `camera`);
//! - `video:FILE` and stream URLs (`rtsp://`, `http://`, `https://`, `udp://`): decoded by an
//!   `ffmpeg` child process into raw RGB frames;
//! - `dir:DIR`: image files, sorted, optionally looping;
//! - `synthetic[:FPS]`: a moving pattern, for tests and benchmarks without a camera.
//!
//! Capture settings (size, rate, rotation, flip, region of interest) are one plain
//! [`CaptureOptions`]; the per-frame geometric part is a [`Transform`] the pipeline applies
//! before preprocessing.

mod camera;
mod capture;
mod ffmpeg;
mod libcamera;
pub mod mjpeg;
mod process;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use image::{Rgb, RgbImage};
use models::ImageLimits;
use models::preprocess::{load_image, to_rgb8};

#[cfg(feature = "camera")]
pub use camera::camera_modes;
pub use camera::{CameraMode, PixelFormat, choose_mode, yuyv_to_rgb};
pub use capture::{CaptureOptions, Flip, Roi, Rotation, Transform};
pub use ffmpeg::FFMPEG_INSTALL;
pub use ffmpeg::FfmpegSource;
pub use ffmpeg::ffmpeg_args;
pub use libcamera::{LIBCAMERA_INSTALL, LIBCAMERA_PROGRAMS, LibcameraSource, libcamera_args};
pub use process::{find_on_path, run_with_timeout};

use crate::classify::collect_images;
use crate::error::{Result, RuntimeError};

/// One decoded frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// 0-based frame number from this source.
    pub seq: u64,
    /// When the frame was captured (monotonic clock, for ages and latencies).
    pub captured: Instant,
    /// When the frame was captured, wall-clock time (the `ts` of its record).
    pub wall: SystemTime,
    pub image: RgbImage,
    /// File name for `dir:` sources.
    pub name: Option<String>,
}

impl Frame {
    /// A frame captured now from a live device, numbered from (and advancing) `seq`.
    fn live(seq: &mut u64, image: RgbImage) -> Fetch {
        Frame::captured_at(seq, image, Instant::now(), SystemTime::now())
    }

    /// A frame whose bytes arrived at `captured`/`wall`, numbered from (and advancing) `seq`.
    fn captured_at(seq: &mut u64, image: RgbImage, captured: Instant, wall: SystemTime) -> Fetch {
        let frame = Frame { seq: *seq, captured, wall, image, name: None };
        *seq += 1;
        Fetch::Frame(frame)
    }
}

/// What a source produced.
#[derive(Debug)]
pub enum Fetch {
    Frame(Frame),
    /// An input that could not be decoded (counted, the stream goes on).
    Skip {
        name: String,
        reason: String,
    },
    /// The source has no more frames.
    End,
}

pub trait FrameSource: Send {
    /// For logs and errors: `camera:0`, `dir:photos`, ...
    fn describe(&self) -> String;
    /// Live sources (camera, synthetic) produce frames on their own clock: when inference
    /// falls behind, stale frames are dropped. Others (folders, files) wait for inference.
    fn is_live(&self) -> bool;
    /// The next frame. An `Err` is a failure of the device the pipeline may retry (after
    /// [`FrameSource::reconnect`]) before giving up.
    fn next(&mut self) -> Result<Fetch>;
    /// Try to get a lost device back; called between retries.
    fn reconnect(&mut self) -> Result<()> {
        Ok(())
    }
    /// Width and height of the frames this source delivers (before the [`Transform`]), when
    /// known once it is open; lets a bad `--roi` fail at open instead of at the first frame.
    fn frame_size(&self) -> Option<(u32, u32)> {
        None
    }
    /// A line worth logging once the source is open (a video's rotation tag being applied).
    fn note(&self) -> Option<String> {
        None
    }
}

/// A parsed `--source` value.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// A V4L2 camera (`/dev/videoN`) through nokhwa.
    Camera(u32),
    /// A Raspberry Pi camera through `rpicam-vid --camera N`.
    Libcamera(u32),
    /// A video file decoded by ffmpeg: every frame, in order.
    Video(PathBuf),
    /// A network stream (`rtsp://`, `http://`, `https://`, `udp://`) decoded by ffmpeg; live.
    Stream(String),
    Dir(PathBuf),
    Synthetic {
        fps: f64,
    },
}

/// `synthetic` without a rate runs like a 30 fps camera.
pub const DEFAULT_SYNTHETIC_FPS: f64 = 30.0;

/// URL schemes passed to ffmpeg as network streams.
pub const STREAM_SCHEMES: [&str; 4] = ["rtsp://", "http://", "https://", "udp://"];

impl FromStr for SourceSpec {
    type Err = RuntimeError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || RuntimeError::BadSource(s.to_string());
        if let Some(scheme) = STREAM_SCHEMES.iter().find(|p| s.starts_with(**p)) {
            return if s.len() > scheme.len() { Ok(SourceSpec::Stream(s.to_string())) } else { Err(bad()) };
        }
        let (kind, arg) = s.split_once(':').map_or((s, None), |(k, a)| (k, Some(a)));
        match (kind, arg) {
            ("camera", Some(i)) => i.parse().map(SourceSpec::Camera).map_err(|_| bad()),
            ("libcamera", None) => Ok(SourceSpec::Libcamera(0)),
            ("libcamera", Some(i)) => i.parse().map(SourceSpec::Libcamera).map_err(|_| bad()),
            ("video", Some(f)) if !f.is_empty() => Ok(SourceSpec::Video(f.into())),
            ("dir", Some(d)) if !d.is_empty() => Ok(SourceSpec::Dir(d.into())),
            ("synthetic", None) => Ok(SourceSpec::Synthetic { fps: DEFAULT_SYNTHETIC_FPS }),
            ("synthetic", Some(f)) => match f.parse::<f64>() {
                Ok(fps) if fps > 0.0 && fps.is_finite() => Ok(SourceSpec::Synthetic { fps }),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// The canonical spelling (`libcamera:0`, `video:clip.mp4`, the URL, ...): the `source` of
/// every record.
impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Camera(i) => write!(f, "camera:{i}"),
            SourceSpec::Libcamera(i) => write!(f, "libcamera:{i}"),
            SourceSpec::Video(p) => write!(f, "video:{}", p.display()),
            SourceSpec::Stream(url) => f.write_str(url),
            SourceSpec::Dir(d) => write!(f, "dir:{}", d.display()),
            SourceSpec::Synthetic { fps } => write!(f, "synthetic:{fps}"),
        }
    }
}

/// Opens the source a spec names with default capture settings.
pub fn open(spec: &SourceSpec, looping: bool, limits: ImageLimits) -> Result<Box<dyn FrameSource>> {
    open_with(spec, looping, limits, &CaptureOptions::default())
}

/// Opens the source a spec names, capturing at `capture`'s size and rate where the source has
/// one. A `--roi` that does not fit the frames is an error here when the size is known now.
pub fn open_with(
    spec: &SourceSpec,
    looping: bool,
    limits: ImageLimits,
    capture: &CaptureOptions,
) -> Result<Box<dyn FrameSource>> {
    capture.validate()?;
    let source: Box<dyn FrameSource> = match spec {
        SourceSpec::Camera(index) => camera::open(*index, capture)?,
        SourceSpec::Libcamera(index) => Box::new(libcamera::LibcameraSource::open(*index, capture, limits)?),
        SourceSpec::Video(path) => Box::new(ffmpeg::FfmpegSource::open_file(path, capture)?),
        SourceSpec::Stream(url) => Box::new(ffmpeg::FfmpegSource::open_stream(url, capture)?),
        SourceSpec::Dir(dir) => Box::new(DirSource::new(dir.clone(), looping, limits)?),
        SourceSpec::Synthetic { fps } => {
            let (w, h) = (capture.width.unwrap_or(320), capture.height.unwrap_or(240));
            Box::new(Synthetic::new(*fps, w, h))
        }
    };
    if let Some((w, h)) = source.frame_size() {
        capture.transform().check(w, h, &source.describe())?;
    }
    Ok(source)
}

/// A moving diagonal gradient with per-frame noise, paced at `fps`.
pub struct Synthetic {
    interval: Duration,
    next_due: Option<Instant>,
    seq: u64,
    width: u32,
    height: u32,
    noise: u64,
}

impl Synthetic {
    pub fn new(fps: f64, width: u32, height: u32) -> Self {
        Synthetic {
            interval: Duration::from_secs_f64(1.0 / fps),
            next_due: None,
            seq: 0,
            width,
            height,
            noise: 0x9E37_79B9_7F4A_7C15,
        }
    }

    fn render(&mut self) -> RgbImage {
        let shift = (self.seq * 4) as u32;
        let mut img = RgbImage::new(self.width, self.height);
        for (x, y, px) in img.enumerate_pixels_mut() {
            // xorshift: cheap noise so consecutive frames never compare equal.
            self.noise ^= self.noise << 13;
            self.noise ^= self.noise >> 7;
            self.noise ^= self.noise << 17;
            let n = (self.noise & 0x1f) as u32;
            *px = Rgb([((x + shift) % 256) as u8, ((y + shift / 2) % 256) as u8, ((x + y + n) % 256) as u8]);
        }
        img
    }
}

impl FrameSource for Synthetic {
    fn describe(&self) -> String {
        format!("synthetic:{:.0}", 1.0 / self.interval.as_secs_f64())
    }

    fn is_live(&self) -> bool {
        true
    }

    fn frame_size(&self) -> Option<(u32, u32)> {
        Some((self.width, self.height))
    }

    fn next(&mut self) -> Result<Fetch> {
        // Pace like a camera: frame n is due at start + n * interval, whatever the consumer does.
        let now = Instant::now();
        let due = *self.next_due.get_or_insert(now);
        if due > now {
            std::thread::sleep(due - now);
        }
        self.next_due = Some(due + self.interval);
        let image = self.render();
        Ok(Frame::live(&mut self.seq, image))
    }
}

/// Image files of a folder (recursive, sorted), decoded one per frame.
pub struct DirSource {
    dir: PathBuf,
    files: Vec<PathBuf>,
    pos: usize,
    looping: bool,
    limits: ImageLimits,
    seq: u64,
}

impl DirSource {
    pub fn new(dir: PathBuf, looping: bool, limits: ImageLimits) -> Result<Self> {
        if !dir.is_dir() {
            return Err(RuntimeError::InputMissing { path: dir });
        }
        let (files, _) = collect_images(std::slice::from_ref(&dir));
        if files.is_empty() {
            return Err(RuntimeError::NoImages { paths: dir.display().to_string() });
        }
        Ok(DirSource { dir, files, pos: 0, looping, limits, seq: 0 })
    }
}

impl FrameSource for DirSource {
    fn describe(&self) -> String {
        format!("dir:{}", self.dir.display())
    }

    fn is_live(&self) -> bool {
        false
    }

    fn next(&mut self) -> Result<Fetch> {
        if self.pos == self.files.len() {
            if !self.looping {
                return Ok(Fetch::End);
            }
            self.pos = 0;
        }
        let path = &self.files[self.pos];
        self.pos += 1;
        let name = path.strip_prefix(&self.dir).unwrap_or(path).display().to_string();
        let seq = self.seq;
        self.seq += 1;
        Ok(match load_image(path, self.limits) {
            Ok(img) => Fetch::Frame(Frame {
                seq,
                captured: Instant::now(),
                wall: SystemTime::now(),
                image: to_rgb8(img),
                name: Some(name),
            }),
            Err(e) => Fetch::Skip { name, reason: e.to_string() },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs_parse_and_bad_ones_name_the_forms() {
        let cases = [
            ("camera:0", SourceSpec::Camera(0)),
            ("libcamera", SourceSpec::Libcamera(0)),
            ("libcamera:1", SourceSpec::Libcamera(1)),
            ("dir:a/b", SourceSpec::Dir("a/b".into())),
            ("video:v.mp4", SourceSpec::Video("v.mp4".into())),
            ("synthetic", SourceSpec::Synthetic { fps: 30.0 }),
            ("synthetic:120", SourceSpec::Synthetic { fps: 120.0 }),
            ("rtsp://cam.local:554/stream1", SourceSpec::Stream("rtsp://cam.local:554/stream1".into())),
            ("http://127.0.0.1:8080/feed.mjpg", SourceSpec::Stream("http://127.0.0.1:8080/feed.mjpg".into())),
            ("udp://127.0.0.1:1234", SourceSpec::Stream("udp://127.0.0.1:1234".into())),
        ];
        for (text, spec) in cases {
            assert_eq!(text.parse::<SourceSpec>().unwrap(), spec, "{text}");
        }
        assert_eq!(SourceSpec::Libcamera(0).to_string(), "libcamera:0");
        assert_eq!("video:v.mp4".parse::<SourceSpec>().unwrap().to_string(), "video:v.mp4");
        for bad in
            ["camera:x", "libcamera:a", "synthetic:0", "synthetic:-3", "webcam", "dir:", "", "rtsp://", "ftp://x"]
        {
            let err = bad.parse::<SourceSpec>().unwrap_err().to_string();
            assert!(
                err.contains("camera:N") && err.contains("libcamera[:N]") && err.contains("rtsp://"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn synthetic_frames_move() {
        let mut s = Synthetic::new(1000.0, 32, 24);
        let frames: Vec<Frame> = (0..5)
            .map(|_| match s.next().unwrap() {
                Fetch::Frame(f) => f,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert_ne!(frames[0].image, frames[1].image);
        assert_eq!(frames[4].image.dimensions(), (32, 24));
    }

    #[test]
    fn a_roi_that_does_not_fit_fails_at_open_and_bad_settings_are_refused() {
        let capture = CaptureOptions {
            rotate: Rotation::R90,
            roi: Some(Roi { x: 0, y: 0, width: 300, height: 300 }),
            ..CaptureOptions::default()
        };
        // synthetic is 320x240, 240x320 once rotated: 300 wide does not fit.
        let err = open_with(&SourceSpec::Synthetic { fps: 10.0 }, false, ImageLimits::default(), &capture)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("240x320") && err.contains("--rotate 90"), "{err}");
        let bad = CaptureOptions { height: Some(480), ..CaptureOptions::default() };
        let err = open_with(&SourceSpec::Synthetic { fps: 10.0 }, false, ImageLimits::default(), &bad).err().unwrap();
        assert!(matches!(err, RuntimeError::BadCapture(_)), "{err}");
    }

    #[test]
    #[cfg(not(feature = "camera"))]
    fn camera_without_support_is_a_clear_error() {
        let cam = open(&SourceSpec::Camera(0), false, ImageLimits::default()).err().unwrap();
        assert!(cam.to_string().contains("--features camera"), "{cam}");
    }
}
