//! What `run --mqtt` publishes under `{prefix}/{name}/`:
//! - `availability`: retained `online` / `offline` (also the last will);
//! - `state`: retained `{label, score, top, ts, model, fps}` when the label changes and holds
//!   for `--debounce` frames, and at least every `--heartbeat` seconds;
//! - `event`: `{from, to, score, ts}` on each change (not retained);
//! - with `--ha-discovery`: Home Assistant discovery configs for a `sensor` (the label) and a
//!   `binary_sensor` per `--ha-binary` class.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use super::client::{Broker, BrokerOptions, BrokerStats, Message};
use super::url::BrokerUrl;
use crate::error::{Result, RuntimeError};
use crate::sink::{FrameResult, Sink};
use crate::stats::FpsMeter;

pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";

/// `run --mqtt` settings (plain values; the binary fills them from its flags).
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub url: BrokerUrl,
    pub ca: Option<std::path::PathBuf>,
    /// One topic level: `{prefix}/{name}/...`.
    pub name: String,
    /// A new label is published once it held for this many consecutive frames.
    pub debounce: u32,
    /// The state is published again at least this often.
    pub heartbeat: Duration,
    /// Home Assistant discovery prefix (`homeassistant`), or None for no discovery.
    pub ha_discovery: Option<String>,
    /// Classes that get a Home Assistant `binary_sensor` each.
    pub ha_binary: Vec<String>,
}

/// The topics of one device.
#[derive(Debug, Clone)]
pub struct Topics {
    base: String,
}

impl Topics {
    pub fn new(prefix: &str, name: &str) -> Self {
        Topics { base: format!("{prefix}/{name}") }
    }
    pub fn availability(&self) -> String {
        format!("{}/availability", self.base)
    }
    pub fn state(&self) -> String {
        format!("{}/state", self.base)
    }
    pub fn event(&self) -> String {
        format!("{}/event", self.base)
    }
    pub fn bench(&self) -> String {
        format!("{}/bench", self.base)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoredLabel {
    pub label: String,
    pub score: f32,
}

/// The retained `state` payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatePayload {
    pub label: String,
    pub score: f32,
    pub top: Vec<ScoredLabel>,
    pub ts: String,
    pub model: String,
    /// Classified frames per second over the last few seconds.
    pub fps: f64,
}

/// The `event` payload: the published label changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventPayload {
    /// None for the first label after start.
    pub from: Option<String>,
    pub to: String,
    pub score: f32,
    pub ts: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    State(StatePayload),
    Event(EventPayload),
}

/// Debounce and heartbeat: which frames become `state` and `event` messages.
pub struct StateTracker {
    debounce: u32,
    heartbeat: Duration,
    model: String,
    candidate: Option<String>,
    held: u32,
    current: Option<String>,
    last_state: Option<Instant>,
    fps: FpsMeter,
}

impl StateTracker {
    pub fn new(debounce: u32, heartbeat: Duration, model: &str) -> Self {
        StateTracker {
            debounce: debounce.max(1),
            heartbeat,
            model: model.to_string(),
            candidate: None,
            held: 0,
            current: None,
            last_state: None,
            fps: FpsMeter::default(),
        }
    }

    /// The messages this frame causes (none, a heartbeat state, or an event and a state).
    pub fn observe(&mut self, r: &FrameResult, now: Instant) -> Vec<Update> {
        self.fps.tick(now);
        if self.candidate.as_deref() == Some(r.label.as_str()) {
            self.held = self.held.saturating_add(1);
        } else {
            self.candidate = Some(r.label.clone());
            self.held = 1;
        }
        let mut updates = Vec::new();
        if self.held >= self.debounce && self.current.as_deref() != Some(r.label.as_str()) {
            let from = self.current.replace(r.label.clone());
            updates.push(Update::Event(EventPayload { from, to: r.label.clone(), score: r.score, ts: r.ts.clone() }));
        }
        let due = self.last_state.is_none_or(|t| now.duration_since(t) >= self.heartbeat);
        if self.current.is_some() && (!updates.is_empty() || due) {
            self.last_state = Some(now);
            updates.push(Update::State(self.state(r)));
        }
        updates
    }

    fn state(&self, r: &FrameResult) -> StatePayload {
        // The published label (it may lag the frame's own by the debounce).
        let label = self.current.clone().unwrap_or_else(|| r.label.clone());
        let score = r.top.iter().find(|p| p.label == label).map_or(r.score, |p| p.score);
        StatePayload {
            label,
            score,
            top: r.top.iter().map(|p| ScoredLabel { label: p.label.clone(), score: p.score }).collect(),
            ts: r.ts.clone(),
            model: self.model.clone(),
            fps: self.fps.fps(),
        }
    }
}

/// Identity of the device and model, for discovery.
#[derive(Debug, Clone)]
pub struct DeviceIdentity {
    pub name: String,
    pub model: String,
}

/// Home Assistant MQTT discovery messages (retained): a `sensor` for the label, with the
/// score, top-k, model and fps as attributes, and a `binary_sensor` per class in `binary`.
pub fn discovery_messages(ha_prefix: &str, topics: &Topics, id: &DeviceIdentity, binary: &[String]) -> Vec<Message> {
    let node = format!("perch_{}", id.name);
    let device = json!({
        "identifiers": [node],
        "name": id.name,
        "manufacturer": "perch",
        "model": id.model,
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let common = |unique: &str, name: &str| {
        json!({
            "name": name,
            "unique_id": unique,
            "state_topic": topics.state(),
            "availability_topic": topics.availability(),
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": device,
            "origin": {"name": "perch", "sw_version": env!("CARGO_PKG_VERSION")},
        })
    };
    let mut sensor = common(&format!("{node}_label"), "Class");
    sensor["value_template"] = json!("{{ value_json.label }}");
    sensor["json_attributes_topic"] = json!(topics.state());
    sensor["json_attributes_template"] = json!(
        "{{ {'score': value_json.score, 'top': value_json.top, 'model': value_json.model, 'fps': value_json.fps, 'ts': value_json.ts} | tojson }}"
    );
    sensor["icon"] = json!("mdi:eye");
    let mut out = vec![Message::retained(format!("{ha_prefix}/sensor/{node}/label/config"), sensor.to_string())];
    for class in binary {
        let slug = super::url::sanitize_name(class).to_lowercase();
        let mut b = common(&format!("{node}_{slug}"), class);
        // A JSON string literal is also a valid Jinja string literal (quotes escaped).
        let literal = serde_json::to_string(class).unwrap_or_default();
        b["value_template"] = json!(format!("{{% if value_json.label == {literal} %}}ON{{% else %}}OFF{{% endif %}}"));
        b["payload_on"] = json!("ON");
        b["payload_off"] = json!("OFF");
        out.push(Message::retained(format!("{ha_prefix}/binary_sensor/{node}/{slug}/config"), b.to_string()));
    }
    out
}

/// Checks that every `--flag` class names one of the model's labels.
pub fn check_classes(flag: &str, classes: &[String], labels: &[String]) -> Result<()> {
    for c in classes {
        if !labels.iter().any(|l| l == c) {
            let known = if labels.len() > 12 {
                format!("{}, ... ({} classes)", labels[..12].join(", "), labels.len())
            } else {
                labels.join(", ")
            };
            return Err(RuntimeError::UnknownClass { flag: flag.to_string(), class: c.clone(), known });
        }
    }
    Ok(())
}

/// The `--mqtt` sink: results become state, event and discovery messages.
pub struct MqttSink {
    broker: Option<Broker>,
    topics: Topics,
    tracker: StateTracker,
    stats: std::sync::Arc<std::sync::Mutex<BrokerStats>>,
    /// The run's model slot: a hot-reloaded model's name goes into the next state.
    model: Option<std::sync::Arc<crate::reload::ModelSlot>>,
    /// `--ha-discovery`: the prefix, the device and the `--ha-binary` classes, published again
    /// when a reloaded model changes the device's model name.
    discovery: Option<(String, DeviceIdentity, Vec<String>)>,
}

/// Counters readable after the sink was handed to the pipeline.
#[derive(Clone, Default)]
pub struct StatsHandle(std::sync::Arc<std::sync::Mutex<BrokerStats>>);

impl StatsHandle {
    pub fn get(&self) -> BrokerStats {
        *common::lock(&self.0)
    }
}

impl MqttSink {
    /// Connects (see [`Broker::connect`]), announces `online` and, if asked, discovery.
    pub fn connect(opts: &PublishOptions, model: &str, labels: &[String]) -> Result<Self> {
        check_classes("--ha-binary", &opts.ha_binary, labels)?;
        let topics = Topics::new(&opts.url.prefix, &opts.name);
        let broker = Broker::connect(&BrokerOptions {
            url: opts.url.clone(),
            ca: opts.ca.clone(),
            client_id: format!("perch-{}-{}", opts.name, std::process::id()),
            will: Some(Message::retained(topics.availability(), OFFLINE)),
            subscribe: Vec::new(),
            connect_wait: Duration::from_secs(5),
        })?;
        broker.publish(Message::retained(topics.availability(), ONLINE));
        let discovery = opts.ha_discovery.as_ref().map(|ha| {
            let id = DeviceIdentity { name: opts.name.clone(), model: model.to_string() };
            for m in discovery_messages(ha, &topics, &id, &opts.ha_binary) {
                broker.publish(m);
            }
            (ha.clone(), id, opts.ha_binary.clone())
        });
        Ok(MqttSink {
            broker: Some(broker),
            topics,
            tracker: StateTracker::new(opts.debounce, opts.heartbeat, model),
            stats: Default::default(),
            model: None,
            discovery,
        })
    }

    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.stats.clone())
    }

    /// Names the current model of `slot` in the state (it changes when `run` reloads one).
    pub fn follow_model(&mut self, slot: std::sync::Arc<crate::reload::ModelSlot>) {
        self.model = Some(slot);
    }

    fn record_stats(&self) {
        if let Some(b) = &self.broker {
            *common::lock(&self.stats) = b.stats();
        }
    }
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

impl Sink for MqttSink {
    fn emit(&mut self, r: &FrameResult) -> Result<()> {
        let Some(broker) = &self.broker else { return Ok(()) };
        if let Some(slot) = &self.model {
            let current = slot.current();
            if current.sha256() == r.model_sha256 && current.manifest().name != self.tracker.model {
                self.tracker.model = current.manifest().name.clone();
                // Home Assistant shows the device's model from discovery: the retained configs
                // are replaced (and are what a reconnect publishes again).
                if let Some((ha, id, binary)) = &mut self.discovery {
                    id.model = self.tracker.model.clone();
                    for m in discovery_messages(ha, &self.topics, id, binary) {
                        broker.publish(m);
                    }
                }
            }
        }
        for u in self.tracker.observe(r, Instant::now()) {
            broker.publish(match u {
                Update::State(s) => Message::retained(self.topics.state(), to_json(&s)),
                Update::Event(e) => Message::event(self.topics.event(), to_json(&e)),
            });
        }
        self.record_stats();
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(broker) = self.broker.take() {
            let url = broker.url().to_string();
            let (flushed, stats) =
                broker.close(vec![Message::retained(self.topics.availability(), OFFLINE)], Duration::from_secs(3));
            *common::lock(&self.stats) = stats;
            if !flushed {
                eprintln!("warning: mqtt: {url} not connected at exit; `offline` is left to the broker's last will");
            }
        }
        Ok(())
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use models::Prediction;

    fn frame(label: &str, score: f32) -> FrameResult {
        FrameResult {
            seq: 0,
            ts: "2026-12-02T00:00:00.000Z".into(),
            source: "dir:x".into(),
            name: None,
            label: label.into(),
            index: Some(0),
            score,
            top: vec![Prediction { index: 0, label: label.into(), score }],
            latency_ms: 1.0,
            age_ms: 1.0,
            model_sha256: String::new(),
        }
    }

    fn kinds(u: &[Update]) -> Vec<&'static str> {
        u.iter().map(|u| if matches!(u, Update::State(_)) { "state" } else { "event" }).collect()
    }

    #[test]
    fn a_label_is_published_once_it_held_for_the_debounce() {
        let mut t = StateTracker::new(3, Duration::from_secs(60), "m");
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(t.observe(&frame("ants", 0.9), at(0)).is_empty());
        assert!(t.observe(&frame("ants", 0.9), at(100)).is_empty());
        let u = t.observe(&frame("ants", 0.8), at(200));
        assert_eq!(kinds(&u), ["event", "state"]);
        let Update::Event(e) = &u[0] else { unreachable!() };
        assert_eq!((e.from.as_deref(), e.to.as_str(), e.score), (None, "ants", 0.8));
        let Update::State(s) = &u[1] else { unreachable!() };
        assert_eq!((s.label.as_str(), s.model.as_str()), ("ants", "m"));
        assert!((s.fps - 10.0).abs() < 1e-6, "3 frames 100 ms apart: {}", s.fps);
        // A flicker shorter than the debounce changes nothing.
        assert!(t.observe(&frame("bees", 0.6), at(300)).is_empty());
        assert!(t.observe(&frame("ants", 0.9), at(400)).is_empty());
        for ms in [500, 600] {
            assert!(t.observe(&frame("bees", 0.7), at(ms)).is_empty());
        }
        let u = t.observe(&frame("bees", 0.7), at(700));
        let Update::Event(e) = &u[0] else { panic!("{u:?}") };
        assert_eq!((e.from.as_deref(), e.to.as_str()), (Some("ants"), "bees"));
    }

    #[test]
    fn the_state_is_repeated_at_the_heartbeat() {
        let mut t = StateTracker::new(1, Duration::from_secs(10), "m");
        let t0 = Instant::now();
        assert_eq!(kinds(&t.observe(&frame("ants", 0.9), t0)), ["event", "state"]);
        assert!(t.observe(&frame("ants", 0.9), t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(kinds(&t.observe(&frame("ants", 0.9), t0 + Duration::from_secs(10))), ["state"]);
    }

    #[test]
    fn discovery_links_sensors_to_the_state_and_availability() {
        let topics = Topics::new("perch", "pi4");
        let id = DeviceIdentity { name: "pi4".into(), model: "hymenoptera-mnv2".into() };
        let msgs = discovery_messages("homeassistant", &topics, &id, &["bees".into(), "it's".into()]);
        let topics_seen: Vec<&str> = msgs.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            topics_seen,
            [
                "homeassistant/sensor/perch_pi4/label/config",
                "homeassistant/binary_sensor/perch_pi4/bees/config",
                "homeassistant/binary_sensor/perch_pi4/it_s/config"
            ]
        );
        assert!(msgs.iter().all(|m| m.retain));
        let b: serde_json::Value = serde_json::from_slice(&msgs[1].payload).unwrap();
        assert_eq!(b["state_topic"], "perch/pi4/state");
        assert_eq!(b["availability_topic"], "perch/pi4/availability");
        assert_eq!(b["unique_id"], "perch_pi4_bees");
        assert_eq!(b["device"]["model"], "hymenoptera-mnv2");
        assert_eq!(b["value_template"], r#"{% if value_json.label == "bees" %}ON{% else %}OFF{% endif %}"#);
    }

    #[test]
    fn unknown_classes_are_named() {
        let labels = ["ants".to_string(), "bees".to_string()];
        assert!(check_classes("--ha-binary", &["bees".into()], &labels).is_ok());
        let e = check_classes("--ha-binary", &["wasps".into()], &labels).unwrap_err().to_string();
        assert!(e.contains("--ha-binary") && e.contains("wasps") && e.contains("ants, bees"), "{e}");
    }
}
