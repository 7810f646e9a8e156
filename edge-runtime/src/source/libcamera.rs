//! `libcamera[:N]`: the Raspberry Pi camera through Raspberry Pi's own capture program,
//! `rpicam-vid` (`libcamera-vid` on Bullseye), run as a child process rather than linked: the
//! libcamera ABI changes between OS releases, the program's command line does not. Its MJPEG
//! stdout is split into frames ([`super::mjpeg`]) and each frame decoded like a file, so a
//! truncated or corrupt frame is a counted skip. A program that dies is restarted by the
//! pipeline's retry with backoff; one that stays dead ends the run as a lost source.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command};

use models::ImageLimits;
use models::preprocess::{decode_image, to_rgb8};

use super::capture::CaptureOptions;
use super::mjpeg::MjpegSplitter;
use super::process::{ChildStream, FIRST_FRAME_TIMEOUT, Got, STALL_TIMEOUT, find_on_path};
use super::{Fetch, Frame, FrameSource};
use crate::error::{Result, RuntimeError};

/// The capture programs tried, in order: Bookworm's name, then Bullseye's.
pub const LIBCAMERA_PROGRAMS: [&str; 2] = ["rpicam-vid", "libcamera-vid"];
/// Where the programs come from.
pub const LIBCAMERA_INSTALL: &str =
    "install the Debian package rpicam-apps (`sudo apt install rpicam-apps`; on Bullseye it is libcamera-apps)";
/// Capture size and rate when none is given.
pub const DEFAULT_SIZE: (u32, u32) = (640, 480);
pub const DEFAULT_FPS: f64 = 30.0;

/// The exact arguments perch runs the capture program with: camera `index`, no time limit,
/// no preview window, MJPEG at `width`x`height` and `fps`, to stdout.
pub fn libcamera_args(index: u32, width: u32, height: u32, fps: f64) -> Vec<String> {
    let mut args: Vec<String> = vec!["--camera".into(), index.to_string(), "-t".into(), "0".into(), "-n".into()];
    args.extend(["--codec", "mjpeg"].map(String::from));
    args.extend(["--width".into(), width.to_string(), "--height".into(), height.to_string()]);
    args.extend(["--framerate".into(), fps.to_string(), "-o".into(), "-".into()]);
    args
}

/// The first capture program found on PATH.
pub fn find_program() -> Option<PathBuf> {
    LIBCAMERA_PROGRAMS.iter().find_map(|p| find_on_path(p))
}

pub struct LibcameraSource {
    index: u32,
    program: PathBuf,
    args: Vec<String>,
    size: (u32, u32),
    limits: ImageLimits,
    stream: Option<ChildStream>,
    /// What arrived while waiting for the first piece after (re)starting.
    pending: VecDeque<Got>,
    seq: u64,
}

impl LibcameraSource {
    /// Starts the capture program and waits for its first frame, so a missing camera is an
    /// error now (with the program's own message), not a retry loop.
    pub fn open(index: u32, capture: &CaptureOptions, limits: ImageLimits) -> Result<Self> {
        let name = format!("libcamera:{index}");
        let program = find_program().ok_or_else(|| RuntimeError::ToolMissing {
            source_name: name,
            program: LIBCAMERA_PROGRAMS.join("` or `"),
            install: LIBCAMERA_INSTALL.into(),
        })?;
        Self::with_program(program, index, capture, limits)
    }

    /// Like [`open`](Self::open) with an explicit capture program (a wrapper script, a test
    /// stand-in) instead of the one on PATH.
    pub fn with_program(program: PathBuf, index: u32, capture: &CaptureOptions, limits: ImageLimits) -> Result<Self> {
        let size = capture.size_or(DEFAULT_SIZE);
        let args = libcamera_args(index, size.0, size.1, capture.fps.unwrap_or(DEFAULT_FPS));
        let mut source =
            LibcameraSource { index, program, args, size, limits, stream: None, pending: VecDeque::new(), seq: 0 };
        source.start()?;
        Ok(source)
    }

    fn err(&self, reason: String) -> RuntimeError {
        RuntimeError::Capture { source_name: self.describe(), reason }
    }

    fn program_name(&self) -> String {
        self.program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// (Re)starts the program and waits for its first piece of output.
    fn start(&mut self) -> Result<()> {
        self.stream = None; // kills and reaps the old one
        self.pending.clear();
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        let program = self.program_name();
        let mut stream = ChildStream::spawn(&program, cmd, true, {
            let mut splitter = MjpegSplitter::default();
            move |out: &mut ChildStdout| splitter.read_from(out)
        })
        .map_err(|e| self.err(format!("cannot start {}: {e}", self.program.display())))?;
        match stream.next(FIRST_FRAME_TIMEOUT) {
            got @ (Got::Frame(_) | Got::Skip(_)) => self.pending.push_back(got),
            Got::Ended { why, .. } => return Err(self.err(format!("no frames: {why}"))),
            Got::Stalled(t) => {
                let tail = stream.stderr_tail();
                return Err(self.err(format!("no frame from {program} within {} s: {tail}", t.as_secs())));
            }
        }
        self.stream = Some(stream);
        Ok(())
    }
}

impl FrameSource for LibcameraSource {
    fn describe(&self) -> String {
        format!("libcamera:{}", self.index)
    }

    fn is_live(&self) -> bool {
        true
    }

    fn frame_size(&self) -> Option<(u32, u32)> {
        Some(self.size)
    }

    fn next(&mut self) -> Result<Fetch> {
        let got = match self.pending.pop_front() {
            Some(g) => g,
            None => match self.stream.as_mut() {
                Some(s) => s.next(STALL_TIMEOUT),
                None => return Err(self.err("not running".into())),
            },
        };
        let name = format!("{} frame {}", self.describe(), self.seq);
        match got {
            Got::Frame(c) => match decode_image(&c.bytes, Path::new(&name), self.limits) {
                Ok(img) => Ok(Frame::captured_at(&mut self.seq, to_rgb8(img), c.at, c.wall)),
                Err(e) => {
                    self.seq += 1;
                    Ok(Fetch::Skip { name, reason: e.to_string() })
                }
            },
            Got::Skip(reason) => {
                self.seq += 1;
                Ok(Fetch::Skip { name, reason })
            }
            Got::Ended { why, .. } => {
                self.stream = None;
                Err(self.err(why))
            }
            Got::Stalled(t) => Err(self.err(format!("no frame for {} s", t.as_secs()))),
        }
    }

    fn reconnect(&mut self) -> Result<()> {
        self.start()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_exactly_the_documented_one() {
        assert_eq!(
            libcamera_args(1, 640, 480, 30.0).join(" "),
            "--camera 1 -t 0 -n --codec mjpeg --width 640 --height 480 --framerate 30 -o -"
        );
        assert!(libcamera_args(0, 320, 240, 12.5).join(" ").contains("--framerate 12.5"));
    }

    fn jpeg() -> Vec<u8> {
        let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 77]));
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Jpeg)
            .unwrap();
        out
    }

    /// A stand-in capture program: records its pid, then writes `frame.jpg` forever.
    fn stand_in(dir: &Path, frames: u32) -> PathBuf {
        std::fs::write(dir.join("frame.jpg"), jpeg()).unwrap();
        let d = dir.display();
        let (text, script) = (dir.join("fake-vid.txt"), dir.join("fake-vid"));
        std::fs::write(
            &text,
            format!("#!/bin/sh\necho $$ > '{d}/pid'\ni=0\nwhile [ $i -lt {frames} ]; do cat '{d}/frame.jpg'; sleep 0.02; i=$((i+1)); done\n"),
        )
        .unwrap();
        // Installed by another process: a write descriptor of this one, inherited by a child
        // that another test thread forks, would make exec fail with ETXTBSY ("Text file busy").
        let ok = std::process::Command::new("install").args(["-m", "755"]).arg(&text).arg(&script).status().unwrap();
        assert!(ok.success());
        script
    }

    fn frame(src: &mut LibcameraSource) -> Frame {
        match src.next().unwrap() {
            Fetch::Frame(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn frames_come_through_and_dropping_the_source_kills_and_reaps_the_program() {
        let dir = tempfile::tempdir().unwrap();
        let program = stand_in(dir.path(), 10_000);
        let mut src =
            LibcameraSource::with_program(program, 0, &CaptureOptions::default(), ImageLimits::default()).unwrap();
        let (a, b) = (frame(&mut src), frame(&mut src));
        assert_eq!((a.seq, b.seq, a.image.dimensions()), (0, 1, (64, 48)));
        assert!(b.wall >= a.wall);
        let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap().trim().to_string();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(src);
        // Killed and waited for: not even a zombie entry is left.
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "capture program {pid} still there");
    }

    #[test]
    fn a_program_that_ends_is_an_error_and_reconnect_restarts_it() {
        let dir = tempfile::tempdir().unwrap();
        let program = stand_in(dir.path(), 2);
        let mut src =
            LibcameraSource::with_program(program, 0, &CaptureOptions::default(), ImageLimits::default()).unwrap();
        let mut frames = 0;
        let err = loop {
            match src.next() {
                Ok(Fetch::Frame(_)) => frames += 1,
                Ok(other) => panic!("{other:?}"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(frames >= 1 && err.contains("libcamera:0") && err.contains("exited"), "{frames} frames, {err}");
        src.reconnect().unwrap();
        assert!(matches!(src.next(), Ok(Fetch::Frame(_))));
    }
}
