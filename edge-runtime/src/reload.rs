//! Model hot reload for `run`: the classifier lives in a [`ModelSlot`] that the inference
//! thread reads once per frame, and a [`Reloader`] thread watches the `--model` file (replaced
//! by a rename, as `trainer export` and `edge-runtime enrol` write it) and SIGHUP. A new file is
//! loaded and checked on the reloader's thread while the old model goes on classifying, then
//! swapped in between two frames; a file that fails to load or to check leaves the old model
//! running and is reported in [`ReloadStatus`] (shown on `/healthz` and the page).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Result, RuntimeError};
use crate::model::{Classifier, LoadOptions};
use crate::sink::rfc3339_utc;

/// The classifier in use, replaced whole between frames.
pub struct ModelSlot {
    current: Mutex<Arc<Classifier>>,
    /// Number of swaps so far (0: the model the run started with).
    generation: AtomicU64,
}

impl ModelSlot {
    pub fn new(classifier: Classifier) -> Self {
        ModelSlot { current: Mutex::new(Arc::new(classifier)), generation: AtomicU64::new(0) }
    }

    /// The classifier to use for the next frame.
    pub fn current(&self) -> Arc<Classifier> {
        common::lock(&self.current).clone()
    }

    /// Puts `classifier` in place; frames already being classified finish on the old one.
    pub fn swap(&self, classifier: Classifier) {
        *common::lock(&self.current) = Arc::new(classifier);
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}

/// What the reloader did so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReloadStatus {
    pub reloads: u64,
    pub failures: u64,
    /// Why the latest attempt failed, while the file that failed is still in place.
    pub last_error: Option<String>,
    /// When the last attempt (successful or not) finished, RFC 3339 UTC.
    pub last_attempt: Option<String>,
}

/// Why a reload was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    FileChanged,
    Sighup,
}

/// What the reloader tells the user (one line each).
pub type Log = Box<dyn Fn(&str) + Send>;

/// Checks a freshly loaded model against the run before it is swapped in (class names used by
/// `--threshold-class`, `--ha-binary`, ...).
pub type Check = Box<dyn Fn(&Classifier) -> Result<()> + Send>;

/// Identity of the file at the model path: a rename over it changes the inode, an in-place
/// write the size or the modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileId {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
}

fn file_id(path: &Path) -> Option<FileId> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileId {
        len: m.len(),
        modified: m.modified().ok(),
        #[cfg(unix)]
        inode: {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        },
    })
}

/// The watcher thread; dropping it stops the thread.
pub struct Reloader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    status: Arc<Mutex<ReloadStatus>>,
}

/// How often the model file is looked at, and how long it must stay unchanged before it is
/// read (a file copied in place is read once the copy is done, not half-way).
const POLL: Duration = Duration::from_millis(250);
const SETTLE: Duration = Duration::from_millis(500);

impl Reloader {
    /// Starts watching `opts.model`; `sighup` is set by the signal handler (see
    /// [`sighup_flag`]).
    pub fn start(slot: Arc<ModelSlot>, opts: LoadOptions, sighup: Arc<AtomicBool>, check: Check, log: Log) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Mutex::new(ReloadStatus::default()));
        let thread = {
            let (stop, status) = (stop.clone(), status.clone());
            std::thread::Builder::new()
                .name("perch-reload".into())
                .spawn(move || watch(&slot, &opts, &sighup, &check, &log, &stop, &status))
                .ok()
        };
        if thread.is_none() {
            common::lock(&status).last_error = Some("could not start the reload thread".into());
        }
        Reloader { stop, thread, status }
    }

    pub fn status(&self) -> Arc<Mutex<ReloadStatus>> {
        self.status.clone()
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(
    slot: &ModelSlot,
    opts: &LoadOptions,
    sighup: &AtomicBool,
    check: &Check,
    log: &Log,
    stop: &AtomicBool,
    status: &Mutex<ReloadStatus>,
) {
    let path = &opts.model;
    // The file the running model came from, and the last one tried (a bad file is tried once).
    let mut tried = file_id(path);
    let mut changed: Option<(FileId, Instant)> = None;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(POLL);
        let trigger = if sighup.swap(false, Ordering::Relaxed) {
            Some(Trigger::Sighup)
        } else {
            match file_id(path) {
                Some(id) if Some(&id) != tried.as_ref() => match &changed {
                    // Unchanged for SETTLE since it last moved: read it.
                    Some((seen, since)) if *seen == id && since.elapsed() >= SETTLE => Some(Trigger::FileChanged),
                    Some((seen, _)) if *seen == id => None,
                    _ => {
                        changed = Some((id, Instant::now()));
                        None
                    }
                },
                // Missing (between an unlink and a rename) or unchanged: wait.
                _ => None,
            }
        };
        let Some(trigger) = trigger else { continue };
        changed = None;
        tried = file_id(path);
        let outcome = reload(slot, opts, check);
        let mut st = common::lock(status);
        st.last_attempt = Some(rfc3339_utc(SystemTime::now()));
        let why = match trigger {
            Trigger::FileChanged => "file replaced",
            Trigger::Sighup => "SIGHUP",
        };
        match outcome {
            Ok(Some((old, new, secs))) => {
                st.reloads += 1;
                st.last_error = None;
                log(&format!(
                    "model reloaded ({why}): {} sha256 {} -> {} in {secs:.2} s",
                    path.display(),
                    short(&old),
                    short(&new)
                ));
            }
            Ok(None) => {
                st.last_error = None;
                log(&format!("model reload ({why}): {} is unchanged (same sha256)", path.display()));
            }
            Err(e) => {
                st.failures += 1;
                st.last_error = Some(e.to_string());
                log(&format!(
                    "warning: model reload ({why}) failed, still running sha256 {}: {e}",
                    short(slot.current().sha256())
                ));
            }
        }
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Loads and checks the file; Some((old sha, new sha, load seconds)) when swapped in, None when
/// it is the model already running.
fn reload(slot: &ModelSlot, opts: &LoadOptions, check: &Check) -> Result<Option<(String, String, f64)>> {
    let old = slot.current();
    let new = Classifier::load(opts)?;
    if new.sha256() == old.sha256() {
        return Ok(None);
    }
    check_compatible(&old, &new, &opts.model)?;
    check(&new)?;
    let result = (old.sha256().to_string(), new.sha256().to_string(), new.load_seconds());
    slot.swap(new);
    Ok(Some(result))
}

/// The new model must take the same input as the running one (the source, ROI and capture
/// settings were chosen for it); its labels may differ (a retrained model can add classes).
fn check_compatible(old: &Classifier, new: &Classifier, path: &Path) -> Result<()> {
    let (a, b) = (&old.manifest().preprocessing, &new.manifest().preprocessing);
    if (a.width, a.height) != (b.width, b.height) {
        return Err(RuntimeError::ReloadRejected {
            path: path.to_path_buf(),
            reason: format!("input {}x{} differs from the running model's {}x{}", b.width, b.height, a.width, a.height),
        });
    }
    Ok(())
}

/// A flag set on each SIGHUP (Unix; elsewhere it is never set).
pub fn sighup_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    #[cfg(unix)]
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, flag.clone()) {
        eprintln!("warning: SIGHUP reload unavailable: {e}");
    }
    flag
}
