//! `run --capture DIR --capture-below T`: frames the model is unsure about (smoothed top score
//! below T) are saved as JPEG into `DIR/<predicted label>/<ts>-<score>.jpg`, an image-folder
//! layout that `trainer fit --data` reads once the files are moved into their right classes.
//!
//! The inference thread only copies the classified image and queues it; a writer thread
//! encodes and writes it atomically. Caps (`--capture-max N`, `--capture-max-mb M`) count the
//! files already in DIR too: when one is reached the oldest files are kept and capture stops
//! with one warning; a full disk or an unwritable folder does the same. Inference and the
//! sinks go on either way.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use image::RgbImage;

use crate::error::{Result, RuntimeError};
use crate::pipeline::{FrameObserver, Observed};

/// `--capture*` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectOptions {
    pub dir: PathBuf,
    /// Save frames whose smoothed top score is below this.
    pub below: f32,
    /// At most one frame per this interval (None: every uncertain frame).
    pub every: Option<Duration>,
    /// Stop once DIR holds this many captured JPEGs.
    pub max_files: Option<u64>,
    /// Stop once the captured JPEGs in DIR take this many bytes.
    pub max_bytes: Option<u64>,
}

/// JPEG quality of saved frames: training material, so close to the camera's own.
const QUALITY: u8 = 92;

/// Counts of a capture, readable while it runs.
#[derive(Debug, Default)]
pub struct CollectStats {
    /// Frames written this run.
    pub saved: AtomicU64,
    /// Uncertain frames not saved because the writer was still busy (live sources only).
    pub busy: AtomicU64,
    /// Files and bytes in DIR (those found at start plus those written).
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    /// Why capture stopped, once it did.
    pub stopped: Mutex<Option<String>>,
}

impl CollectStats {
    pub fn stopped(&self) -> Option<String> {
        common::lock(&self.stopped).clone()
    }
}

struct Job {
    image: RgbImage,
    label: String,
    score: f32,
    ts: String,
}

/// What the collector tells the user (one line each: the stop warning); the same callback type
/// as the reloader's.
pub use crate::reload::Log;

/// The `--capture` observer and its writer thread.
pub struct Collector {
    opts: CollectOptions,
    tx: Mutex<Option<Sender<Job>>>,
    last: Mutex<Option<Instant>>,
    stats: Arc<CollectStats>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Collector {
    /// Creates DIR, counts what it already holds, starts the writer.
    pub fn start(opts: CollectOptions, log: Log) -> Result<Self> {
        let bad = |what: String| RuntimeError::BadCaptureDir(what);
        let stats = Arc::new(CollectStats::default());
        match std::fs::create_dir_all(&opts.dir) {
            Ok(()) => {}
            // A device that boots with a full disk still classifies; capture is off.
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                let reason = format!("no space left on the device creating {} ({e})", opts.dir.display());
                log(&format!("warning: capture stopped: {reason}; inference and outputs go on"));
                *common::lock(&stats.stopped) = Some(reason);
            }
            Err(e) => return Err(bad(format!("cannot create {}: {e}", opts.dir.display()))),
        }
        let (files, bytes) = existing_jpegs(&opts.dir);
        stats.files.store(files, Ordering::Relaxed);
        stats.bytes.store(bytes, Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::bounded::<Job>(2);
        let writer = {
            let (opts, stats) = (opts.clone(), stats.clone());
            std::thread::Builder::new()
                .name("perch-capture".into())
                .spawn(move || write_loop(&opts, &rx, &stats, &log))
                .map_err(|e| bad(format!("cannot start the capture thread: {e}")))?
        };
        Ok(Collector {
            opts,
            tx: Mutex::new(Some(tx)),
            last: Mutex::new(None),
            stats,
            writer: Mutex::new(Some(writer)),
        })
    }

    pub fn stats(&self) -> Arc<CollectStats> {
        self.stats.clone()
    }

    /// Waits for queued frames to be written; returns the counts.
    pub fn finish(&self) -> Arc<CollectStats> {
        common::lock(&self.tx).take();
        if let Some(w) = common::lock(&self.writer).take() {
            let _ = w.join();
        }
        self.stats.clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.finish();
    }
}

impl FrameObserver for Collector {
    fn observe(&self, f: &Observed<'_>) {
        if f.result.score >= self.opts.below || self.stats.stopped().is_some() {
            return;
        }
        {
            let mut last = common::lock(&self.last);
            if let (Some(every), Some(t)) = (self.opts.every, *last)
                && t.elapsed() < every
            {
                return;
            }
            *last = Some(Instant::now());
        }
        let Some(tx) = common::lock(&self.tx).clone() else { return };
        // The model's best guess names the folder, also when the run prints `unknown`.
        let label = f.result.top.first().map_or(f.result.label.as_str(), |p| p.label.as_str());
        let job = Job {
            image: f.classified_image(),
            label: label.to_string(),
            score: f.result.score,
            ts: f.result.ts.clone(),
        };
        if f.live {
            // A live frame that cannot be queued now is skipped: inference never waits.
            if let Err(TrySendError::Full(_)) = tx.try_send(job) {
                self.stats.busy.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            // Files and videos are not lost: wait for the writer.
            let _ = tx.send(job);
        }
    }
}

/// Captured JPEGs already in `dir/<label>/` (count, bytes).
fn existing_jpegs(dir: &Path) -> (u64, u64) {
    let mut n = (0, 0);
    let Ok(classes) = std::fs::read_dir(dir) else { return n };
    for class in classes.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
        let Ok(files) = std::fs::read_dir(class.path()) else { continue };
        for f in files.flatten() {
            let is_jpeg = f.path().extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg"));
            if let (true, Ok(m)) = (is_jpeg, f.metadata())
                && m.is_file()
            {
                n = (n.0 + 1, n.1 + m.len());
            }
        }
    }
    n
}

/// A class name as one safe folder name (no separators, no leading dot, no control chars).
pub fn folder_name(label: &str) -> String {
    let mut s: String =
        label.chars().map(|c| if c == '/' || c == '\\' || c.is_control() || c == ':' { '_' } else { c }).collect();
    if s.starts_with('.') || s.is_empty() {
        s.insert(0, '_');
    }
    s
}

/// `2026-12-02T04:15:03.123Z` + 0.4123 -> `2026-12-02T04-15-03.123Z-0.412.jpg` (no colons:
/// FAT-formatted USB sticks cannot hold them).
pub fn file_name(ts: &str, score: f32) -> String {
    format!("{}-{score:.3}.jpg", ts.replace(':', "-"))
}

fn write_loop(opts: &CollectOptions, rx: &Receiver<Job>, stats: &CollectStats, log: &Log) {
    let stop = |reason: String| {
        log(&format!("warning: capture stopped: {reason}; inference and outputs go on"));
        *common::lock(&stats.stopped) = Some(reason);
    };
    let cap_reached = |extra: u64| -> Option<String> {
        let (files, bytes) = (stats.files.load(Ordering::Relaxed), stats.bytes.load(Ordering::Relaxed));
        if opts.max_files.is_some_and(|m| files >= m) {
            return Some(format!("{} holds {files} captured frames (--capture-max)", opts.dir.display()));
        }
        opts.max_bytes.filter(|m| bytes + extra > *m).map(|m| {
            format!(
                "{} would exceed {:.1} MB of captured frames (--capture-max-mb)",
                opts.dir.display(),
                m as f64 / 1e6
            )
        })
    };
    if stats.stopped().is_none()
        && let Some(reason) = cap_reached(0)
    {
        stop(reason);
    }
    for job in rx.iter() {
        if stats.stopped().is_some() {
            continue; // drain: the inference side may still be sending
        }
        let mut jpeg = Vec::new();
        let encoded = image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::Cursor::new(&mut jpeg), QUALITY)
            .encode_image(&job.image);
        if let Err(e) = encoded {
            stop(format!("cannot encode a frame as JPEG: {e}"));
            continue;
        }
        if let Some(reason) = cap_reached(jpeg.len() as u64) {
            stop(reason);
            continue;
        }
        let folder = opts.dir.join(folder_name(&job.label));
        let mut path = folder.join(file_name(&job.ts, job.score));
        for i in 1.. {
            if !path.exists() {
                break;
            }
            path = folder.join(file_name(&job.ts, job.score).replace(".jpg", &format!("-{i}.jpg")));
        }
        let written = std::fs::create_dir_all(&folder).and_then(|_| common::fs::write_atomic(&path, &jpeg));
        match written {
            Ok(()) => {
                stats.saved.fetch_add(1, Ordering::Relaxed);
                stats.files.fetch_add(1, Ordering::Relaxed);
                stats.bytes.fetch_add(jpeg.len() as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                stop(format!("no space left on the device writing {} ({e})", path.display()))
            }
            Err(e) => stop(format!("cannot write {}: {e}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_on_any_filesystem() {
        assert_eq!(folder_name("honey bee"), "honey bee");
        assert_eq!(folder_name("a/b\\c:d"), "a_b_c_d");
        assert_eq!(folder_name(".."), "_..");
        assert_eq!(folder_name(""), "_");
        assert_eq!(file_name("2026-12-02T04:15:03.123Z", 0.41234), "2026-12-02T04-15-03.123Z-0.412.jpg");
    }
}
