//! An optional OCSF-shaped body for SIEMs that ingest the Open Cybersecurity Schema Framework.
//!
//! With `otlp.body: ocsf`, each record whose event has an OCSF class gets a body that is an
//! OCSF 1.1 event of that class, next to the usual attributes:
//!
//! - `credwatch.credential.access`: File System Activity (1001), activity Open (14);
//! - `credwatch.network.connect` and `credwatch.tls.handshake`: Network Activity (4001),
//!   activity Open (1);
//! - `credwatch.finding`: Detection Finding (2004), activity Create (1).
//!
//! Attributes with no OCSF field go to `unmapped`, under their credwatch names. Other events
//! (exposures and health) have no body.

use serde_json::{Map, Value, json};

use crate::export::event::{Event, name};

/// OCSF schema version the bodies follow.
const OCSF_VERSION: &str = "1.1.0";

/// Returns the OCSF body of an event, when its event has an OCSF class.
pub fn body(event: &Event, resource: &Map<String, Value>) -> Option<Value> {
    let attributes = &event.attributes;
    let (class, mapped) = match event.name {
        name::CREDENTIAL_ACCESS => (FILE_ACTIVITY, file_activity(attributes)),
        name::NETWORK_CONNECT | name::TLS_HANDSHAKE => {
            (NETWORK_ACTIVITY, network_activity(attributes))
        }
        name::FINDING => (DETECTION_FINDING, detection_finding(attributes)),
        _ => return None,
    };
    let mut body = Map::new();
    body.insert("class_uid".into(), class.class_uid.into());
    body.insert("class_name".into(), class.class_name.into());
    body.insert("category_uid".into(), class.category_uid.into());
    body.insert("category_name".into(), class.category_name.into());
    body.insert("activity_id".into(), class.activity_id.into());
    body.insert("activity_name".into(), class.activity_name.into());
    body.insert(
        "type_uid".into(),
        (class.class_uid * 100 + class.activity_id).into(),
    );
    body.insert("time".into(), time_ms(event).into());
    let (severity_id, severity) = severity(event, attributes);
    body.insert("severity_id".into(), severity_id.into());
    body.insert("severity".into(), severity.into());
    body.insert("metadata".into(), metadata(event, resource));
    if let Some(device) = device(resource) {
        body.insert("device".into(), device);
    }
    if let Some(actor) = actor(attributes) {
        body.insert("actor".into(), actor);
    }
    for (key, value) in mapped {
        body.insert(key.into(), value);
    }
    let unmapped: Map<String, Value> = attributes
        .iter()
        .filter(|(key, _)| !is_mapped(key))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if !unmapped.is_empty() {
        body.insert("unmapped".into(), Value::Object(unmapped));
    }
    Some(Value::Object(body))
}

/// The identity of an OCSF class and activity.
struct Class {
    class_uid: u32,
    class_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u32,
    activity_name: &'static str,
}

const FILE_ACTIVITY: Class = Class {
    class_uid: 1001,
    class_name: "File System Activity",
    category_uid: 1,
    category_name: "System Activity",
    activity_id: 14,
    activity_name: "Open",
};

const NETWORK_ACTIVITY: Class = Class {
    class_uid: 4001,
    class_name: "Network Activity",
    category_uid: 4,
    category_name: "Network Activity",
    activity_id: 1,
    activity_name: "Open",
};

const DETECTION_FINDING: Class = Class {
    class_uid: 2004,
    class_name: "Detection Finding",
    category_uid: 2,
    category_name: "Findings",
    activity_id: 1,
    activity_name: "Create",
};

/// Attribute prefixes and names that an OCSF field carries, so `unmapped` leaves them out.
const MAPPED: &[&str] = &[
    "process.pid",
    "process.parent_pid",
    "process.executable.path",
    "process.executable.name",
    "process.command_line",
    "process.user.id",
    "process.user.name",
    "credwatch.process.executable.sha256",
    "container.id",
    "file.path",
    "network.peer.address",
    "network.peer.port",
    "network.transport",
    "server.address",
    "server.port",
    "tls.protocol.version",
    "credwatch.finding.type",
    "credwatch.finding.severity",
    "credwatch.finding.summary",
];

fn is_mapped(key: &str) -> bool {
    MAPPED.contains(&key)
}

fn file_activity(attributes: &Map<String, Value>) -> Vec<(&'static str, Value)> {
    let mut mapped = Vec::new();
    if let Some(path) = attributes.get("file.path").and_then(Value::as_str) {
        let name = path.rsplit('/').next().unwrap_or(path);
        mapped.push(("file", json!({"path": path, "name": name, "type_id": 1})));
    }
    let failed = attributes
        .get("credwatch.access.result")
        .and_then(Value::as_str)
        .is_some_and(|result| result != "ok");
    mapped.extend(status(!failed));
    mapped
}

fn network_activity(attributes: &Map<String, Value>) -> Vec<(&'static str, Value)> {
    let mut mapped = Vec::new();
    let mut endpoint = Map::new();
    if let Some(address) = attributes.get("network.peer.address") {
        endpoint.insert("ip".into(), address.clone());
    }
    if let Some(port) = attributes
        .get("network.peer.port")
        .or_else(|| attributes.get("server.port"))
    {
        endpoint.insert("port".into(), port.clone());
    }
    if let Some(host) = attributes.get("server.address") {
        endpoint.insert("hostname".into(), host.clone());
    }
    if !endpoint.is_empty() {
        mapped.push(("dst_endpoint", Value::Object(endpoint)));
    }
    mapped.push((
        "connection_info",
        json!({"protocol_name": "tcp", "direction_id": 2, "direction": "Outbound"}),
    ));
    let mut tls = Map::new();
    if let Some(name) = attributes.get("server.address") {
        tls.insert("sni".into(), name.clone());
    }
    if let Some(version) = attributes.get("tls.protocol.version") {
        tls.insert("version".into(), version.clone());
    }
    if !tls.is_empty() {
        mapped.push(("tls", Value::Object(tls)));
    }
    let outcome = attributes
        .get("credwatch.connect.result")
        .or_else(|| attributes.get("credwatch.tls.result"))
        .and_then(Value::as_str);
    if let Some(outcome) = outcome {
        mapped.extend(status(matches!(outcome, "ok" | "success")));
    }
    mapped
}

fn detection_finding(attributes: &Map<String, Value>) -> Vec<(&'static str, Value)> {
    let text = |key: &str| {
        attributes
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let finding_type = text("credwatch.finding.type");
    let mut info = Map::new();
    info.insert("title".into(), finding_type.into());
    info.insert("desc".into(), text("credwatch.finding.summary").into());
    info.insert("types".into(), json!([finding_type]));
    info.insert(
        "analytic".into(),
        json!({"name": finding_type, "type_id": 1, "type": "Rule"}),
    );
    if let Some(id) = attributes.get("credwatch.finding.credential.id") {
        info.insert(
            "uid".into(),
            format!("{finding_type}:{}", id.as_str().unwrap_or_default()).into(),
        );
    }
    vec![("finding_info", Value::Object(info))]
}

fn status(success: bool) -> Vec<(&'static str, Value)> {
    if success {
        vec![("status_id", 1.into()), ("status", "Success".into())]
    } else {
        vec![("status_id", 2.into()), ("status", "Failure".into())]
    }
}

/// Maps the finding severity, or the event severity for other events.
fn severity(event: &Event, attributes: &Map<String, Value>) -> (u32, &'static str) {
    match attributes
        .get("credwatch.finding.severity")
        .and_then(Value::as_str)
    {
        Some("low") => (2, "Low"),
        Some("medium") => (3, "Medium"),
        Some("high") => (4, "High"),
        _ if event.severity.number() >= 13 => (3, "Medium"),
        _ => (1, "Informational"),
    }
}

fn metadata(event: &Event, resource: &Map<String, Value>) -> Value {
    json!({
        "version": OCSF_VERSION,
        "product": {
            "name": "credwatch",
            "vendor_name": "credwatch",
            "version": resource.get("service.version").cloned().unwrap_or(Value::Null),
        },
        "event_code": event.name,
    })
}

fn device(resource: &Map<String, Value>) -> Option<Value> {
    let hostname = resource.get("host.name")?;
    let mut device = Map::new();
    device.insert("hostname".into(), hostname.clone());
    device.insert("type_id".into(), 1.into());
    if let Some(id) = resource.get("host.id") {
        device.insert("uid".into(), id.clone());
    }
    Some(Value::Object(device))
}

/// Returns the process and user that acted, from the `process.*` attributes.
fn actor(attributes: &Map<String, Value>) -> Option<Value> {
    let pid = attributes.get("process.pid")?;
    let mut process = Map::new();
    process.insert("pid".into(), pid.clone());
    let copies = [
        ("process.executable.name", "name"),
        ("process.command_line", "cmd_line"),
        ("container.id", "container_uid"),
    ];
    for (from, to) in copies {
        if let Some(value) = attributes.get(from) {
            process.insert(to.into(), value.clone());
        }
    }
    if let Some(parent) = attributes.get("process.parent_pid") {
        process.insert("parent_process".into(), json!({"pid": parent}));
    }
    if let Some(path) = attributes.get("process.executable.path") {
        let mut file = json!({"path": path, "type_id": 1});
        if let Some(hash) = attributes.get("credwatch.process.executable.sha256") {
            file["hashes"] = json!([{"algorithm_id": 3, "algorithm": "SHA-256", "value": hash}]);
        }
        process.insert("file".into(), file);
    }
    let mut user = Map::new();
    if let Some(uid) = attributes.get("process.user.id") {
        user.insert("uid".into(), uid.to_string().trim_matches('"').into());
    }
    if let Some(name) = attributes.get("process.user.name") {
        user.insert("name".into(), name.clone());
    }
    let mut actor = Map::new();
    actor.insert("process".into(), Value::Object(process));
    if !user.is_empty() {
        actor.insert("user".into(), Value::Object(user));
    }
    Some(Value::Object(actor))
}

fn time_ms(event: &Event) -> u64 {
    event
        .time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::export::event::Severity;

    fn resource() -> Map<String, Value> {
        let mut resource = Map::new();
        resource.insert("host.name".into(), "node-1".into());
        resource.insert("service.version".into(), "0.1.0".into());
        resource
    }

    fn event(name: &'static str, severity: Severity, pairs: &[(&str, Value)]) -> Event {
        let mut event = Event::new(
            name,
            severity,
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_500),
        );
        for (key, value) in pairs {
            event.set(key, value.clone());
        }
        event
    }

    #[test]
    fn access_is_file_system_activity() {
        let access = event(
            name::CREDENTIAL_ACCESS,
            Severity::Info,
            &[
                ("file.path", json!("/root/.aws/credentials")),
                ("process.pid", json!(42)),
                ("process.executable.path", json!("/usr/bin/cat")),
                ("process.user.id", json!(0)),
                ("credwatch.access.result", json!("ok")),
                ("credwatch.credential.type", json!("aws_credentials")),
            ],
        );

        let body = body(&access, &resource()).unwrap();

        assert_eq!(body["class_uid"], 1001);
        assert_eq!(body["activity_id"], 14);
        assert_eq!(body["type_uid"], 100114);
        assert_eq!(body["time"], 1_700_000_000_500_u64);
        assert_eq!(body["file"]["path"], "/root/.aws/credentials");
        assert_eq!(body["file"]["name"], "credentials");
        assert_eq!(body["actor"]["process"]["pid"], 42);
        assert_eq!(body["actor"]["process"]["file"]["path"], "/usr/bin/cat");
        assert_eq!(body["actor"]["user"]["uid"], "0");
        assert_eq!(body["device"]["hostname"], "node-1");
        assert_eq!(body["status_id"], 1);
        assert_eq!(body["metadata"]["product"]["name"], "credwatch");
        assert_eq!(
            body["unmapped"]["credwatch.credential.type"],
            "aws_credentials"
        );
        assert!(body["unmapped"].get("file.path").is_none());
    }

    #[test]
    fn handshake_is_network_activity() {
        let handshake = event(
            name::TLS_HANDSHAKE,
            Severity::Info,
            &[
                ("server.address", json!("api.example.test")),
                ("server.port", json!(443)),
                ("network.peer.address", json!("127.0.0.1")),
                ("tls.protocol.version", json!("1.3")),
                ("credwatch.tls.result", json!("failure")),
                ("process.pid", json!(7)),
            ],
        );

        let body = body(&handshake, &resource()).unwrap();

        assert_eq!(body["class_uid"], 4001);
        assert_eq!(body["type_uid"], 400101);
        assert_eq!(body["dst_endpoint"]["hostname"], "api.example.test");
        assert_eq!(body["dst_endpoint"]["port"], 443);
        assert_eq!(body["tls"]["sni"], "api.example.test");
        assert_eq!(body["tls"]["version"], "1.3");
        assert_eq!(body["connection_info"]["direction_id"], 2);
        assert_eq!(body["status_id"], 2);
    }

    #[test]
    fn finding_is_detection_finding() {
        let finding = event(
            name::FINDING,
            Severity::Warn,
            &[
                ("credwatch.finding.type", json!("revoked_use")),
                ("credwatch.finding.severity", json!("high")),
                (
                    "credwatch.finding.summary",
                    json!("cat read a revoked key."),
                ),
                ("credwatch.finding.credential.id", json!("cw1:ab")),
                ("process.pid", json!(9)),
            ],
        );

        let body = body(&finding, &resource()).unwrap();

        assert_eq!(body["class_uid"], 2004);
        assert_eq!(body["type_uid"], 200401);
        assert_eq!(body["severity_id"], 4);
        assert_eq!(body["finding_info"]["title"], "revoked_use");
        assert_eq!(body["finding_info"]["desc"], "cat read a revoked key.");
        assert_eq!(body["finding_info"]["uid"], "revoked_use:cw1:ab");
        assert_eq!(
            body["unmapped"]["credwatch.finding.credential.id"],
            "cw1:ab"
        );
    }

    #[test]
    fn health_has_no_class() {
        let health = event(name::MONITOR_HEALTH, Severity::Info, &[]);
        assert_eq!(body(&health, &resource()), None);
    }
}
