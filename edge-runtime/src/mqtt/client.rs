//! One connection to the broker, kept up in the background (rumqttc's event loop on its own
//! thread): reconnects with backoff, never blocks the caller, and keeps what could not be sent
//! in a bounded outbox: the newest retained message per topic, and the last
//! [`EVENT_QUEUE`] non-retained ones. Older messages that had to give way are counted as
//! dropped. After every (re)connect the retained messages are published again, so a broker
//! restarted without persistence gets the device's availability, discovery and state back.

use common::lock;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::tokio_rustls::rustls;
use rumqttc::{
    Client, ConnectReturnCode, Connection, ConnectionError, Event, LastWill, MqttOptions, Outgoing, Packet, QoS,
    TlsConfiguration, Transport,
};
use serde::Serialize;

use super::url::BrokerUrl;
use crate::error::{Result, RuntimeError};

/// Non-retained messages (events) kept while the broker is away; older ones are dropped.
pub const EVENT_QUEUE: usize = 32;
/// Largest message perch sends or accepts (bench reports are a few kB).
const MAX_PACKET: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Message {
    pub fn retained(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Message { topic: topic.into(), payload: payload.into(), retain: true }
    }

    pub fn event(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Message { topic: topic.into(), payload: payload.into(), retain: false }
    }
}

/// How to reach the broker.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    pub url: BrokerUrl,
    /// PEM file of the CA that signed the broker's certificate (`mqtts://`; default: system roots).
    pub ca: Option<PathBuf>,
    pub client_id: String,
    /// Published by the broker when the connection drops without a clean disconnect.
    pub will: Option<Message>,
    /// Topic filters to subscribe to (again after each reconnect).
    pub subscribe: Vec<String>,
    /// How long [`Broker::connect`] waits for the first connection.
    pub connect_wait: Duration,
}

/// Counters for the run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BrokerStats {
    /// Messages handed to the connection.
    pub published: u64,
    /// Messages replaced by newer ones (or over the queue bound) while the broker was away.
    pub dropped: u64,
    /// Times the connection came back after being lost.
    pub reconnects: u64,
}

#[derive(Default)]
struct Outbox {
    /// The newest retained message per topic, and whether it reached a live connection: sent
    /// now if connected, and again on every reconnect.
    retained: BTreeMap<String, (Message, bool)>,
    events: VecDeque<Message>,
    connected: bool,
}

enum First {
    Waiting,
    Connected,
    Failed { reason: String, fatal: bool },
}

struct Shared {
    outbox: Mutex<Outbox>,
    first: Mutex<First>,
    first_cv: Condvar,
    exiting: AtomicBool,
    published: AtomicU64,
    dropped: AtomicU64,
    reconnects: AtomicU64,
    incoming: Mutex<Vec<Message>>,
}

pub struct Broker {
    client: Client,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    url: BrokerUrl,
}

impl Broker {
    /// Starts the connection and waits up to `connect_wait` for it. Refused credentials and
    /// TLS failures are errors; a broker that is merely unreachable is a warning, and the
    /// connection keeps trying in the background (results are kept in the outbox meanwhile).
    pub fn connect(opts: &BrokerOptions) -> Result<Self> {
        let url = opts.url.clone();
        let mut mqtt = MqttOptions::new(&opts.client_id, &url.host, url.port);
        mqtt.set_keep_alive(Duration::from_secs(15))
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_request_channel_capacity(64);
        if let Some(user) = &url.user {
            mqtt.set_credentials(user, url.password().unwrap_or_default());
        } else if let Some(password) = url.password() {
            mqtt.set_credentials("", password);
        }
        if let Some(w) = &opts.will {
            mqtt.set_last_will(LastWill::new(&w.topic, w.payload.clone(), QoS::AtLeastOnce, w.retain));
        }
        if url.tls {
            mqtt.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(tls_config(
                &url,
                opts.ca.as_deref(),
            )?))));
        }
        let (client, connection) = Client::new(mqtt, 64);
        let shared = Arc::new(Shared {
            outbox: Mutex::new(Outbox::default()),
            first: Mutex::new(First::Waiting),
            first_cv: Condvar::new(),
            exiting: AtomicBool::new(false),
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            incoming: Mutex::new(Vec::new()),
        });
        let driver = Driver {
            client: client.clone(),
            shared: shared.clone(),
            url: url.clone(),
            subscribe: opts.subscribe.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || driver.run(connection))
            .map_err(|e| RuntimeError::Mqtt { broker: url.to_string(), reason: format!("cannot start: {e}") })?;
        let mut broker = Broker { client, shared, thread: Some(thread), url };
        match broker.wait_first(opts.connect_wait) {
            First::Connected => {}
            First::Failed { reason, fatal: true } => {
                broker.abandon();
                return Err(RuntimeError::Mqtt { broker: broker.url.to_string(), reason });
            }
            First::Failed { reason, fatal: false } => eprintln!(
                "warning: MQTT broker {} not reachable ({reason}); going on and reconnecting in the background",
                broker.url
            ),
            First::Waiting => eprintln!(
                "warning: MQTT broker {} did not answer within {:.0} s; going on and reconnecting in the background",
                broker.url,
                opts.connect_wait.as_secs_f64()
            ),
        }
        Ok(broker)
    }

    fn wait_first(&self, wait: Duration) -> First {
        let deadline = Instant::now() + wait;
        let mut first = lock(&self.shared.first);
        loop {
            match &*first {
                First::Connected => return First::Connected,
                First::Failed { reason, fatal } => return First::Failed { reason: reason.clone(), fatal: *fatal },
                First::Waiting => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return First::Waiting;
            }
            first = self.shared.first_cv.wait_timeout(first, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    pub fn is_connected(&self) -> bool {
        lock(&self.shared.outbox).connected
    }

    pub fn url(&self) -> &BrokerUrl {
        &self.url
    }

    /// Sends now when connected, else keeps it in the outbox. Never blocks on the network.
    pub fn publish(&self, msg: Message) {
        let mut outbox = lock(&self.shared.outbox);
        if msg.retain {
            let connected = outbox.connected;
            if connected {
                send(&self.client, &self.shared, &msg);
            }
            if let Some((_, false)) = outbox.retained.insert(msg.topic.clone(), (msg, connected)) {
                // The older value of this topic never reached the broker.
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        } else if outbox.connected {
            send(&self.client, &self.shared, &msg);
        } else {
            outbox.events.push_back(msg);
            if outbox.events.len() > EVENT_QUEUE {
                outbox.events.pop_front();
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Messages received on the subscribed topics so far (taken out).
    pub fn take_incoming(&self) -> Vec<Message> {
        std::mem::take(&mut *lock(&self.shared.incoming))
    }

    pub fn stats(&self) -> BrokerStats {
        BrokerStats {
            published: self.shared.published.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            reconnects: self.shared.reconnects.load(Ordering::Relaxed),
        }
    }

    /// Publishes `last` (e.g. `offline`), disconnects cleanly and waits up to `wait` for the
    /// connection to write it all. Returns whether everything was handed to a live connection,
    /// and the final counters.
    pub fn close(mut self, last: Vec<Message>, wait: Duration) -> (bool, BrokerStats) {
        for m in last {
            self.publish(m);
        }
        let connected = self.is_connected();
        let mut flushed = false;
        if connected && self.client.try_disconnect().is_ok() {
            let deadline = Instant::now() + wait;
            while self.thread.as_ref().is_some_and(|t| !t.is_finished()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            flushed = self.thread.as_ref().is_some_and(|t| t.is_finished());
        }
        self.abandon();
        (connected && flushed, self.stats())
    }

    /// Stops the background thread without waiting for the network.
    fn abandon(&mut self) {
        self.shared.exiting.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
        if let Some(t) = self.thread.take() {
            // The thread notices `exiting` within its backoff step; a thread stuck in a TCP or
            // TLS connect is left to end with the process rather than delaying the exit.
            let deadline = Instant::now() + Duration::from_millis(300);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.abandon();
        }
    }
}

fn send(client: &Client, shared: &Shared, msg: &Message) {
    match client.try_publish(&msg.topic, QoS::AtLeastOnce, msg.retain, msg.payload.clone()) {
        Ok(()) => shared.published.fetch_add(1, Ordering::Relaxed),
        Err(_) => shared.dropped.fetch_add(1, Ordering::Relaxed),
    };
}

struct Driver {
    client: Client,
    shared: Arc<Shared>,
    url: BrokerUrl,
    subscribe: Vec<String>,
}

impl Driver {
    fn run(self, mut connection: Connection) {
        let mut backoff = Duration::from_millis(200);
        let mut ever_connected = false;
        let mut outage_logged = false;
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.code == ConnectReturnCode::Success => {
                    if ever_connected {
                        self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                        eprintln!("mqtt: reconnected to {}", self.url);
                    }
                    ever_connected = true;
                    outage_logged = false;
                    backoff = Duration::from_millis(200);
                    for filter in &self.subscribe {
                        let _ = self.client.try_subscribe(filter, QoS::AtLeastOnce);
                    }
                    self.flush_outbox();
                    self.set_first(First::Connected);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    lock(&self.shared.incoming).push(Message {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                    });
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    lock(&self.shared.outbox).connected = false;
                    if self.shared.exiting.load(Ordering::Relaxed) {
                        break;
                    }
                    let (reason, fatal) = describe(&e);
                    self.set_first(First::Failed { reason: reason.clone(), fatal });
                    if ever_connected && !outage_logged {
                        eprintln!("warning: mqtt: lost {} ({reason}); reconnecting with backoff", self.url);
                        outage_logged = true;
                    }
                    // Sleep in small steps so a closing run is not held up.
                    let until = Instant::now() + backoff;
                    while Instant::now() < until {
                        if self.shared.exiting.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    fn set_first(&self, outcome: First) {
        let mut first = lock(&self.shared.first);
        if matches!(*first, First::Waiting) || matches!(outcome, First::Connected) {
            *first = outcome;
            self.shared.first_cv.notify_all();
        }
    }

    /// Marks the connection up and sends what waited: every retained topic, then the events.
    fn flush_outbox(&self) {
        let mut outbox = lock(&self.shared.outbox);
        outbox.connected = true;
        for (msg, sent) in outbox.retained.values_mut() {
            send(&self.client, &self.shared, msg);
            *sent = true;
        }
        while let Some(msg) = outbox.events.pop_front() {
            send(&self.client, &self.shared, &msg);
        }
    }
}

/// A message for the user, and whether retrying cannot help (credentials, TLS).
fn describe(e: &ConnectionError) -> (String, bool) {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            let (what, fatal) = match code {
                ConnectReturnCode::BadUserNamePassword => {
                    ("bad user name or password (check the URL's user and PERCH_MQTT_PASSWORD)", true)
                }
                ConnectReturnCode::NotAuthorized => ("not authorized (check the user and password)", true),
                ConnectReturnCode::BadClientId => ("client id refused (try another --name)", true),
                ConnectReturnCode::RefusedProtocolVersion => ("the broker does not speak MQTT 3.1.1", true),
                ConnectReturnCode::ServiceUnavailable => ("service unavailable", false),
                ConnectReturnCode::Success => ("refused", false),
            };
            (format!("connection refused: {what}"), fatal)
        }
        ConnectionError::Tls(t) => {
            (format!("TLS failed: {t} (a self-signed broker certificate needs --mqtt-ca FILE)"), true)
        }
        other => (other.to_string(), false),
    }
}

/// rustls with the ring provider; roots from `--mqtt-ca` or the system store.
fn tls_config(url: &BrokerUrl, ca: Option<&Path>) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let err = |reason: String| RuntimeError::Mqtt { broker: url.to_string(), reason };
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<std::result::Result<_, _>>())
                .map_err(|e| err(format!("cannot read the CA file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(err(format!("{} holds no PEM certificate", path.display())));
            }
            for c in certs {
                roots.add(c).map_err(|e| err(format!("bad CA certificate in {}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(err(
                    "no system CA certificates found (Debian: ca-certificates); pass --mqtt-ca FILE".to_string()
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
