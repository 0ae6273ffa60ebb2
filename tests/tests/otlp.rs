//! Export to a real OTLP receiver on loopback (`credwatch_tests::otlp`), over HTTP/protobuf and
//! gRPC: event names, severities, attributes and the resource as the JSON lines have them.

use std::process::Command;

use credwatch_tests::{
    Daemon, client::run_to_end, otlp::OtlpReceiver, otlp::Received, scratch_dir, write_file,
};
use serde_json::Value;

/// Made-up secret of the credential fixture.
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYMADEUPOTLP1";
/// Made-up bearer token the collector expects, read from a file.
const BEARER: &str = "made-up-collector-token-4f1c";

/// Writes a made-up AWS credentials file and returns its path.
fn credential_file(dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join("home/.aws/credentials");
    write_file(
        &file,
        &format!("[default]\naws_access_key_id = AKIAMADEUPOTLPEXPORT\naws_secret_access_key = {SECRET}\n"),
    );
    file
}

/// Starts a daemon that exports to `receiver` with `protocol`, reads the fixture with `cat`
/// and returns the daemon, the JSON line of the access event and its OTLP record.
fn export_one_read(receiver: &OtlpReceiver, protocol: &str) -> (Daemon, Value, Received) {
    let dir = scratch_dir();
    let file = credential_file(dir.path());
    let token = dir.path().join("collector-token");
    write_file(&token, &format!("Bearer {BEARER}\n"));
    let sections = format!(
        "otlp:\n  endpoint: http://127.0.0.1:{}\n  protocol: {protocol}\n  headers:\n    x-scope-orgid: tenant-a\n  header_files:\n    authorization: {}\n  resource:\n    k8s.cluster.name: test-cluster\n    k8s.node.name: test-node\n",
        receiver.port(),
        token.display()
    );
    let daemon = Daemon::start_with_config(&sections);
    let reader = run_to_end(Command::new("/usr/bin/cat").arg(&file));
    reader.assert_success();
    let path = file.to_string_lossy().into_owned();
    let line = daemon.wait_for("the access event", |event| {
        event["event_name"] == "credwatch.credential.access"
            && event["attributes"]["process.pid"] == reader.pid
            && event["attributes"]["file.path"] == path.as_str()
    });
    let record = receiver.wait_for("the access event", |record| {
        record.event_name == "credwatch.credential.access"
            && record.attributes["process.pid"] == reader.pid
            && record.attributes["file.path"] == path.as_str()
    });
    drop(dir);
    (daemon, line, record)
}

/// Checks that the record carries exactly what the JSON line carries.
fn assert_same_event(line: &Value, record: &Received) {
    assert_eq!(line["event_name"], record.event_name.as_str());
    assert_eq!(line["severity_text"], record.severity_text.as_str());
    assert_eq!(line["severity_number"], record.severity_number);
    assert_eq!(
        line["attributes"].as_object().unwrap(),
        &record.attributes,
        "the OTLP attributes differ from the JSON line"
    );
    for (key, value) in line["resource"].as_object().unwrap() {
        assert_eq!(&record.resource[key], value, "resource attribute {key}");
    }
    assert_eq!(record.resource["service.name"], "credwatch");
    assert_eq!(record.resource["k8s.cluster.name"], "test-cluster");
    assert_eq!(record.resource["k8s.node.name"], "test-node");
    assert!(record.resource.contains_key("host.name"), "{:?}", record.resource);
    assert!(record.resource.contains_key("service.version"), "{:?}", record.resource);
    assert!(record.time_unix_nano > 0);
}

fn assert_no_secrets(daemon: &Daemon, receiver: &OtlpReceiver) {
    let stderr = daemon.stderr_text();
    assert!(!stderr.contains(SECRET), "stderr contains the credential's secret");
    assert!(!stderr.contains(BEARER), "stderr contains the collector token");
    for record in receiver.records() {
        let text = serde_json::to_string(&record.attributes).unwrap();
        assert!(!text.contains(SECRET), "a record contains the credential's secret");
    }
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn http_export_matches_json_lines() {
    let receiver = OtlpReceiver::http(0);
    let (mut daemon, line, record) = export_one_read(&receiver, "http/protobuf");
    let health = daemon.request_health();
    assert!(daemon.stop().success());

    assert_same_event(&line, &record);
    assert_eq!(record.headers["authorization"], format!("Bearer {BEARER}"));
    assert_eq!(record.headers["x-scope-orgid"], "tenant-a");
    assert_eq!(record.headers["content-type"], "application/x-protobuf");
    assert!(health["attributes"]["credwatch.export.otlp.sent"].as_u64() >= Some(1), "{health}");
    assert_eq!(health["attributes"]["credwatch.export.otlp.connected"], true, "{health}");
    assert_no_secrets(&daemon, &receiver);
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn grpc_export_matches_json_lines() {
    let receiver = OtlpReceiver::grpc(0);
    let (mut daemon, line, record) = export_one_read(&receiver, "grpc");
    assert!(daemon.stop().success());

    assert_same_event(&line, &record);
    assert_eq!(record.headers["authorization"], format!("Bearer {BEARER}"));
    assert_eq!(record.headers["x-scope-orgid"], "tenant-a");
    assert_no_secrets(&daemon, &receiver);
}
