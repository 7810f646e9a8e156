//! `video:FILE` and network streams through an `ffmpeg` child process writing raw RGB24
//! frames to a pipe (`-f rawvideo -pix_fmt rgb24`). ffmpeg is driven, not linked: codec
//! libraries change ABI between releases, its command line does not.
//!
//! Raw frames carry no size, so the reader must know it. perch always forces it with
//! `-vf scale=W:H`: W x H is `--width/--height` when given, otherwise what `ffprobe` reports
//! for the first video stream. Forcing the size even when it is the probed one keeps the frame
//! length fixed if a stream changes resolution midway (the reader would otherwise lose its
//! place). A phone video's rotation tag is applied as players apply it (ffmpeg's autorotate,
//! before the scale), the way photos follow their EXIF orientation: the probe reads the tag too
//! and swaps the probed width and height for a quarter turn. `--rotate` turns frames further.
//! Giving `--width/--height` for a stream skips the probe, which otherwise costs one extra
//! connection.
//!
//! Files are not live: ffmpeg waits for the pipeline, every frame is classified in order.
//! Streams are live: stale frames are dropped, and a stream that ends or stalls is reconnected.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use image::RgbImage;

use super::capture::CaptureOptions;
use super::process::{
    ChildStream, FIRST_FRAME_TIMEOUT, Got, STALL_TIMEOUT, find_on_path, fixed_frames, run_with_timeout,
};
use super::{Fetch, Frame, FrameSource};
use crate::error::{Result, RuntimeError};

pub const FFMPEG_INSTALL: &str = "install the Debian package ffmpeg (`sudo apt install ffmpeg`)";
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq)]
enum Input {
    File(PathBuf),
    Url(String),
}

impl Input {
    fn arg(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Url(u) => u.clone(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Input::File(p) => format!("video:{}", p.display()),
            Input::Url(u) => u.clone(),
        }
    }
}

/// How `input` is opened, the same for ffprobe and ffmpeg (`-i input` last). A live input gets
/// low-latency flags, TCP for RTSP (survives lossy links and NAT; a probe over UDP could fail
/// where the decoder would connect), and `-fpsprobesize 0`: the size is known from the first
/// decoded frame, so the open does not wait for 20 more frames to estimate a frame rate that
/// perch never uses (an RTSP camera at 5 fps: 4 s less, twice, probe and decoder). It also gets
/// [`QUICK_ANALYSIS`].
fn input_args(input: &str, live: bool) -> Vec<String> {
    let mut a = Vec::new();
    if live {
        a.extend(["-fflags", "nobuffer", "-flags", "low_delay", "-fpsprobesize", "0"].map(String::from));
        a.extend(QUICK_ANALYSIS.map(String::from));
        if input.starts_with("rtsp://") {
            a.extend(["-rtsp_transport", "tcp"].map(String::from));
        }
    }
    a.extend(["-i".to_string(), input.to_string()]);
    a
}

/// ffmpeg's arguments: decode `input`'s first video stream, scale to `width`x`height` (and
/// resample to `fps` when given), write raw RGB24 frames to stdout. `live` adds low-latency
/// input flags (see `input_args`).
pub fn ffmpeg_args(input: &str, live: bool, width: u32, height: u32, fps: Option<f64>) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "error"].map(String::from).into();
    a.extend(input_args(input, live));
    a.extend(["-map".to_string(), "0:v:0".into(), "-an".into()]);
    let mut filter = format!("scale={width}:{height}");
    if let Some(f) = fps {
        filter.push_str(&format!(",fps={f}"));
    }
    // passthrough: every decoded frame exactly once (no duplicates to fill a constant rate).
    a.extend(["-vf".to_string(), filter, "-vsync".into(), "passthrough".into()]);
    a.extend(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"].map(String::from));
    a
}

/// A live input's stream analysis stops after 1 s of stream instead of ffmpeg's 5: an MPEG-TS
/// stream over UDP opened in 5.4-7.1 s (probe and decoder each), 1.8-1.9 s with it. ffmpeg still
/// reads on to the first key frame for the size (H.264 with a key frame every 4 s: probe 5.3 s
/// instead of 7.8, first frames 7.4 s instead of 11.9), and a probe that finds no size this way is
/// repeated with the default.
const QUICK_ANALYSIS: [&str; 2] = ["-analyzeduration", "1000000"];

/// The first video stream as ffmpeg will deliver it, by `ffprobe`.
fn probe(ffprobe: &Path, input: &str, live: bool) -> std::result::Result<Probed, String> {
    let quick = input_args(input, live);
    match probe_with(ffprobe, &quick)? {
        Some(p) => Ok(p),
        None if live => {
            let patient: Vec<String> =
                quick.iter().filter(|a| !QUICK_ANALYSIS.contains(&a.as_str())).cloned().collect();
            probe_with(ffprobe, &patient)?.ok_or_else(|| "no video stream".into())
        }
        None => Err("no video stream".into()),
    }
}

/// One ffprobe run: `Ok(None)` when it ran but reported no video size.
fn probe_with(ffprobe: &Path, input_args: &[String]) -> std::result::Result<Option<Probed>, String> {
    let mut cmd = Command::new(ffprobe);
    cmd.args(["-v", "error", "-select_streams", "v:0"]);
    cmd.args(["-show_entries", "stream=width,height:stream_side_data=rotation"]);
    cmd.args(["-of", "default=noprint_wrappers=1"]);
    cmd.args(input_args);
    let (status, out, err) = run_with_timeout(cmd, PROBE_TIMEOUT).map_err(|e| format!("cannot run ffprobe: {e}"))?;
    let err = err.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ");
    match status {
        None => return Err(format!("ffprobe got no answer within {} s", PROBE_TIMEOUT.as_secs())),
        Some(s) if !s.success() => {
            return Err(if err.is_empty() { format!("ffprobe failed ({s})") } else { err });
        }
        Some(_) => {}
    }
    Ok(parse_probe(&out))
}

/// What the probe found: the size of the frames ffmpeg will write (after the rotation tag) and
/// the tag's clockwise turn (0, 90, 180 or 270).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Probed {
    size: (u32, u32),
    turn_cw: u32,
}

/// The first `width=`, `height=` and `rotation=` of ffprobe's `default` output. An MPEG-TS
/// input (a `udp://` stream, a `.ts` file) lists its stream again under its program, so the
/// pair can come twice; a size of 0 (not yet known) is no size. `rotation` is the display
/// matrix's counter-clockwise angle (-90: turn 90 degrees clockwise to show it upright); a
/// quarter turn swaps the stored width and height, as ffmpeg's autorotate does.
fn parse_probe(out: &str) -> Option<Probed> {
    let value = |key: &str| out.lines().find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='));
    let size = |key: &str| value(key)?.parse::<u32>().ok().filter(|v| *v > 0);
    let (w, h) = (size("width")?, size("height")?);
    let ccw = value("rotation").and_then(|r| r.parse::<f64>().ok()).filter(|r| r.is_finite()).unwrap_or(0.0);
    let turn_cw = ((-(ccw / 90.0).round() as i64).rem_euclid(4) * 90) as u32;
    let size = if turn_cw % 180 == 90 { (h, w) } else { (w, h) };
    Some(Probed { size, turn_cw })
}

pub struct FfmpegSource {
    input: Input,
    ffmpeg: PathBuf,
    args: Vec<String>,
    size: (u32, u32),
    /// The clockwise turn of the video's rotation tag (0 when none or not probed).
    turn_cw: u32,
    live: bool,
    stream: Option<ChildStream>,
    pending: VecDeque<Got>,
    /// A file's ffmpeg ended: report its error once (as a skip), then end.
    finished: bool,
    seq: u64,
}

impl FfmpegSource {
    pub fn open_file(path: &Path, capture: &CaptureOptions) -> Result<Self> {
        if !path.exists() {
            return Err(RuntimeError::InputMissing { path: path.to_path_buf() });
        }
        if path.is_dir() {
            return Err(RuntimeError::NotVideo {
                path: path.to_path_buf(),
                reason: "it is a folder; use --source dir:DIR for a folder of images".into(),
            });
        }
        Self::open(Input::File(path.to_path_buf()), capture)
    }

    pub fn open_stream(url: &str, capture: &CaptureOptions) -> Result<Self> {
        Self::open(Input::Url(url.to_string()), capture)
    }

    fn open(input: Input, capture: &CaptureOptions) -> Result<Self> {
        let tool = |program: &str| {
            find_on_path(program).ok_or_else(|| RuntimeError::ToolMissing {
                source_name: input.describe(),
                program: program.into(),
                install: FFMPEG_INSTALL.into(),
            })
        };
        let ffmpeg = tool("ffmpeg")?;
        let live = matches!(input, Input::Url(_));
        let Probed { size, turn_cw } = match capture.size() {
            Some(size) => Probed { size, turn_cw: 0 },
            None => probe(&tool("ffprobe")?, &input.arg(), live).map_err(|reason| match &input {
                Input::File(p) => RuntimeError::NotVideo { path: p.clone(), reason },
                Input::Url(u) => RuntimeError::Capture {
                    source_name: u.clone(),
                    reason: format!("cannot open the stream: {reason}; check the URL and that the server is up"),
                },
            })?,
        };
        let args = ffmpeg_args(&input.arg(), live, size.0, size.1, capture.fps);
        let mut source = FfmpegSource {
            input,
            ffmpeg,
            args,
            size,
            turn_cw,
            live,
            stream: None,
            pending: VecDeque::new(),
            finished: false,
            seq: 0,
        };
        source.start()?;
        Ok(source)
    }

    fn err(&self, reason: String) -> RuntimeError {
        RuntimeError::Capture { source_name: self.describe(), reason }
    }

    /// (Re)starts ffmpeg and waits for its first piece of output.
    fn start(&mut self) -> Result<()> {
        self.stream = None;
        self.pending.clear();
        let mut cmd = Command::new(&self.ffmpeg);
        cmd.args(&self.args);
        let frame_len = self.size.0 as usize * self.size.1 as usize * 3;
        let mut stream = ChildStream::spawn("ffmpeg", cmd, self.live, fixed_frames(frame_len))
            .map_err(|e| self.err(format!("cannot start {}: {e}", self.ffmpeg.display())))?;
        match stream.next(FIRST_FRAME_TIMEOUT) {
            got @ (Got::Frame(_) | Got::Skip(_)) => self.pending.push_back(got),
            Got::Ended { why, .. } => {
                return Err(match &self.input {
                    Input::File(p) => RuntimeError::NotVideo { path: p.clone(), reason: why },
                    Input::Url(_) => self.err(format!("cannot read the stream: {why}")),
                });
            }
            Got::Stalled(t) => {
                let tail = stream.stderr_tail();
                return Err(self.err(format!("no frame from ffmpeg within {} s {tail}", t.as_secs())));
            }
        }
        self.stream = Some(stream);
        Ok(())
    }
}

impl FrameSource for FfmpegSource {
    fn describe(&self) -> String {
        self.input.describe()
    }

    fn is_live(&self) -> bool {
        self.live
    }

    fn frame_size(&self) -> Option<(u32, u32)> {
        Some(self.size)
    }

    fn note(&self) -> Option<String> {
        (self.turn_cw != 0).then(|| {
            format!(
                "{}: its rotation tag turns the frames {} degrees clockwise, as players show them ({}x{}); --rotate turns them further",
                self.describe(),
                self.turn_cw,
                self.size.0,
                self.size.1
            )
        })
    }

    fn next(&mut self) -> Result<Fetch> {
        if self.finished {
            return Ok(Fetch::End);
        }
        let got = match self.pending.pop_front() {
            Some(g) => g,
            None => match self.stream.as_mut() {
                Some(s) => s.next(STALL_TIMEOUT),
                None => return Err(self.err("not running".into())),
            },
        };
        let name = format!("{} frame {}", self.describe(), self.seq);
        match got {
            Got::Frame(c) => match RgbImage::from_raw(self.size.0, self.size.1, c.bytes) {
                Some(img) => Ok(Frame::captured_at(&mut self.seq, img, c.at, c.wall)),
                None => {
                    self.seq += 1;
                    Ok(Fetch::Skip { name, reason: "raw frame of the wrong size".into() })
                }
            },
            Got::Skip(reason) => {
                self.seq += 1;
                Ok(Fetch::Skip { name, reason })
            }
            Got::Ended { ok, why } if !self.live => {
                // A file: the end, reported as a skip if ffmpeg failed partway.
                self.finished = true;
                self.stream = None;
                Ok(if ok { Fetch::End } else { Fetch::Skip { name: self.describe(), reason: why } })
            }
            Got::Ended { why, .. } => {
                self.stream = None;
                Err(self.err(format!("stream ended: {why}")))
            }
            Got::Stalled(t) => Err(self.err(format!("no frame for {} s", t.as_secs()))),
        }
    }

    fn reconnect(&mut self) -> Result<()> {
        if !self.live {
            // Restarting a file would classify its frames twice.
            return Err(self.err("the video file cannot be re-read".into()));
        }
        self.start()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_output_of_files_and_mpeg_ts_streams_is_parsed() {
        let size = |out: &str| parse_probe(out).map(|p| p.size);
        assert_eq!(size("width=451\nheight=300\n"), Some((451, 300)));
        // What ffprobe prints for an MPEG-TS stream: the stream, then again under its program.
        assert_eq!(size("width=450\nheight=300\nwidth=450\nheight=300\n"), Some((450, 300)));
        for bad in ["", "width=0\nheight=0\n", "width=N/A\nheight=300\n", "height=300\n"] {
            assert_eq!(parse_probe(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_rotation_tag_gives_the_turn_and_the_size_players_show() {
        // A portrait phone video: stored 1920x1080, displayed 1080x1920 (ffprobe: rotation=-90).
        let cases = [
            ("", (1920, 1080), 0),
            ("rotation=0\n", (1920, 1080), 0),
            ("rotation=-90\n", (1080, 1920), 90),
            ("rotation=90\n", (1080, 1920), 270),
            ("rotation=180\n", (1920, 1080), 180),
            ("rotation=-180\n", (1920, 1080), 180),
            ("rotation=270\n", (1080, 1920), 90),
            ("rotation=-89.99\n", (1080, 1920), 90),
            ("rotation=N/A\n", (1920, 1080), 0),
        ];
        for (tag, size, turn_cw) in cases {
            let out = format!("width=1920\nheight=1080\n{tag}");
            assert_eq!(parse_probe(&out), Some(Probed { size, turn_cw }), "{tag:?}");
        }
    }

    #[test]
    fn the_command_forces_the_size_and_writes_raw_rgb() {
        let a = ffmpeg_args("clip.mp4", false, 320, 240, None).join(" ");
        assert!(a.contains("-i clip.mp4 -map 0:v:0"), "{a}");
        assert!(a.contains("-vf scale=320:240 -vsync passthrough -f rawvideo -pix_fmt rgb24 -"), "{a}");
        assert!(!a.contains("nobuffer") && !a.contains("fpsprobesize") && !a.contains("analyzeduration"), "{a}");
        let s = ffmpeg_args("rtsp://cam/1", true, 640, 480, Some(5.0)).join(" ");
        assert!(
            s.contains("-fpsprobesize 0 -analyzeduration 1000000 -rtsp_transport tcp -i rtsp://cam/1")
                && s.contains("nobuffer")
                && s.contains("scale=640:480,fps=5"),
            "{s}"
        );
        // The probe opens the stream the way the decoder will (TCP for RTSP).
        assert_eq!(
            input_args("rtsp://cam/1", true)[4..],
            ["-fpsprobesize", "0", "-analyzeduration", "1000000", "-rtsp_transport", "tcp", "-i", "rtsp://cam/1"]
        );
    }

    #[test]
    fn a_live_probe_that_finds_no_size_quickly_is_repeated_with_the_default_analysis() {
        // A stand-in ffprobe: no size while the analysis is cut short (a stream whose first key
        // frame came late), the size otherwise; every call is logged.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let (text, script) = (dir.path().join("ffprobe.txt"), dir.path().join("ffprobe"));
        std::fs::write(
            &text,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{d}/calls'\ncase \"$*\" in *analyzeduration*) exit 0 ;; esac\n\
                 [ -e '{d}/never' ] || printf 'width=450\\nheight=300\\n'\n"
            ),
        )
        .unwrap();
        // Installed by another process: a write descriptor of this one, inherited by a child
        // that another test thread forks, would make exec fail with ETXTBSY.
        let ok = std::process::Command::new("install").args(["-m", "755"]).arg(&text).arg(&script).status().unwrap();
        assert!(ok.success());
        let calls = || std::fs::read_to_string(dir.path().join("calls")).unwrap_or_default();

        let p = probe(&script, "udp://127.0.0.1:1234", true).unwrap();
        assert_eq!(p.size, (450, 300));
        let log = calls();
        assert_eq!(log.lines().count(), 2, "{log}");
        assert!(log.lines().next().unwrap().contains("-analyzeduration 1000000"), "{log}");
        assert!(!log.lines().nth(1).unwrap().contains("analyzeduration"), "{log}");

        // A file is probed once, with ffmpeg's default analysis.
        std::fs::remove_file(dir.path().join("calls")).unwrap();
        assert_eq!(probe(&script, "clip.ts", false).unwrap().size, (450, 300));
        assert_eq!(calls().lines().count(), 1);

        // No size either way: "no video stream", after both tries.
        std::fs::remove_file(dir.path().join("calls")).unwrap();
        std::fs::write(dir.path().join("never"), b"").unwrap();
        assert_eq!(probe(&script, "udp://127.0.0.1:1234", true).unwrap_err(), "no video stream");
        assert_eq!(calls().lines().count(), 2);
    }
}
