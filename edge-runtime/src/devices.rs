//! `edge-runtime devices`: what this machine can capture from. V4L2 cameras (from
//! `/sys/class/video4linux`, with their MJPEG/YUYV modes through nokhwa when built with the
//! `camera` feature), the Pi cameras `rpicam-vid --list-cameras` sees, and whether ffmpeg is
//! installed for `video:` and stream URLs, each with what to do when it is missing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::source::{
    CameraMode, FFMPEG_INSTALL, LIBCAMERA_INSTALL, LIBCAMERA_PROGRAMS, find_on_path, run_with_timeout,
};

const SYSFS_V4L: &str = "/sys/class/video4linux";
const TOOL_TIMEOUT: Duration = Duration::from_secs(15);

/// Everything `devices` found; `--json` prints it as is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceReport {
    pub v4l2: V4l2Report,
    pub libcamera: LibcameraReport,
    pub ffmpeg: FfmpegReport,
    /// What to do about what is missing, one sentence each.
    pub advice: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct V4l2Report {
    /// Whether this edge-runtime can capture from V4L2 (`camera` feature).
    pub supported: bool,
    pub cameras: Vec<V4l2Device>,
}

/// One `/dev/videoN` node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct V4l2Device {
    pub index: u32,
    pub device: String,
    pub name: String,
    /// MJPEG and YUYV modes (empty when they could not be listed; see `error`).
    pub modes: Vec<CameraMode>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LibcameraReport {
    /// The capture program found on PATH (`rpicam-vid`, or `libcamera-vid` on Bullseye).
    pub program: Option<String>,
    /// `N : sensor [...]` lines of `--list-cameras`, as `libcamera:N` will open them.
    pub cameras: Vec<LibcameraCamera>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LibcameraCamera {
    pub index: u32,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FfmpegReport {
    pub ffmpeg: Option<String>,
    pub ffprobe: Option<String>,
    /// First line of `ffmpeg -version`.
    pub version: Option<String>,
}

impl DeviceReport {
    /// Whether any camera (V4L2 or Pi) was found.
    pub fn any_camera(&self) -> bool {
        !self.v4l2.cameras.is_empty() || !self.libcamera.cameras.is_empty()
    }
}

/// Looks at this machine.
pub fn scan() -> DeviceReport {
    let v4l2 = V4l2Report { supported: cfg!(feature = "camera"), cameras: v4l2_devices(Path::new(SYSFS_V4L)) };
    let libcamera = libcamera_cameras();
    let ffmpeg = FfmpegReport {
        ffmpeg: find_on_path("ffmpeg").map(|p| p.display().to_string()),
        ffprobe: find_on_path("ffprobe").map(|p| p.display().to_string()),
        version: find_on_path("ffmpeg").and_then(|p| {
            let mut cmd = Command::new(p);
            cmd.arg("-version");
            let (status, out, _) = run_with_timeout(cmd, TOOL_TIMEOUT).ok()?;
            status.filter(|s| s.success())?;
            out.lines().next().map(str::to_string)
        }),
    };
    let advice = advice(&v4l2, &libcamera, &ffmpeg);
    DeviceReport { v4l2, libcamera, ffmpeg, advice }
}

fn advice(v4l2: &V4l2Report, libcamera: &LibcameraReport, ffmpeg: &FfmpegReport) -> Vec<String> {
    let mut out = Vec::new();
    if v4l2.cameras.is_empty() {
        out.push(
            "No V4L2 camera (/dev/video*): plug in a USB camera; in a container, pass it through (docker run --device /dev/video0)."
                .into(),
        );
    } else if !v4l2.supported {
        out.push("This edge-runtime was built without the `camera` feature, so camera:N cannot open these: rebuild with `cargo build --release -p edge-runtime --features camera` (needs libclang-dev).".into());
    } else if v4l2.cameras.iter().all(|c| c.modes.is_empty()) {
        out.push("No /dev/video* node offers MJPEG or YUYV capture: check `v4l2-ctl --list-formats-ext` and the permissions (group video).".into());
    }
    match (&libcamera.program, libcamera.cameras.is_empty()) {
        (None, _) => out.push(format!(
            "No Pi camera tool ({} not on PATH): on a Raspberry Pi, {LIBCAMERA_INSTALL}.",
            LIBCAMERA_PROGRAMS.join(" / ")
        )),
        (Some(p), true) => out.push(format!(
            "{p} sees no camera: check the ribbon cable (power off first) and camera_auto_detect=1 in /boot/firmware/config.txt, then reboot."
        )),
        _ => {}
    }
    if ffmpeg.ffmpeg.is_none() || ffmpeg.ffprobe.is_none() {
        out.push(format!("ffmpeg/ffprobe not found, needed for video:FILE and stream URLs: {FFMPEG_INSTALL}."));
    }
    out
}

/// `/dev/videoN` nodes listed in sysfs, with their modes where nokhwa can read them.
fn v4l2_devices(sysfs: &Path) -> Vec<V4l2Device> {
    let Ok(entries) = std::fs::read_dir(sysfs) else {
        return Vec::new();
    };
    let mut devices: Vec<V4l2Device> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let index: u32 = file.strip_prefix("video")?.parse().ok()?;
            let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default().trim().to_string();
            Some(V4l2Device { index, device: format!("/dev/{file}"), name, modes: Vec::new(), error: None })
        })
        .collect();
    devices.sort_by_key(|d| d.index);
    for d in &mut devices {
        list_modes(d);
    }
    devices
}

#[cfg(feature = "camera")]
fn list_modes(d: &mut V4l2Device) {
    match crate::source::camera_modes(d.index) {
        Ok((name, modes)) => {
            if d.name.is_empty() {
                d.name = name;
            }
            if modes.is_empty() {
                d.error = Some("no MJPEG or YUYV mode (a metadata or output node?)".into());
            }
            d.modes = modes;
        }
        Err(e) => d.error = Some(e.to_string()),
    }
}

#[cfg(not(feature = "camera"))]
fn list_modes(d: &mut V4l2Device) {
    d.error = Some("modes not listed: built without the `camera` feature".into());
}

fn libcamera_cameras() -> LibcameraReport {
    let Some(program) = LIBCAMERA_PROGRAMS.iter().find_map(|p| find_on_path(p)) else {
        return LibcameraReport { program: None, cameras: Vec::new(), error: None };
    };
    let mut cmd = Command::new(&program);
    cmd.arg("--list-cameras");
    let name = program.display().to_string();
    match run_with_timeout(cmd, TOOL_TIMEOUT) {
        Ok((Some(_), out, err)) => {
            // rpicam-apps print the list on stdout (older releases on stderr).
            let cameras = parse_list_cameras(&format!("{out}\n{err}"));
            LibcameraReport { program: Some(name), cameras, error: None }
        }
        Ok((None, _, _)) => LibcameraReport {
            program: Some(name),
            cameras: Vec::new(),
            error: Some(format!("--list-cameras gave no answer within {} s", TOOL_TIMEOUT.as_secs())),
        },
        Err(e) => LibcameraReport { program: Some(name), cameras: Vec::new(), error: Some(e.to_string()) },
    }
}

/// The `N : description` lines of `rpicam-vid --list-cameras`.
pub fn parse_list_cameras(text: &str) -> Vec<LibcameraCamera> {
    text.lines()
        .filter_map(|l| {
            let (n, rest) = l.trim().split_once(" : ")?;
            Some(LibcameraCamera { index: n.trim().parse().ok()?, description: rest.trim().to_string() })
        })
        .collect()
}

/// The human-readable report.
pub fn render_text(r: &DeviceReport) -> String {
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    line("V4L2 cameras (camera:N):".into());
    if r.v4l2.cameras.is_empty() {
        line("  none (no /dev/video* device)".into());
    }
    for c in &r.v4l2.cameras {
        let name = if c.name.is_empty() { "unnamed" } else { &c.name };
        line(format!("  camera:{}  {}  {name}", c.index, c.device));
        let mut by_format: Vec<(String, Vec<String>)> = Vec::new();
        for m in &c.modes {
            let entry = format!("{}x{}@{}", m.width, m.height, m.fps);
            match by_format.iter_mut().find(|(f, _)| *f == m.format.to_string()) {
                Some((_, sizes)) => sizes.push(entry),
                None => by_format.push((m.format.to_string(), vec![entry])),
            }
        }
        for (format, sizes) in by_format {
            line(format!("    {format}: {}", sizes.join(" ")));
        }
        if let Some(e) = &c.error {
            line(format!("    {e}"));
        }
    }
    line("Pi cameras (libcamera:N):".into());
    match &r.libcamera.program {
        None => line(format!("  none: {} not installed", LIBCAMERA_PROGRAMS.join(" / "))),
        Some(p) => {
            if r.libcamera.cameras.is_empty() {
                line(format!("  none ({p} --list-cameras lists no camera)"));
            }
            for c in &r.libcamera.cameras {
                line(format!("  libcamera:{}  {}", c.index, c.description));
            }
            if let Some(e) = &r.libcamera.error {
                line(format!("  {e}"));
            }
        }
    }
    line("ffmpeg (video:FILE, rtsp://, http://, https://, udp://):".into());
    match (&r.ffmpeg.ffmpeg, &r.ffmpeg.ffprobe) {
        (Some(f), Some(p)) => {
            line(format!("  {f}, {p}"));
            if let Some(v) = &r.ffmpeg.version {
                line(format!("  {v}"));
            }
        }
        _ => line("  not installed".into()),
    }
    if !r.any_camera() {
        line("No camera found.".into());
    }
    if !r.advice.is_empty() {
        line("What to do:".into());
        for a in &r.advice {
            line(format!("  - {a}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_cameras_output_is_parsed() {
        let text = "Available cameras\n-----------------\n0 : imx708 [4608x2592 10-bit RGGB] (/base/soc/i2c0mux/i2c@1/imx708@1a)\n    Modes: 'SRGGB10_CSI2P' : 1536x864 [120.13 fps - (768, 432)/3072x1728 crop]\n1 : ov5647 [2592x1944 10-bit GBRG] (/base/soc/i2c0mux/i2c@0/ov5647@36)\n";
        let cams = parse_list_cameras(text);
        assert_eq!(cams.len(), 2);
        assert_eq!((cams[0].index, cams[1].index), (0, 1));
        assert!(cams[0].description.starts_with("imx708"));
        assert!(parse_list_cameras("No cameras available!").is_empty());
    }

    #[test]
    fn a_fake_sysfs_tree_lists_video_nodes_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for (node, name) in [("video10", "bcm2835-isp"), ("video0", "HD Webcam"), ("vbi0", "x")] {
            std::fs::create_dir(dir.path().join(node)).unwrap();
            std::fs::write(dir.path().join(node).join("name"), format!("{name}\n")).unwrap();
        }
        let devs = v4l2_devices(dir.path());
        let got: Vec<(u32, &str, &str)> = devs.iter().map(|d| (d.index, d.device.as_str(), d.name.as_str())).collect();
        assert_eq!(got, [(0, "/dev/video0", "HD Webcam"), (10, "/dev/video10", "bcm2835-isp")]);
        assert!(v4l2_devices(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn advice_names_what_to_install() {
        let r = DeviceReport {
            v4l2: V4l2Report { supported: true, cameras: Vec::new() },
            libcamera: LibcameraReport { program: None, cameras: Vec::new(), error: None },
            ffmpeg: FfmpegReport { ffmpeg: None, ffprobe: None, version: None },
            advice: Vec::new(),
        };
        let a = advice(&r.v4l2, &r.libcamera, &r.ffmpeg).join("\n");
        assert!(a.contains("No V4L2 camera") && a.contains("rpicam-apps") && a.contains("apt install ffmpeg"), "{a}");
        let text = render_text(&DeviceReport { advice: vec!["do this".into()], ..r });
        assert!(text.contains("No camera found") && text.contains("- do this"), "{text}");
    }
}
