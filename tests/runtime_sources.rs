//! Capture sources end to end, through the built binary and real programs: `libcamera:N`
//! against a stand-in `rpicam-vid` (a script put first on PATH that checks its arguments and
//! writes real JPEG frames of the fixture photos), `video:FILE` and an MJPEG-over-HTTP stream
//! through the real ffmpeg (which also serves the stream, on 127.0.0.1), an MPEG-TS stream over
//! UDP and a `.ts` file (ffmpeg sends it to 127.0.0.1), an H.264 RTSP camera stream (GStreamer's
//! RTSP server on 127.0.0.1, TCP only), `devices`, capture
//! flags, `ts`/`source` in every record, and truncated JPEGs.

mod runtime_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use edge_runtime::sink::{FrameResult, rfc3339_utc};
use runtime_support::*;

fn run_args(source: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["run".to_string(), "--source".into(), source.into()];
    args.extend(MOBILENET.args());
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn records(out: &std::process::Output) -> Vec<FrameResult> {
    stdout(out).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// MobileNetV2's output 0 is `background`: ImageNet class = output index - 1.
fn top1_is_cat(r: &FrameResult) -> bool {
    is_cat(r.top[0].index as i64 - 1)
}

/// Fixture photos as the files a stand-in camera writes: `chelsea.jpg` (the cat, re-encoded
/// from the PNG), `other.jpg` (an ImageNet photo, not a cat), `cut.jpg` (its first 3000
/// bytes: a truncated JPEG).
fn frame_files(dir: &Path) {
    let chelsea = image::open(photos_dir().join("chelsea.png")).unwrap();
    chelsea.to_rgb8().save_with_format(dir.join("chelsea.jpg"), image::ImageFormat::Jpeg).unwrap();
    let other = std::fs::read(photos_dir().join("imagenet_02_438.jpg")).unwrap();
    std::fs::write(dir.join("other.jpg"), &other).unwrap();
    std::fs::write(dir.join("cut.jpg"), &other[..3000]).unwrap();
}

/// Writes an executable `rpicam-vid` into `dir` that exits 2 unless called with exactly
/// perch's documented arguments for `libcamera:0` at the defaults, then runs `body` (sh, with
/// `$D` the folder holding the frame files).
fn stand_in(dir: &Path, body: &str) -> PathBuf {
    let script = dir.join("rpicam-vid");
    let text = format!(
        r#"#!/bin/sh
D='{d}'
expected="--camera 0 -t 0 -n --codec mjpeg --width 640 --height 480 --framerate 30 -o -"
if [ "$*" != "$expected" ]; then
  echo "stand-in rpicam-vid: unexpected arguments: $*" >&2
  exit 2
fi
{body}
"#,
        d = dir.display()
    );
    // Written here, made executable by `install` in another process: a write descriptor of this
    // one, inherited by a child another test thread forks, would make exec fail with ETXTBSY.
    let source = script.with_extension("txt");
    std::fs::write(&source, text).unwrap();
    let ok = std::process::Command::new("install").args(["-m", "755"]).arg(&source).arg(&script).status().unwrap();
    assert!(ok.success());
    script
}

#[test]
fn libcamera_frames_are_classified_with_capture_time_and_source() {
    let dir = tempfile::tempdir().unwrap();
    frame_files(dir.path());
    // A bounded "camera": 200 frames at ~20 fps, then it stops (the run ends long before).
    stand_in(dir.path(), r#"i=0; while [ $i -lt 200 ]; do cat "$D/chelsea.jpg"; sleep 0.05; i=$((i+1)); done"#);
    let before = rfc3339_utc(SystemTime::now());
    let out = edge_runtime_with_path(&run_args("libcamera:0", &["--frames", "3", "--emit", "jsonl"]), dir.path());
    let after = rfc3339_utc(SystemTime::now());
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let recs = records(&out);
    assert_eq!(recs.len(), 3, "{err}");
    for r in &recs {
        assert!(top1_is_cat(r), "chelsea is a cat: {r:?}");
        assert_eq!(r.source, "libcamera:0");
        assert!(is_rfc3339_utc(&r.ts) && before <= r.ts && r.ts <= after, "{} not in {before}..{after}", r.ts);
    }
    assert!(recs.windows(2).all(|w| w[0].seq < w[1].seq && w[0].ts <= w[1].ts), "{recs:?}");
    let c = summary(&err);
    assert_eq!((c.classified, c.skipped, c.reconnects), (3, 0, 0), "{err}");
}

#[test]
fn a_capture_program_that_dies_is_restarted_then_the_run_ends_as_lost_with_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    frame_files(dir.path());
    // Runs 1 and 2 deliver 3 frames each and die; from run 3 on the camera is gone.
    stand_in(
        dir.path(),
        r#"n=$(cat "$D/runs" 2>/dev/null || echo 0); echo $((n+1)) > "$D/runs"
if [ "$n" -ge 2 ]; then echo "ERROR: *** no cameras available ***" >&2; exit 255; fi
for i in 1 2 3; do cat "$D/chelsea.jpg"; sleep 0.1; done
echo "camera disconnected" >&2; exit 1"#,
    );
    let out = edge_runtime_with_path(&run_args("libcamera:0", &["--emit", "jsonl"]), dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("libcamera:0 lost after 5 attempts") && err.contains("no cameras available"), "{err}");
    let c = summary(&err);
    assert_eq!(c.reconnects, 1, "run 2 came back once: {err}");
    assert!(c.classified >= 2, "frames of both runs are classified: {err}");
    assert!(records(&out).iter().all(top1_is_cat));
    let runs: u32 = std::fs::read_to_string(dir.path().join("runs")).unwrap().trim().parse().unwrap();
    // A bounded number of attempts (not a time limit: speed lives in benchmarks).
    assert_eq!(runs, 2 + 5, "one start, one successful restart, five failed ones");
}

#[test]
fn garbage_and_truncated_frames_are_counted_skips() {
    let dir = tempfile::tempdir().unwrap();
    frame_files(dir.path());
    // good frame, stray bytes, a JPEG cut after 3000 bytes, repeated.
    stand_in(
        dir.path(),
        r#"i=0; while [ $i -lt 100 ]; do cat "$D/chelsea.jpg"; printf 'NOT A JPEG %s ' $i; cat "$D/cut.jpg"; sleep 0.05; i=$((i+1)); done"#,
    );
    let out = edge_runtime_with_path(&run_args("libcamera:0", &["--frames", "3", "--emit", "jsonl"]), dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "skips give exit 3: {err}");
    assert!(records(&out).iter().all(top1_is_cat), "{err}");
    let c = summary(&err);
    assert!(c.classified == 3 && c.skipped >= 2, "{err}");
    assert!(err.contains("not JPEG") && err.contains("truncated JPEG frame"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_missing_rpicam_vid_is_a_clear_error_naming_the_package() {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(perch::bin("edge-runtime"))
        .args(run_args("libcamera:0", &[]))
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("rpicam-vid") && err.contains("rpicam-apps") && err.contains("not installed"), "{err}");
}

/// 320x240 PNG frames of the photos in this order, and an MJPEG AVI of them made by ffmpeg.
fn make_video(dir: &Path, photos: &[&str]) -> PathBuf {
    for (i, p) in photos.iter().enumerate() {
        let img = image::open(photos_dir().join(p)).unwrap().to_rgb8();
        let small = image::imageops::resize(&img, 320, 240, image::imageops::FilterType::Triangle);
        small.save(dir.join(format!("{i:03}.png"))).unwrap();
    }
    let video = dir.join("clip.avi");
    let pattern = dir.join("%03d.png");
    ffmpeg(&["-framerate", "5", "-i", &s(&pattern), "-c:v", "mjpeg", "-q:v", "2", &s(&video)]);
    video
}

#[test]
fn a_video_file_is_classified_frame_by_frame_in_order() {
    require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let order = ["chelsea.png", "chelsea.png", "imagenet_02_438.jpg", "imagenet_02_438.jpg", "chelsea.png"];
    let video = make_video(dir.path(), &order);
    let source = format!("video:{}", s(&video));
    let out = edge_runtime(&run_args(&source, &["--emit", "jsonl"]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let recs = records(&out);
    assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2, 3, 4], "{err}");
    let cats: Vec<bool> = recs.iter().map(top1_is_cat).collect();
    assert_eq!(cats, [true, true, false, false, true], "{recs:?}");
    assert_eq!(recs[2].top[0].index, recs[3].top[0].index);
    assert!(recs.iter().all(|r| r.source == source && is_rfc3339_utc(&r.ts)));
    let c = summary(&err);
    assert_eq!((c.frames_in, c.classified, c.dropped), (5, 5, 0), "a file is not live: nothing dropped: {err}");
    assert!(err.contains("SourceEnded"), "{err}");

    // --width/--height scale the decoded frames; --rotate 180 --flip v (a mirror) keeps a cat a cat.
    let out = edge_runtime(&run_args(
        &source,
        &["--emit", "jsonl", "--width", "320", "--height", "240", "--rotate", "180", "--flip", "v"],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(records(&out).iter().map(top1_is_cat).collect::<Vec<_>>(), cats);
}

/// Copies `stored` to `tagged` with the display rotation of a portrait phone video whose frames
/// are stored a quarter turn counter-clockwise (ffprobe: `rotation=-90`): `-metadata rotate`
/// up to ffmpeg 6, `-display_rotation` from 6.1.
fn tag_portrait(stored: &Path, tagged: &Path) {
    let src = s(stored);
    let tagging: [&[&str]; 2] = [
        &["-i", &src, "-c", "copy", "-metadata:s:v:0", "rotate=270"],
        &["-display_rotation", "-90", "-i", &src, "-c", "copy"],
    ];
    for args in tagging {
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
            .args(args)
            .arg(tagged)
            .output()
            .unwrap();
        let probe = Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "stream_side_data=rotation", "-of", "csv=p=0"])
            .arg(tagged)
            .output()
            .unwrap();
        if out.status.success() && stdout(&probe).trim() == "-90" {
            return;
        }
    }
    panic!("this ffmpeg cannot write a display rotation into {}", tagged.display());
}

/// A portrait phone video: frames stored turned, with the tag that tells players to turn them
/// back. perch classifies what players show, as it does for a photo's EXIF orientation.
#[test]
fn a_phone_video_s_rotation_tag_is_applied_like_a_photo_s_exif_orientation() {
    require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let chelsea = s(&photos_dir().join("chelsea.png"));
    // Three frames of lossless H.264 in 4:4:4: the stored frames are exactly the upright ones, turned.
    let encode = |filter: &str, out: &Path| {
        let input = ["-loop", "1", "-i", &chelsea, "-vf", filter, "-t", "0.6", "-r", "5"];
        ffmpeg(&[&input[..], &["-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", &s(out)]].concat());
    };
    let (upright, stored, tagged) =
        (dir.path().join("upright.mp4"), dir.path().join("stored.mp4"), dir.path().join("portrait.mp4"));
    encode("scale=450:300", &upright);
    encode("scale=450:300,transpose=2", &stored);
    tag_portrait(&stored, &tagged);
    let classify = |video: &Path| {
        let out = edge_runtime(&run_args(&format!("video:{}", s(video)), &["--emit", "jsonl"]));
        assert!(out.status.success(), "{}", stderr(&out));
        (records(&out), stderr(&out))
    };
    let (want, _) = classify(&upright);
    let (got, err) = classify(&tagged);
    let note = "portrait.mp4: its rotation tag turns the frames 90 degrees clockwise, as players show them (450x300)";
    assert!(err.contains(note), "{err}");
    assert_eq!(got.len(), 3, "{err}");
    assert_eq!(want.len(), 3);
    for (g, w) in got.iter().zip(&want) {
        assert!(top1_is_cat(g), "{g:?}");
        for (a, b) in g.top.iter().zip(&w.top) {
            assert!(a.index == b.index && (a.score - b.score).abs() < 1e-4, "tagged {g:?}\nupright {w:?}");
        }
    }
    // The stored frames as they are (what perch classified before it read the tag) differ.
    let (sideways, _) = classify(&stored);
    let (a, b) = (&sideways[0].top[0], &want[0].top[0]);
    assert!(a.index != b.index || (a.score - b.score).abs() > 0.01, "sideways {a:?}, upright {b:?}");
}

/// `ffmpeg -listen 1` serving `photo` as MJPEG over HTTP on 127.0.0.1:`port` (one client).
fn serve_mjpeg(photo: &Path, port: u16) -> KillOnDrop {
    let url = format!("http://127.0.0.1:{port}/feed.mjpg");
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-loop", "1", "-i", &s(photo)])
        .args(["-c:v", "mjpeg", "-q:v", "3", "-f", "mpjpeg", "-listen", "1", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the ffmpeg server");
    listening(KillOnDrop(child), port, "ffmpeg", "")
}

/// `server` once it listens on 127.0.0.1:`port` (within 20 s). One that exits first fails the
/// test with its stderr and `hint`.
fn listening(mut server: KillOnDrop, port: u16, what: &str, hint: &str) -> KillOnDrop {
    let until = Instant::now() + Duration::from_secs(20);
    while !is_listening(port) {
        if let Ok(Some(status)) = server.0.try_wait() {
            let mut err = String::new();
            std::io::Read::read_to_string(server.0.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("{what} exited ({status}): {err}{hint}");
        }
        assert!(Instant::now() < until, "{what} did not listen on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

#[test]
fn an_mjpeg_http_stream_is_classified_live() {
    require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    frame_files(dir.path());
    let port = free_port();
    let _server = serve_mjpeg(&dir.path().join("chelsea.jpg"), port);
    let url = format!("http://127.0.0.1:{port}/feed.mjpg");
    // --width/--height: no ffprobe connection (this server takes exactly one client).
    three_live_cats(&url, &["--width", "451", "--height", "300"]);
}

/// `run --source url --frames 3` on a stream of Chelsea: three cat records stamped with the
/// source and the capture time, and the run ends on the frame limit.
fn three_live_cats(url: &str, extra: &[&str]) {
    let mut extra = extra.to_vec();
    extra.extend(["--frames", "3", "--emit", "jsonl"]);
    let out = edge_runtime(&run_args(url, &extra));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let recs = records(&out);
    assert_eq!(recs.len(), 3, "{err}");
    assert!(recs.iter().all(|r| top1_is_cat(r) && r.source == url && is_rfc3339_utc(&r.ts)), "{recs:?}");
    assert!(err.contains("FrameLimit"), "{err}");
}

/// ffmpeg sending `photo` as an MPEG-2 transport stream to udp://127.0.0.1:`port`, an I-frame
/// every 5 frames, until dropped: what an IP camera or `ffmpeg ... -f mpegts udp://` sends.
fn send_mpegts_udp(photo: &Path, port: u16) -> KillOnDrop {
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-loop", "1", "-i", &s(photo)])
        .args(["-vf", "scale=450:300", "-c:v", "mpeg2video", "-g", "5", "-q:v", "4", "-f", "mpegts"])
        .arg(format!("udp://127.0.0.1:{port}?pkt_size=1316"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the ffmpeg sender");
    KillOnDrop(child)
}

#[test]
fn an_mpeg_ts_stream_over_udp_and_a_ts_file_are_probed_and_classified() {
    require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    frame_files(dir.path());
    let port = free_port();
    let _sender = send_mpegts_udp(&dir.path().join("chelsea.jpg"), port);
    let url = format!("udp://127.0.0.1:{port}");
    // No --width/--height: ffprobe reads the size off the stream (MPEG-TS lists it twice).
    three_live_cats(&url, &[]);

    // The same container as a file: every frame, in order.
    let ts = dir.path().join("clip.ts");
    let avi = make_video(dir.path(), &["chelsea.png", "imagenet_02_438.jpg", "chelsea.png"]);
    ffmpeg(&["-i", &s(&avi), "-c:v", "mpeg2video", "-q:v", "2", "-f", "mpegts", &s(&ts)]);
    let out = edge_runtime(&run_args(&format!("video:{}", s(&ts)), &["--emit", "jsonl"]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(records(&out).iter().map(top1_is_cat).collect::<Vec<_>>(), [true, false, true], "{err}");
}

/// GStreamer's RTSP server (tests/python/rtsp_server.py, Debian's python3 and its gi bindings)
/// serving `clip`'s H.264 at rtsp://127.0.0.1:`port`/cam, over TCP only.
fn serve_rtsp(clip: &Path, port: u16) -> KillOnDrop {
    let script = perch::workspace_root().join("tests/python/rtsp_server.py");
    let child = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(port.to_string())
        .arg(clip)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start /usr/bin/python3 (Debian's python3)");
    let hint = "\nThis test needs GStreamer's RTSP server: \
                `sudo apt-get install -y python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good`";
    listening(KillOnDrop(child), port, "the RTSP server", hint)
}

#[test]
fn an_rtsp_camera_stream_over_tcp_is_probed_and_classified() {
    require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    frame_files(dir.path());
    // An IP camera's stream: H.264, a key frame every second at 5 fps.
    let clip = dir.path().join("cam.mp4");
    let chelsea = s(&dir.path().join("chelsea.jpg"));
    let encode = ["-t", "30", "-r", "5", "-vf", "scale=320:240", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "5"];
    ffmpeg(&[&["-loop", "1", "-i", &chelsea][..], &encode, &[&s(&clip)]].concat());
    let port = free_port();
    let _server = serve_rtsp(&clip, port);
    // No --width/--height: ffprobe opens the stream as the decoder does, over TCP.
    three_live_cats(&format!("rtsp://127.0.0.1:{port}/cam"), &[]);
}

#[test]
fn a_file_that_is_not_a_video_and_an_unreachable_url_are_clear_errors() {
    require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.mp4");
    std::fs::write(&notes, "these are notes, not a video\n".repeat(50)).unwrap();
    let out = edge_runtime(&run_args(&format!("video:{}", s(&notes)), &[]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("notes.mp4 is not a video"), "{err}");

    let missing = edge_runtime(&run_args("video:/nonexistent/clip.mp4", &[]));
    assert!(stderr(&missing).contains("/nonexistent/clip.mp4 does not exist"), "{}", stderr(&missing));

    // Nothing listens on this port (127.0.0.1 only): probed, then with the size given.
    let url = format!("http://127.0.0.1:{}/feed.mjpg", free_port());
    for extra in [&[][..], &["--width", "320", "--height", "240"][..]] {
        let out = edge_runtime(&run_args(&url, extra));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&url) && err.contains("Connection refused"), "{err}");
    }
}

#[test]
fn devices_on_a_machine_without_a_camera_says_so_and_what_to_do() {
    let out = edge_runtime(&["devices"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    let json_out = edge_runtime(&["devices", "--json"]);
    assert!(json_out.status.success(), "{}", stderr(&json_out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&json_out)).expect("one JSON document");
    for key in ["v4l2", "libcamera", "ffmpeg", "advice"] {
        assert!(report.get(key).is_some(), "{key} missing: {report}");
    }
    assert!(text.contains("V4L2 cameras") && text.contains("Pi cameras") && text.contains("ffmpeg"), "{text}");
    let no_camera = report["v4l2"]["cameras"].as_array().unwrap().is_empty()
        && report["libcamera"]["cameras"].as_array().unwrap().is_empty();
    if no_camera {
        assert!(text.contains("No camera found") && text.contains("What to do"), "{text}");
        let advice = report["advice"].as_array().unwrap();
        let advice: Vec<&str> = advice.iter().map(|a| a.as_str().unwrap()).collect();
        assert!(advice.iter().any(|a| a.contains("USB camera")), "{advice:?}");
        assert!(advice.iter().any(|a| a.contains("rpicam")), "{advice:?}");
    }
    // This machine has ffmpeg (the video tests need it): reported with its version.
    require_ffmpeg();
    assert!(report["ffmpeg"]["version"].as_str().is_some_and(|v| v.starts_with("ffmpeg version")), "{report}");
}

#[test]
fn truncated_images_are_skipped_with_a_reason_by_classify_and_dir_sources() {
    let dir = tempfile::tempdir().unwrap();
    let photo = std::fs::read(photos_dir().join("imagenet_02_438.jpg")).unwrap();
    std::fs::write(dir.path().join("cut.jpg"), &photo[..3000]).unwrap();
    std::fs::write(dir.path().join("whole.jpg"), &photo).unwrap();
    let png = std::fs::read(photos_dir().join("chelsea.png")).unwrap();
    std::fs::write(dir.path().join("cut.png"), &png[..png.len() * 6 / 10]).unwrap();

    let mut args = vec!["classify".to_string(), "--json".into()];
    args.extend(MOBILENET.args());
    args.push(s(dir.path()));
    let out = edge_runtime(&args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "only whole.jpg is classified: {err}");
    assert!(lines[0]["path"].as_str().unwrap().ends_with("whole.jpg"));
    let cut_jpg = err.lines().find(|l| l.contains("cut.jpg")).unwrap_or_else(|| panic!("{err}"));
    assert!(cut_jpg.starts_with("skipped") && cut_jpg.contains("truncated JPEG"), "{cut_jpg}");
    assert!(err.lines().any(|l| l.starts_with("skipped") && l.contains("cut.png")), "{err}");

    let out = edge_runtime(&run_args(&format!("dir:{}", s(dir.path())), &["--emit", "jsonl"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(records(&out).len(), 1);
    assert!(err.contains("truncated JPEG") && summary(&err).skipped == 2, "{err}");
}

#[test]
fn capture_flags_are_validated_with_clear_errors() {
    let cases: [(&[&str], &str); 5] = [
        (&["--rotate", "45"], "0, 90, 180 or 270"),
        (&["--flip", "x"], "h (mirror"),
        (&["--roi", "1,2,3"], "X,Y,W,H"),
        (&["--width", "640"], "--width and --height go together"),
        (&["--fps", "0"], "--fps 0"),
    ];
    for (flags, message) in cases {
        let out = edge_runtime(&run_args("synthetic", flags));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(message), "{flags:?}: {err}");
    }
    // Known at open (synthetic frames are 320x240, rotated 240x320): refused before any frame.
    let out = edge_runtime(&run_args("synthetic", &["--rotate", "90", "--roi", "0,0,300,10", "--frames", "1"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--roi 0,0,300,10 does not fit the 240x320 frames"), "{err}");
    // Known at the first frame only (a folder of photos of any size).
    let out = edge_runtime(&run_args(&format!("dir:{}", s(&photos_dir())), &["--roi", "0,0,5000,10"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--roi 0,0,5000,10 does not fit"), "{err}");
    // The same flags work through the --camera shortcut's parser (the camera itself is absent).
    let mut args = vec!["--camera".to_string(), "0".into(), "--rotate".into(), "45".into()];
    args.extend(MOBILENET.args());
    let out = edge_runtime(&args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A region that fits: the cat's side of chelsea.png (451x300) is still a cat.
    let one = tempfile::tempdir().unwrap();
    std::fs::copy(photos_dir().join("chelsea.png"), one.path().join("chelsea.png")).unwrap();
    let out =
        edge_runtime(&run_args(&format!("dir:{}", s(one.path())), &["--roi", "100,0,300,300", "--emit", "jsonl"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(top1_is_cat(&records(&out)[0]));
}
