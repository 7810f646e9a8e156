//! Results and bench reports through an MQTT broker (rumqttc; Home Assistant discovery).
//! `run --mqtt` publishes availability, state and events ([`publish`]); `bench --mqtt`
//! publishes the report retained at `{prefix}/{name}/bench`, and `bench report --mqtt`
//! collects every device's report from the broker.

mod client;
mod publish;
mod url;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use client::{Broker, BrokerOptions, BrokerStats, EVENT_QUEUE, Message};
pub use publish::{
    DeviceIdentity, EventPayload, MqttSink, OFFLINE, ONLINE, PublishOptions, StatePayload, StateTracker, StatsHandle,
    Topics, Update, check_classes, discovery_messages,
};
pub use url::{BrokerUrl, DEFAULT_PREFIX, check_topic_levels, sanitize_name};

use crate::error::{Result, RuntimeError};

/// Environment variable holding the broker password when the URL has none.
pub const PASSWORD_ENV: &str = "PERCH_MQTT_PASSWORD";

/// A broker and this device's name on it (`bench --mqtt`, `bench report --mqtt`).
#[derive(Debug, Clone)]
pub struct Target {
    pub url: BrokerUrl,
    pub ca: Option<PathBuf>,
    pub name: String,
}

/// This machine's host name as one topic level (`pi.local` -> `pi_local`).
pub fn default_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    sanitize_name(&raw)
}

/// Checks a `--name` given by the user (it becomes one topic level and part of HA ids).
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || sanitize_name(name) != name {
        return Err(RuntimeError::BadMqtt {
            what: format!("--name '{name}'"),
            reason: "use letters, digits, '-' and '_' only (it becomes an MQTT topic level)".into(),
        });
    }
    Ok(())
}

fn connect_once(target: &Target, subscribe: Vec<String>) -> Result<Broker> {
    let broker = Broker::connect(&BrokerOptions {
        url: target.url.clone(),
        ca: target.ca.clone(),
        client_id: format!("perch-{}-{}-{}", target.name, std::process::id(), subscribe.len()),
        will: None,
        subscribe,
        connect_wait: Duration::from_secs(5),
    })?;
    if !broker.is_connected() {
        return Err(RuntimeError::Mqtt {
            broker: target.url.to_string(),
            reason: "not reachable (is the broker running, and the host and port right?)".into(),
        });
    }
    Ok(broker)
}

/// Publishes a bench report (JSON) retained at `{prefix}/{name}/bench`.
pub fn publish_bench(target: &Target, json: &str) -> Result<String> {
    let topic = Topics::new(&target.url.prefix, &target.name).bench();
    let broker = connect_once(target, Vec::new())?;
    let url = broker.url().to_string();
    if !broker.close(vec![Message::retained(topic.clone(), json.as_bytes())], Duration::from_secs(5)).0 {
        return Err(RuntimeError::Mqtt { broker: url, reason: format!("the report to {topic} was not confirmed") });
    }
    Ok(topic)
}

/// Every retained report under `{prefix}/+/bench`, gathered for `wait`: (topic, payload).
pub fn collect_bench(target: &Target, wait: Duration) -> Result<Vec<(String, Vec<u8>)>> {
    let filter = format!("{}/+/bench", target.url.prefix);
    let broker = connect_once(target, vec![filter])?;
    let deadline = Instant::now() + wait;
    let mut got: Vec<(String, Vec<u8>)> = Vec::new();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        for m in broker.take_incoming() {
            // A report published twice (retained, then live) counts once: the newest wins.
            got.retain(|(t, _)| *t != m.topic);
            if !m.payload.is_empty() {
                got.push((m.topic, m.payload));
            }
        }
    }
    broker.close(Vec::new(), Duration::from_secs(1));
    got.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(got)
}
