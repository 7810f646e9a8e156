//! `run --http ADDR:PORT`: a live view of the device. One self-contained page (`/`, no CDN,
//! polls `/api/status` twice a second), the latest record (`/api/latest`), the latest frame as
//! JPEG with the ROI drawn (`/api/frame.jpg`), `/healthz` and Prometheus `/metrics`.
//!
//! The inference thread only copies: the result of every frame, and the frame image at most
//! [`FRAME_EVERY`] (a 640x480 copy is ~0.1 ms). JPEG encoding happens on the HTTP threads, once
//! per stored frame however many clients ask, so an open page does not slow inference.

pub mod metrics;

use common::lock;
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use image::RgbImage;
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{Result, RuntimeError};
use crate::pipeline::{FrameObserver, Observed, RunCounters};
use crate::reload::{ModelSlot, ReloadStatus};
use crate::sink::{FrameResult, rfc3339_utc};
use crate::source::Roi;
use crate::stats::FpsMeter;
use metrics::{Exposition, Histogram};

/// The frame image is copied for the page at most this often.
pub const FRAME_EVERY: Duration = Duration::from_millis(200);
/// `/healthz` turns 503 when no frame was classified for this long.
pub const STALL: Duration = Duration::from_secs(5);

const PAGE: &str = include_str!("page.html");

/// Latest frame for `/api/frame.jpg`, and its JPEG once someone asked for it.
#[derive(Default)]
struct FrameView {
    image: Option<Arc<RgbImage>>,
    roi: Option<Roi>,
    seq: u64,
    taken: Option<Instant>,
    jpeg: Option<(u64, Arc<Vec<u8>>)>,
}

/// What the page and the endpoints show; fed by the inference thread as a [`FrameObserver`].
pub struct LiveState {
    source: String,
    started: Instant,
    counters: Arc<RunCounters>,
    model: Arc<ModelSlot>,
    reload: Option<Arc<Mutex<ReloadStatus>>>,
    latest: Mutex<Option<FrameResult>>,
    view: Mutex<FrameView>,
    latency: Mutex<Histogram>,
    fps: Mutex<FpsMeter>,
    /// Set by `--capture` when it stopped (cap reached, disk full), for the page.
    notes: Mutex<Vec<String>>,
}

/// Health as `/healthz` reports it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Health {
    pub ok: bool,
    /// `ok`, or why not (source lost, no frame yet, stalled).
    pub status: String,
    pub last_frame_age_s: Option<f64>,
    /// A replaced model that failed to load or check: the run goes on with the old one.
    pub model_reload_error: Option<String>,
}

impl LiveState {
    pub fn new(
        source: &str,
        counters: Arc<RunCounters>,
        model: Arc<ModelSlot>,
        reload: Option<Arc<Mutex<ReloadStatus>>>,
    ) -> Self {
        LiveState {
            source: source.to_string(),
            started: Instant::now(),
            counters,
            model,
            reload,
            latest: Mutex::new(None),
            view: Mutex::new(FrameView::default()),
            latency: Mutex::new(Histogram::default()),
            fps: Mutex::new(FpsMeter::default()),
            notes: Mutex::new(Vec::new()),
        }
    }

    /// A line shown on the page (e.g. "capture stopped: disk full").
    pub fn note(&self, line: String) {
        lock(&self.notes).push(line);
    }

    pub fn health(&self) -> Health {
        let age = self.counters.since_last_frame();
        let reload_error = self.reload.as_ref().and_then(|r| lock(r).last_error.clone());
        let status = if let Some(e) = self.counters.source_error() {
            format!("source lost, reconnecting: {e}")
        } else {
            match age {
                None => "waiting for the first frame".into(),
                Some(a) if a > STALL => format!("no frame for {:.1} s", a.as_secs_f64()),
                Some(_) => "ok".into(),
            }
        };
        Health {
            ok: status == "ok",
            status,
            last_frame_age_s: age.map(|a| a.as_secs_f64()),
            model_reload_error: reload_error,
        }
    }

    /// `/api/latest`: the latest record plus the model's name (None before the first frame).
    pub fn latest(&self) -> Option<Value> {
        let r = lock(&self.latest).clone()?;
        let mut v = serde_json::to_value(&r).ok()?;
        let model = self.model.current();
        // The record's own sha says which model classified it; the name is the current one's
        // (they differ only for the frame in flight during a swap).
        v["model"] = json!(model.manifest().name);
        Some(v)
    }

    /// `/api/status`: everything the page shows.
    pub fn status(&self) -> Value {
        let model = self.model.current();
        let m = model.manifest();
        let c = &self.counters;
        let reload = self.reload.as_ref().map(|r| lock(r).clone()).unwrap_or_default();
        let roi = lock(&self.view).roi.map(|r| json!({"x": r.x, "y": r.y, "width": r.width, "height": r.height}));
        json!({
            "source": self.source,
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "health": self.health(),
            "latest": self.latest(),
            "fps": lock(&self.fps).fps(),
            "frames_in": c.frames_in.load(Ordering::Relaxed),
            "classified": c.classified.load(Ordering::Relaxed),
            "dropped": c.dropped.load(Ordering::Relaxed),
            "skipped": c.skipped.load(Ordering::Relaxed),
            "reconnects": c.reconnects.load(Ordering::Relaxed),
            "roi": roi,
            "model": {
                "name": m.name,
                "sha256": model.sha256(),
                "created": rfc3339_utc(SystemTime::UNIX_EPOCH + Duration::from_secs(m.provenance.created_unix)),
                "perch_version": m.provenance.perch_version,
                "execution": model.execution().name(),
                "engine": model.engine().name(),
                "classes": m.labels.len(),
                "load_s": model.load_seconds(),
            },
            "reload": {"reloads": reload.reloads, "failures": reload.failures, "last_error": reload.last_error},
            "notes": lock(&self.notes).clone(),
        })
    }

    /// `/metrics`.
    pub fn metrics(&self) -> String {
        let c = &self.counters;
        let model = self.model.current();
        let reload = self.reload.as_ref().map(|r| lock(r).clone()).unwrap_or_default();
        let mut e = Exposition::default();
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        e.counter("perch_frames_in_total", "Frames the source delivered.", n(&c.frames_in));
        e.counter("perch_frames_classified_total", "Frames classified.", n(&c.classified));
        e.counter("perch_frames_dropped_total", "Stale frames replaced by newer ones before inference.", n(&c.dropped));
        e.counter("perch_frames_skipped_total", "Inputs that could not be decoded.", n(&c.skipped));
        e.counter("perch_source_reconnects_total", "Times a lost source came back.", n(&c.reconnects));
        e.histogram("perch_inference_latency_seconds", "Preprocessing + inference per frame.", &lock(&self.latency));
        e.gauge("perch_fps", "Classified frames per second over the last 30 frames.", lock(&self.fps).fps());
        e.gauge(
            "perch_source_up",
            "1 while frames flow, 0 when the source is lost or stalled.",
            f64::from(u8::from(self.health().ok)),
        );
        e.gauge("perch_model_load_seconds", "Time to load the current model.", model.load_seconds());
        e.info(
            "perch_model_info",
            "The current model (value 1).",
            &[
                ("name", &model.manifest().name),
                ("sha256", model.sha256()),
                ("execution", model.execution().name()),
                ("engine", model.engine().name()),
            ],
        );
        e.counter("perch_model_reloads_total", "Replaced models swapped in.", reload.reloads);
        e.counter(
            "perch_model_reload_failures_total",
            "Replaced models rejected (the old one kept running).",
            reload.failures,
        );
        e.gauge("perch_uptime_seconds", "Seconds since the run started.", self.started.elapsed().as_secs_f64());
        e.finish()
    }

    /// `/api/frame.jpg`: (seq, JPEG) of the latest stored frame, the ROI drawn on it; encoded
    /// once per frame.
    pub fn frame_jpeg(&self) -> Option<(u64, Arc<Vec<u8>>)> {
        let (image, roi, seq) = {
            let v = lock(&self.view);
            if let Some((seq, jpeg)) = &v.jpeg
                && *seq == v.seq
            {
                return Some((*seq, jpeg.clone()));
            }
            (v.image.clone()?, v.roi, v.seq)
        };
        let jpeg = Arc::new(encode_jpeg(&image, roi)?);
        let mut v = lock(&self.view);
        if v.seq == seq {
            v.jpeg = Some((seq, jpeg.clone()));
        }
        Some((seq, jpeg))
    }
}

impl FrameObserver for LiveState {
    fn observe(&self, f: &Observed<'_>) {
        lock(&self.latency).observe(f64::from(f.result.latency_ms) / 1000.0);
        lock(&self.fps).tick(Instant::now());
        *lock(&self.latest) = Some(f.result.clone());
        let mut v = lock(&self.view);
        if v.taken.is_none_or(|t| t.elapsed() >= FRAME_EVERY) {
            v.image = Some(Arc::new(f.frame.clone()));
            v.roi = f.roi;
            v.seq = f.result.seq;
            v.taken = Some(Instant::now());
        }
    }
}

/// JPEG (quality 80) of `image` with a 2-pixel yellow frame around `roi`.
fn encode_jpeg(image: &RgbImage, roi: Option<Roi>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let encode = |img: &RgbImage, out: &mut Vec<u8>| {
        image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(out), 80).encode_image(img).ok()
    };
    match roi {
        None => encode(image, &mut out)?,
        Some(r) => {
            let mut img = image.clone();
            draw_rect(&mut img, r, image::Rgb([255, 214, 0]));
            encode(&img, &mut out)?
        }
    }
    Some(out)
}

fn draw_rect(img: &mut RgbImage, r: Roi, color: image::Rgb<u8>) {
    let (w, h) = img.dimensions();
    let (x0, y0) = (r.x.min(w.saturating_sub(1)), r.y.min(h.saturating_sub(1)));
    let (x1, y1) = ((r.x + r.width).min(w).saturating_sub(1), (r.y + r.height).min(h).saturating_sub(1));
    for t in 0..2u32 {
        for x in x0..=x1 {
            for y in [y0.saturating_add(t).min(y1), y1.saturating_sub(t).max(y0)] {
                img.put_pixel(x, y, color);
            }
        }
        for y in y0..=y1 {
            for x in [x0.saturating_add(t).min(x1), x1.saturating_sub(t).max(x0)] {
                img.put_pixel(x, y, color);
            }
        }
    }
}

/// The HTTP server; dropping it stops its threads.
pub struct LiveServer {
    addr: String,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// HTTP worker threads: a page, its polls and a Prometheus scrape at once.
const WORKERS: usize = 2;

impl LiveServer {
    /// Binds `addr` (`127.0.0.1:8080`, `0.0.0.0:8080`, `[::1]:0`) and serves `state`.
    pub fn start(addr: &str, state: Arc<LiveState>) -> Result<Self> {
        let err = |reason: String| RuntimeError::Http { addr: addr.to_string(), reason };
        let server = Arc::new(tiny_http::Server::http(addr).map_err(|e| err(e.to_string()))?);
        let bound = match server.server_addr() {
            tiny_http::ListenAddr::IP(a) => a.to_string(),
            #[allow(unreachable_patterns)]
            other => format!("{other:?}"),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..WORKERS {
            let (server, state, stop) = (server.clone(), state.clone(), stop.clone());
            let t = std::thread::Builder::new()
                .name(format!("perch-http-{i}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match server.recv_timeout(Duration::from_millis(200)) {
                            Ok(Some(request)) => serve(&state, request),
                            Ok(None) => {}
                            Err(_) => std::thread::sleep(Duration::from_millis(50)),
                        }
                    }
                })
                .map_err(|e| err(e.to_string()))?;
            threads.push(t);
        }
        Ok(LiveServer { addr: bound, stop, threads })
    }

    /// The address it listens on (the port chosen when `:0` was asked for).
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header")
}

fn respond(request: tiny_http::Request, code: u16, content_type: &str, body: Vec<u8>) {
    let response = tiny_http::Response::from_data(body)
        .with_status_code(code)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"));
    // A client that went away is not the device's problem.
    let _ = request.respond(response);
}

fn respond_json(request: tiny_http::Request, code: u16, v: &impl Serialize) {
    let body = serde_json::to_vec(v).unwrap_or_default();
    respond(request, code, "application/json", body);
}

fn serve(state: &LiveState, request: tiny_http::Request) {
    if *request.method() != tiny_http::Method::Get && *request.method() != tiny_http::Method::Head {
        return respond(request, 405, "text/plain; charset=utf-8", b"only GET\n".to_vec());
    }
    let path = request.url().split('?').next().unwrap_or("").to_string();
    match path.as_str() {
        "/" | "/index.html" => respond(request, 200, "text/html; charset=utf-8", PAGE.as_bytes().to_vec()),
        "/api/latest" => match state.latest() {
            Some(v) => respond_json(request, 200, &v),
            None => respond_json(request, 503, &json!({"error": "no frame classified yet"})),
        },
        "/api/status" => respond_json(request, 200, &state.status()),
        "/api/frame.jpg" => match state.frame_jpeg() {
            Some((_, jpeg)) => respond(request, 200, "image/jpeg", jpeg.as_ref().clone()),
            None => respond_json(request, 503, &json!({"error": "no frame yet"})),
        },
        "/healthz" => {
            let h = state.health();
            respond_json(request, if h.ok { 200 } else { 503 }, &h)
        }
        "/metrics" => respond(request, 200, "text/plain; version=0.0.4; charset=utf-8", state.metrics().into_bytes()),
        _ => respond(
            request,
            404,
            "text/plain; charset=utf-8",
            b"not found: try /, /api/latest, /api/frame.jpg, /healthz, /metrics\n".to_vec(),
        ),
    }
}
