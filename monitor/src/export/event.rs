//! The event model: one OpenTelemetry LogRecord per event, with attributes and a resource.

use std::{fs, time::SystemTime};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::clock::rfc3339;

/// Event names, as listed in `docs/events.md`.
pub mod name {
    /// A process opened a credential file.
    pub const CREDENTIAL_ACCESS: &str = "credwatch.credential.access";
    /// A process started an outbound TCP connection.
    pub const NETWORK_CONNECT: &str = "credwatch.network.connect";
    /// A secret was found in a new process's arguments or environment.
    pub const CREDENTIAL_EXPOSURE: &str = "credwatch.credential.exposure";
    /// A process made a TLS handshake as a client.
    pub const TLS_HANDSHAKE: &str = "credwatch.tls.handshake";
    /// Probe states, counters and drops.
    pub const MONITOR_HEALTH: &str = "credwatch.monitor.health";
    /// A detection rule found unusual use of a credential.
    pub const FINDING: &str = "credwatch.finding";
}

/// OpenTelemetry log severities used by credwatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Normal operation.
    Info,
    /// Something was lost or degraded.
    Warn,
}

impl Severity {
    /// `severity_text`.
    pub fn text(self) -> &'static str {
        match self {
            Self::Info => "INFO",
            Self::Warn => "WARN",
        }
    }

    /// `severity_number` from the OpenTelemetry log data model.
    pub fn number(self) -> u8 {
        match self {
            Self::Info => 9,
            Self::Warn => 13,
        }
    }
}

/// One event.
#[derive(Clone, Debug)]
pub struct Event {
    /// When it happened.
    pub time: SystemTime,
    /// `event_name`.
    pub name: &'static str,
    /// Severity.
    pub severity: Severity,
    /// Attributes, by key.
    pub attributes: Map<String, Value>,
}

impl Event {
    /// An event with no attributes yet.
    pub fn new(name: &'static str, severity: Severity, time: SystemTime) -> Self {
        Self {
            time,
            name,
            severity,
            attributes: Map::new(),
        }
    }

    /// Sets an attribute.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.attributes.insert(key.to_owned(), value.into());
        self
    }

    /// Sets an attribute when the value is known.
    pub fn set_some<T: Into<Value>>(&mut self, key: &str, value: Option<T>) -> &mut Self {
        if let Some(value) = value {
            self.set(key, value);
        }
        self
    }

    /// Returns the line the JSON-lines sink writes. It borrows the attributes, so writing an
    /// event copies none of them.
    pub fn line<'a>(&'a self, resource: &'a Resource) -> Line<'a> {
        Line {
            attributes: &self.attributes,
            event_name: self.name,
            observed_time: rfc3339(SystemTime::now()),
            resource: &resource.attributes,
            severity_number: self.severity.number(),
            severity_text: self.severity.text(),
            time: rfc3339(self.time),
        }
    }
}

/// One JSON line: an event with its resource. The fields are in alphabetical order, as in a
/// JSON object built from a sorted map.
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    attributes: &'a Map<String, Value>,
    event_name: &'a str,
    observed_time: String,
    resource: &'a Map<String, Value>,
    severity_number: u8,
    severity_text: &'a str,
    time: String,
}

/// Attributes of the host and the daemon, the same on every event.
#[derive(Clone, Debug)]
pub struct Resource {
    /// Resource attributes.
    pub attributes: Map<String, Value>,
}

impl Resource {
    /// Describes this host and daemon.
    pub fn detect() -> Self {
        let mut attributes = Map::new();
        attributes.insert("service.name".into(), "credwatch".into());
        attributes.insert("service.version".into(), env!("CARGO_PKG_VERSION").into());
        attributes.insert("os.type".into(), "linux".into());
        if let Some(host) = read_trimmed("/proc/sys/kernel/hostname") {
            attributes.insert("host.name".into(), host.into());
        }
        if let Some(id) = read_trimmed("/etc/machine-id") {
            attributes.insert("host.id".into(), id.into());
        }
        if let Some(release) = read_trimmed("/proc/sys/kernel/osrelease") {
            attributes.insert("os.version".into(), release.into());
        }
        Self { attributes }
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
