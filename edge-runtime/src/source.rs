//! Frame sources for the streaming loop: `camera:N` (feature `camera`, nokhwa), `video:FILE`
//! (not built: a clear error), `dir:DIR` (image files, sorted, optionally looping) and
//! `synthetic[:FPS]` (a moving pattern, for tests and benchmarks without a camera).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use image::{Rgb, RgbImage};
use models::ImageLimits;
use models::preprocess::{load_image, to_rgb8};

use crate::classify::collect_images;
use crate::error::{Result, RuntimeError};

/// One decoded frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// 0-based frame number from this source.
    pub seq: u64,
    pub captured: Instant,
    pub image: RgbImage,
    /// File name for `dir:` sources.
    pub name: Option<String>,
}

impl Frame {
    /// A frame captured now from a live device, numbered from (and advancing) `seq`.
    fn live(seq: &mut u64, image: RgbImage) -> Fetch {
        let frame = Frame {
            seq: *seq,
            captured: Instant::now(),
            image,
            name: None,
        };
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
}

/// A parsed `--source` value.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    Camera(u32),
    Video(PathBuf),
    Dir(PathBuf),
    Synthetic { fps: f64 },
}

/// `synthetic` without a rate runs like a 30 fps camera.
pub const DEFAULT_SYNTHETIC_FPS: f64 = 30.0;

impl FromStr for SourceSpec {
    type Err = RuntimeError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || RuntimeError::BadSource(s.to_string());
        let (kind, arg) = s.split_once(':').map_or((s, None), |(k, a)| (k, Some(a)));
        match (kind, arg) {
            ("camera", Some(i)) => i.parse().map(SourceSpec::Camera).map_err(|_| bad()),
            ("video", Some(f)) if !f.is_empty() => Ok(SourceSpec::Video(f.into())),
            ("dir", Some(d)) if !d.is_empty() => Ok(SourceSpec::Dir(d.into())),
            ("synthetic", None) => Ok(SourceSpec::Synthetic {
                fps: DEFAULT_SYNTHETIC_FPS,
            }),
            ("synthetic", Some(f)) => match f.parse::<f64>() {
                Ok(fps) if fps > 0.0 && fps.is_finite() => Ok(SourceSpec::Synthetic { fps }),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// Opens the source a spec names.
pub fn open(spec: &SourceSpec, looping: bool, limits: ImageLimits) -> Result<Box<dyn FrameSource>> {
    match spec {
        SourceSpec::Camera(index) => camera::open(*index),
        SourceSpec::Video(path) => Err(RuntimeError::VideoNotBuilt { path: path.clone() }),
        SourceSpec::Dir(dir) => Ok(Box::new(DirSource::new(dir.clone(), looping, limits)?)),
        SourceSpec::Synthetic { fps } => Ok(Box::new(Synthetic::new(*fps, 320, 240))),
    }
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
            *px = Rgb([
                ((x + shift) % 256) as u8,
                ((y + shift / 2) % 256) as u8,
                ((x + y + n) % 256) as u8,
            ]);
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
            return Err(RuntimeError::NoImages {
                paths: dir.display().to_string(),
            });
        }
        Ok(DirSource {
            dir,
            files,
            pos: 0,
            looping,
            limits,
            seq: 0,
        })
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
        let name = path
            .strip_prefix(&self.dir)
            .unwrap_or(path)
            .display()
            .to_string();
        let seq = self.seq;
        self.seq += 1;
        Ok(match load_image(path, self.limits) {
            Ok(img) => Fetch::Frame(Frame {
                seq,
                captured: Instant::now(),
                image: to_rgb8(img),
                name: Some(name),
            }),
            Err(e) => Fetch::Skip {
                name,
                reason: e.to_string(),
            },
        })
    }
}

#[cfg(not(feature = "camera"))]
mod camera {
    use super::*;

    pub fn open(_index: u32) -> Result<Box<dyn FrameSource>> {
        Err(RuntimeError::CameraNotBuilt)
    }
}

#[cfg(feature = "camera")]
mod camera {
    use nokhwa::pixel_format::RgbFormat;
    use nokhwa::utils::{ApiBackend, CameraIndex, RequestedFormat, RequestedFormatType};

    use super::*;

    pub fn open(index: u32) -> Result<Box<dyn FrameSource>> {
        let cameras = nokhwa::query(ApiBackend::Auto).map_err(|e| RuntimeError::Camera {
            index,
            reason: format!("cannot list cameras: {e}"),
        })?;
        let known = cameras
            .iter()
            .any(|c| c.index() == &CameraIndex::Index(index));
        if !known {
            let found = if cameras.is_empty() {
                "none".to_string()
            } else {
                cameras
                    .iter()
                    .map(|c| format!("{} ({})", c.index(), c.human_name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(RuntimeError::NoCamera { index, found });
        }
        let mut source = CameraSource {
            index,
            camera: None,
            seq: 0,
        };
        source.reconnect()?;
        Ok(Box::new(source))
    }

    pub struct CameraSource {
        index: u32,
        camera: Option<nokhwa::Camera>,
        seq: u64,
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

        fn next(&mut self) -> Result<Fetch> {
            let index = self.index;
            let err = |e: &dyn std::fmt::Display| RuntimeError::Camera {
                index,
                reason: e.to_string(),
            };
            let camera = self.camera.as_mut().ok_or_else(|| err(&"not open"))?;
            let buffer = camera.frame().map_err(|e| err(&e))?;
            let image = buffer.decode_image::<RgbFormat>().map_err(|e| err(&e))?;
            Ok(Frame::live(&mut self.seq, image))
        }

        fn reconnect(&mut self) -> Result<()> {
            let index = self.index;
            let err = |e: &dyn std::fmt::Display| RuntimeError::Camera {
                index,
                reason: e.to_string(),
            };
            self.camera = None;
            let format =
                RequestedFormat::new::<RgbFormat>(RequestedFormatType::AbsoluteHighestFrameRate);
            let mut camera =
                nokhwa::Camera::new(CameraIndex::Index(index), format).map_err(|e| err(&e))?;
            camera.open_stream().map_err(|e| err(&e))?;
            self.camera = Some(camera);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs_parse_and_bad_ones_name_the_forms() {
        assert_eq!(
            "camera:0".parse::<SourceSpec>().unwrap(),
            SourceSpec::Camera(0)
        );
        assert_eq!(
            "dir:a/b".parse::<SourceSpec>().unwrap(),
            SourceSpec::Dir("a/b".into())
        );
        assert_eq!(
            "video:v.mp4".parse::<SourceSpec>().unwrap(),
            SourceSpec::Video("v.mp4".into())
        );
        assert_eq!(
            "synthetic".parse::<SourceSpec>().unwrap(),
            SourceSpec::Synthetic { fps: 30.0 }
        );
        assert_eq!(
            "synthetic:120".parse::<SourceSpec>().unwrap(),
            SourceSpec::Synthetic { fps: 120.0 }
        );
        for bad in [
            "camera:x",
            "synthetic:0",
            "synthetic:-3",
            "webcam",
            "dir:",
            "",
        ] {
            let err = bad.parse::<SourceSpec>().unwrap_err().to_string();
            assert!(
                err.contains("camera:N") && err.contains("synthetic[:FPS]"),
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
        assert_eq!(
            frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        assert_ne!(frames[0].image, frames[1].image);
        assert_eq!(frames[4].image.dimensions(), (32, 24));
    }

    #[test]
    fn camera_and_video_without_support_are_clear_errors() {
        let video = open(
            &SourceSpec::Video("clip.mp4".into()),
            false,
            ImageLimits::default(),
        )
        .err()
        .unwrap();
        assert!(
            video.to_string().contains("not built with video support"),
            "{video}"
        );
        #[cfg(not(feature = "camera"))]
        {
            let cam = open(&SourceSpec::Camera(0), false, ImageLimits::default())
                .err()
                .unwrap();
            assert!(cam.to_string().contains("--features camera"), "{cam}");
        }
    }
}
