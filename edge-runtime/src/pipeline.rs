//! The streaming loop: a capture thread feeds a bounded queue where the newest frame wins
//! (a frame that waited while inference ran is stale: it is dropped and counted), an
//! inference thread classifies with smoothing over the last K frames, and the caller's thread
//! writes results to the sink. Stops on the stop flag (Ctrl-C), after N frames, at the end of
//! a finite source, or when a device stays lost after retries with backoff.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::softmax;
use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};
use models::Preprocessor;
use serde::{Deserialize, Serialize};

use crate::classify::Skipped;
use crate::error::{Result, RuntimeError};
use crate::model::Classifier;
use crate::reload::ModelSlot;
use crate::sink::rfc3339_utc;
use crate::sink::{FrameResult, Sink, UNKNOWN};
use crate::source::{Fetch, Frame, FrameSource, Roi, Transform};
use crate::stats::Latencies;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Stop after this many classified frames.
    pub frames: Option<u64>,
    /// Below this smoothed top-1 probability the frame is `unknown`.
    pub threshold: f32,
    /// Per-class thresholds (`--threshold-class bees=0.8`), replacing `threshold` when that
    /// class is the best one. Class names are checked against the model by [`RunOptions::check`].
    pub class_thresholds: Vec<(String, f32)>,
    /// Average the softmax over the last K frames (1: no smoothing).
    pub smooth: usize,
    pub top_k: usize,
    pub retry: RetryPolicy,
    /// Rotate / flip / crop applied to each frame before preprocessing.
    pub transform: Transform,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            frames: None,
            threshold: 0.0,
            class_thresholds: Vec::new(),
            smooth: 1,
            top_k: 5,
            retry: RetryPolicy::default(),
            transform: Transform::default(),
        }
    }
}

impl RunOptions {
    /// Checks what depends on the model: the classes named by `--threshold-class`.
    pub fn check(&self, labels: &[String]) -> Result<()> {
        let names: Vec<String> = self.class_thresholds.iter().map(|(c, _)| c.clone()).collect();
        crate::mqtt::check_classes("--threshold-class", &names, labels)
    }

    /// The threshold that applies when `label` is the best class.
    pub fn threshold_for(&self, label: &str) -> f32 {
        self.class_thresholds.iter().find(|(c, _)| c == label).map_or(self.threshold, |(_, t)| *t)
    }
}

/// How long a failing device is retried before the run stops.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s: rides out a USB re-enumeration, gives up in ~3 s.
        RetryPolicy { attempts: 5, first_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(2) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    FrameLimit,
    SourceEnded,
    Interrupted,
    Failed,
}

/// End-of-run numbers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub source: String,
    pub execution: String,
    /// Frames the source delivered (= classified + dropped).
    pub frames_in: u64,
    pub classified: u64,
    /// Stale frames replaced by newer ones before inference got to them.
    pub dropped: u64,
    /// Inputs that could not be decoded (files of a folder, damaged stream frames).
    pub skipped: Vec<Skipped>,
    /// Times a lost device or stream was restarted and came back.
    pub reconnects: u64,
    pub elapsed_s: f64,
    /// Classified frames per second of wall time.
    pub fps: f64,
    /// Preprocess + inference per frame.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub stopped: StopReason,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "summary: source {} ({}), frames in {}, classified {}, dropped {}, skipped {}, reconnects {}, {:.1} fps, latency p50 {:.1} ms p99 {:.1} ms, {:.1} s, stopped: {:?}",
            self.source,
            self.execution,
            self.frames_in,
            self.classified,
            self.dropped,
            self.skipped.len(),
            self.reconnects,
            self.fps,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.elapsed_s,
            self.stopped
        )
    }
}

/// A finished run; `error` is set when it stopped on a failure (lost device, sink error).
#[derive(Debug)]
pub struct RunOutcome {
    pub summary: Summary,
    pub error: Option<RuntimeError>,
}

/// Bounded queue where a new item displaces the oldest waiting one instead of blocking.
pub struct NewestWins<T> {
    /// None once the producer has closed the queue (the consumer then drains and stops).
    tx: Mutex<Option<Sender<T>>>,
    /// The producer's own handle on the queue, used only to take out stale items.
    stale: Receiver<T>,
    dropped: AtomicU64,
}

impl<T> NewestWins<T> {
    /// Returns the queue and the consumer's receiver.
    pub fn new(capacity: usize) -> (Self, Receiver<T>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        (NewestWins { tx: Mutex::new(Some(tx)), stale: rx.clone(), dropped: AtomicU64::new(0) }, rx)
    }

    fn sender(&self) -> Option<Sender<T>> {
        common::lock(&self.tx).clone()
    }

    /// Enqueues `item`, dropping (and counting) the oldest waiting items if the queue is full.
    pub fn push(&self, mut item: T) {
        let Some(tx) = self.sender() else { return };
        loop {
            match tx.try_send(item) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    if self.stale.try_recv().is_ok() {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    item = back;
                }
                // Unreachable while `stale` lives; nothing to deliver to anyway.
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }

    /// Enqueues `item`, waiting for room (finite sources lose nothing); gives up when `done`.
    pub fn push_wait(&self, mut item: T, done: &AtomicBool) -> bool {
        let Some(tx) = self.sender() else {
            return false;
        };
        loop {
            if done.load(Ordering::Relaxed) {
                return false;
            }
            match tx.send_timeout(item, Duration::from_millis(50)) {
                Ok(()) => return true,
                Err(SendTimeoutError::Timeout(back)) => item = back,
                Err(SendTimeoutError::Disconnected(_)) => return false,
            }
        }
    }

    /// No more items: the consumer sees the end once it has taken what is queued.
    pub fn close(&self) {
        common::lock(&self.tx).take();
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Takes out items nobody will consume (the run ended first), counting them as dropped.
    pub fn drain(&self) -> u64 {
        let n = self.stale.try_iter().count() as u64;
        self.dropped.fetch_add(n, Ordering::Relaxed);
        n
    }
}

/// Mean of the last K probability vectors.
pub struct Smoother {
    k: usize,
    window: VecDeque<Vec<f32>>,
}

impl Smoother {
    pub fn new(k: usize) -> Self {
        Smoother { k: k.max(1), window: VecDeque::new() }
    }

    pub fn push(&mut self, probs: Vec<f32>) -> Vec<f32> {
        if self.window.len() == self.k {
            self.window.pop_front();
        }
        self.window.push_back(probs);
        let n = self.window.len() as f32;
        let mut mean = vec![0f32; self.window[0].len()];
        for p in &self.window {
            mean.iter_mut().zip(p).for_each(|(m, v)| *m += v / n);
        }
        mean
    }
}

/// Live counters of a run, readable from other threads while it runs (`--http`'s page,
/// `/healthz` and `/metrics`); the end-of-run [`Summary`] is made from them.
#[derive(Debug, Default)]
pub struct RunCounters {
    /// Frames the source delivered (= classified + dropped, once the run is over).
    pub frames_in: AtomicU64,
    pub classified: AtomicU64,
    pub dropped: AtomicU64,
    pub skipped: AtomicU64,
    pub reconnects: AtomicU64,
    /// While the source fails and is being retried: the latest error.
    pub source_error: Mutex<Option<String>>,
    /// When the latest frame was classified.
    pub last_classified: Mutex<Option<Instant>>,
}

impl RunCounters {
    fn failing(&self, reason: Option<String>) {
        *common::lock(&self.source_error) = reason;
    }

    pub fn source_error(&self) -> Option<String> {
        common::lock(&self.source_error).clone()
    }

    /// Time since the latest classified frame (None before the first).
    pub fn since_last_frame(&self) -> Option<Duration> {
        common::lock(&self.last_classified).map(|t| t.elapsed())
    }
}

/// One classified frame as observers see it, on the inference thread.
pub struct Observed<'a> {
    pub result: &'a FrameResult,
    /// The frame after --rotate/--flip, before the ROI crop.
    pub frame: &'a image::RgbImage,
    /// The region that was classified, when `--roi` is set.
    pub roi: Option<Roi>,
    /// The model that classified it.
    pub model: &'a Classifier,
    /// Whether the source is live (frames that are not taken now are gone) or a finite one
    /// (an observer may wait rather than lose a frame).
    pub live: bool,
}

impl Observed<'_> {
    /// What the model saw (before resizing): the ROI if one is set, else the whole frame.
    pub fn classified_image(&self) -> image::RgbImage {
        match self.roi {
            Some(r) => r.crop(self.frame),
            None => self.frame.clone(),
        }
    }
}

/// Something that watches the classified frames (the `--http` view, `--capture`). Called on
/// the inference thread: it must return quickly (copy what it needs, work elsewhere).
pub trait FrameObserver: Sync {
    fn observe(&self, frame: &Observed<'_>);
}

/// Where a run reports beyond its sink: live counters and frame observers.
#[derive(Clone, Copy)]
pub struct Hooks<'a> {
    pub counters: &'a RunCounters,
    pub observers: &'a [&'a dyn FrameObserver],
}

/// Gets the next frame, retrying a failing device with exponential backoff; each time the
/// device is brought back, `counters.reconnects` counts one, and while it is being retried
/// `counters.source_error` holds why.
pub fn fetch_with_retry(
    source: &mut dyn FrameSource,
    policy: &RetryPolicy,
    stop: &AtomicBool,
    counters: &RunCounters,
) -> Result<Fetch> {
    let mut last = match source.next() {
        Ok(f) => return Ok(f),
        Err(e) => e,
    };
    counters.failing(Some(last.to_string()));
    let reconnects = &counters.reconnects;
    let start = Instant::now();
    let mut backoff = policy.first_backoff;
    for _ in 0..policy.attempts {
        if stop.load(Ordering::Relaxed) {
            return Ok(Fetch::End);
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(policy.max_backoff);
        let next = source.reconnect().and_then(|_| {
            reconnects.fetch_add(1, Ordering::Relaxed);
            source.next()
        });
        match next {
            Ok(f) => {
                counters.failing(None);
                return Ok(f);
            }
            Err(e) => {
                counters.failing(Some(e.to_string()));
                last = e;
            }
        }
    }
    Err(RuntimeError::SourceLost {
        source_name: source.describe(),
        attempts: policy.attempts,
        waited_ms: start.elapsed().as_millis() as u64,
        reason: last.to_string(),
    })
}

/// Shared between the three threads.
struct Shared<'a> {
    /// Set by whoever decides the run is over (frame limit, failure); `stop` is the user's.
    done: AtomicBool,
    counters: &'a RunCounters,
    skipped: Mutex<Vec<Skipped>>,
    error: Mutex<Option<RuntimeError>>,
    stopped: Mutex<Option<StopReason>>,
}

impl Shared<'_> {
    fn finish(&self, reason: StopReason, error: Option<RuntimeError>) {
        let mut stopped = common::lock(&self.stopped);
        if stopped.is_none() {
            *stopped = Some(reason);
            if let Some(e) = error {
                *common::lock(&self.error) = Some(e);
            }
        }
        self.done.store(true, Ordering::Relaxed);
    }
}

/// Runs the loop until a stop condition; results go to `sink` from the calling thread.
pub fn run(
    classifier: Classifier,
    source: Box<dyn FrameSource>,
    sink: &mut dyn Sink,
    opts: &RunOptions,
    stop: &AtomicBool,
) -> RunOutcome {
    let counters = RunCounters::default();
    let hooks = Hooks { counters: &counters, observers: &[] };
    run_with(&ModelSlot::new(classifier), source, sink, opts, stop, hooks)
}

/// [`run`] with a replaceable model (hot reload), live counters and frame observers.
pub fn run_with(
    model: &ModelSlot,
    mut source: Box<dyn FrameSource>,
    sink: &mut dyn Sink,
    opts: &RunOptions,
    stop: &AtomicBool,
    hooks: Hooks<'_>,
) -> RunOutcome {
    let shared = Shared {
        done: AtomicBool::new(false),
        counters: hooks.counters,
        skipped: Mutex::new(Vec::new()),
        error: Mutex::new(None),
        stopped: Mutex::new(None),
    };
    let source_name = source.describe();
    let live = source.is_live();
    let (queue, frames_rx) = NewestWins::<Frame>::new(1);
    let (results_tx, results_rx) = crossbeam_channel::unbounded::<FrameResult>();
    let start = Instant::now();
    let mut latencies = Latencies::default();

    std::thread::scope(|scope| {
        let (shared, queue) = (&shared, &queue);
        scope.spawn(move || {
            capture_loop(source.as_mut(), queue, opts, stop, shared);
            queue.close();
        });
        let ctx = InferenceContext { model, opts, shared, source_name: &source_name, live, hooks };
        let infer = scope.spawn(move || inference_loop(&ctx, frames_rx, results_tx));
        for r in results_rx.iter() {
            if let Err(e) = sink.emit(&r) {
                shared.finish(StopReason::Failed, Some(e));
                break;
            }
        }
        // Keep the inference thread's sends from piling up if the sink failed.
        drop(results_rx);
        if let Ok(l) = infer.join() {
            latencies = l;
        }
    });
    if let Err(e) = sink.finish() {
        shared.finish(StopReason::Failed, Some(e));
    }
    queue.drain();
    let counters = hooks.counters;
    counters.dropped.store(queue.dropped(), Ordering::Relaxed);

    let elapsed_s = start.elapsed().as_secs_f64();
    let classified = latencies.len() as u64;
    let stopped = common::lock(&shared.stopped).unwrap_or(StopReason::SourceEnded);
    let summary = Summary {
        source: source_name,
        execution: model.current().execution().name().to_string(),
        frames_in: counters.frames_in.load(Ordering::Relaxed),
        classified,
        dropped: queue.dropped(),
        skipped: shared.skipped.into_inner().unwrap_or_else(|e| e.into_inner()),
        reconnects: counters.reconnects.load(Ordering::Relaxed),
        elapsed_s,
        fps: if elapsed_s > 0.0 { classified as f64 / elapsed_s } else { 0.0 },
        latency_p50_ms: latencies.percentile(50.0),
        latency_p99_ms: latencies.percentile(99.0),
        stopped,
    };
    RunOutcome { summary, error: shared.error.into_inner().unwrap_or_else(|e| e.into_inner()) }
}

fn capture_loop(
    source: &mut dyn FrameSource,
    queue: &NewestWins<Frame>,
    opts: &RunOptions,
    stop: &AtomicBool,
    shared: &Shared<'_>,
) {
    let live = source.is_live();
    let counters = shared.counters;
    loop {
        if stop.load(Ordering::Relaxed) {
            shared.finish(StopReason::Interrupted, None);
        }
        if shared.done.load(Ordering::Relaxed) {
            break;
        }
        match fetch_with_retry(source, &opts.retry, stop, counters) {
            Ok(Fetch::Frame(frame)) => {
                counters.frames_in.fetch_add(1, Ordering::Relaxed);
                if live {
                    queue.push(frame);
                    counters.dropped.store(queue.dropped(), Ordering::Relaxed);
                } else if !queue.push_wait(frame, &shared.done) {
                    // Never queued: the run ended while it waited.
                    counters.frames_in.fetch_sub(1, Ordering::Relaxed);
                    break;
                }
            }
            Ok(Fetch::Skip { name, reason }) => {
                counters.skipped.fetch_add(1, Ordering::Relaxed);
                common::lock(&shared.skipped).push(Skipped { path: name.into(), reason });
            }
            Ok(Fetch::End) => {
                let reason =
                    if stop.load(Ordering::Relaxed) { StopReason::Interrupted } else { StopReason::SourceEnded };
                // Let inference finish what is queued: mark the reason, then just stop capturing.
                let mut stopped = common::lock(&shared.stopped);
                stopped.get_or_insert(reason);
                break;
            }
            Err(e) => {
                shared.finish(StopReason::Failed, Some(e));
                break;
            }
        }
    }
}

/// What the inference thread works with.
struct InferenceContext<'a> {
    model: &'a ModelSlot,
    opts: &'a RunOptions,
    shared: &'a Shared<'a>,
    source_name: &'a str,
    live: bool,
    hooks: Hooks<'a>,
}

fn inference_loop(ctx: &InferenceContext<'_>, frames: Receiver<Frame>, results: Sender<FrameResult>) -> Latencies {
    let (opts, shared, counters) = (ctx.opts, ctx.shared, ctx.hooks.counters);
    let mut classifier = ctx.model.current();
    let mut pre = Preprocessor::new(classifier.manifest().preprocessing);
    let mut smoother = Smoother::new(opts.smooth);
    let mut latencies = Latencies::default();
    // Ends when the capture side closes the queue and it is empty, or on `done`; frames
    // still queued then are counted as dropped by the caller.
    for frame in frames.iter() {
        let t = Instant::now();
        // A reloaded model takes over between two frames; probabilities of the old one are
        // not averaged with the new one's.
        let current = ctx.model.current();
        if !Arc::ptr_eq(&current, &classifier) {
            classifier = current;
            pre = Preprocessor::new(classifier.manifest().preprocessing);
            smoother = Smoother::new(opts.smooth);
        }
        let oriented = match opts.transform.orient(frame.image, ctx.source_name) {
            Ok(img) => img,
            Err(e) => {
                shared.finish(StopReason::Failed, Some(e));
                break;
            }
        };
        let roi = opts.transform.roi;
        let tensor = match roi {
            Some(r) => pre.tensor_rgb(&r.crop(&oriented)),
            None => pre.tensor_rgb(&oriented),
        };
        let probs = match tensor.map_err(RuntimeError::from).and_then(|x| classifier.infer(&x)) {
            Ok(logits) => softmax(&logits),
            Err(e) => {
                shared.finish(StopReason::Failed, Some(e));
                break;
            }
        };
        let latency_ms = t.elapsed().as_secs_f64() * 1000.0;
        latencies.push(latency_ms);
        let smoothed = smoother.push(probs);
        let top = classifier.top_k(&smoothed, opts.top_k.max(1));
        let Some(best) = top.first().cloned() else {
            break;
        };
        let known = best.score >= opts.threshold_for(&best.label);
        let result = FrameResult {
            seq: frame.seq,
            ts: rfc3339_utc(frame.wall),
            source: ctx.source_name.to_string(),
            name: frame.name,
            label: if known { best.label.clone() } else { UNKNOWN.to_string() },
            index: known.then_some(best.index),
            score: best.score,
            top,
            latency_ms: latency_ms as f32,
            age_ms: frame.captured.elapsed().as_secs_f32() * 1000.0,
            model_sha256: classifier.sha256().to_string(),
        };
        counters.classified.fetch_add(1, Ordering::Relaxed);
        *common::lock(&counters.last_classified) = Some(Instant::now());
        let observed = Observed { result: &result, frame: &oriented, roi, model: &classifier, live: ctx.live };
        for o in ctx.hooks.observers {
            o.observe(&observed);
        }
        if results.send(result).is_err() {
            break;
        }
        if opts.frames.is_some_and(|n| latencies.len() as u64 >= n) {
            shared.finish(StopReason::FrameLimit, None);
        }
        if shared.done.load(Ordering::Relaxed) {
            break;
        }
    }
    latencies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_wins_keeps_only_the_latest_frame_and_counts_the_rest() {
        // A consumer busy with one frame while the camera delivers ten: with an unbounded
        // queue it would next see frame 0 (ten frames behind); here it sees frame 9.
        let (queue, rx) = NewestWins::new(1);
        for i in 0..10 {
            queue.push(i);
        }
        assert_eq!(rx.try_recv(), Ok(9));
        assert!(rx.try_recv().is_err());
        assert_eq!(queue.dropped(), 9);
        queue.push(10);
        assert_eq!(queue.drain(), 1);
        assert_eq!(queue.dropped(), 10);
    }

    #[test]
    fn push_wait_gives_up_when_the_run_is_done() {
        let (queue, _rx) = NewestWins::new(1);
        let done = AtomicBool::new(false);
        assert!(queue.push_wait(1, &done));
        done.store(true, Ordering::Relaxed);
        assert!(!queue.push_wait(2, &done));
        assert_eq!(queue.dropped(), 0);
    }

    #[test]
    fn smoothing_averages_the_last_k_frames() {
        let mut s = Smoother::new(2);
        assert_eq!(s.push(vec![1.0, 0.0]), [1.0, 0.0]);
        assert_eq!(s.push(vec![0.0, 1.0]), [0.5, 0.5]);
        assert_eq!(s.push(vec![0.0, 1.0]), [0.0, 1.0]);
    }

    /// Fails `failures` times (then works), counting reconnects.
    struct Flaky {
        failures: u32,
        reconnects: u32,
    }

    impl FrameSource for Flaky {
        fn describe(&self) -> String {
            "camera:9".into()
        }
        fn is_live(&self) -> bool {
            true
        }
        fn next(&mut self) -> Result<Fetch> {
            if self.failures > 0 {
                self.failures -= 1;
                return Err(RuntimeError::Camera { index: 9, reason: "device unplugged".into() });
            }
            Ok(Fetch::End)
        }
        fn reconnect(&mut self) -> Result<()> {
            self.reconnects += 1;
            Ok(())
        }
    }

    fn quick() -> RetryPolicy {
        RetryPolicy { attempts: 3, first_backoff: Duration::from_millis(1), max_backoff: Duration::from_millis(2) }
    }

    #[test]
    fn a_device_that_comes_back_is_reconnected() {
        let mut src = Flaky { failures: 2, reconnects: 0 };
        let counted = RunCounters::default();
        assert!(matches!(fetch_with_retry(&mut src, &quick(), &AtomicBool::new(false), &counted), Ok(Fetch::End)));
        assert_eq!(src.reconnects, 2);
        assert_eq!(counted.reconnects.load(Ordering::Relaxed), 2);
        assert_eq!(counted.source_error(), None, "the device came back");
    }

    #[test]
    fn a_device_that_stays_lost_is_a_clear_error_after_the_retries() {
        let mut src = Flaky { failures: 100, reconnects: 0 };
        let counted = RunCounters::default();
        let err = fetch_with_retry(&mut src, &quick(), &AtomicBool::new(false), &counted).err().unwrap();
        assert!(counted.source_error().is_some_and(|e| e.contains("device unplugged")));
        assert_eq!(src.reconnects, 3);
        let msg = err.to_string();
        assert!(msg.contains("camera:9 lost after 3 attempts") && msg.contains("device unplugged"), "{msg}");
    }
}
