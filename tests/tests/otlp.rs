//! Export to a real OTLP receiver on loopback (`credwatch_tests::otlp`), over HTTP/protobuf and
//! gRPC: event names, severities, attributes and the resource as the JSON lines have them.

use std::process::Command;

use tempfile::TempDir;

use credwatch_tests::{
    Daemon, client::run_to_end, otlp::OtlpReceiver, otlp::Received, scratch_dir, servers::openssl,
    write_file,
};
use serde_json::Value;

/// Made-up secret of the credential fixture.
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYMADEUPOTLP";
/// Made-up bearer token the collector expects, read from a file.
const BEARER: &str = "made-up-collector-token-4f1c";

/// Writes a made-up AWS credentials file and returns its path.
fn credential_file(dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join("home/.aws/credentials");
    write_file(
        &file,
        &format!(
            "[default]\naws_access_key_id = AKIAMADEUPOTLPEXPORT\naws_secret_access_key = {SECRET}\n"
        ),
    );
    file
}

/// Starts a daemon that exports to `receiver` with `protocol`, reads the fixture with `cat`
/// and returns the daemon, the JSON line of the access event, its OTLP record and the
/// directory of the fixtures, which must outlive the daemon.
fn export_one_read(receiver: &OtlpReceiver, protocol: &str) -> (Daemon, Value, Received, TempDir) {
    export_one_read_with(receiver, protocol, "")
}

/// Like [`export_one_read`], with `extra` appended to the `otlp` section.
fn export_one_read_with(
    receiver: &OtlpReceiver,
    protocol: &str,
    extra: &str,
) -> (Daemon, Value, Received, TempDir) {
    let dir = scratch_dir();
    let file = credential_file(dir.path());
    let token = dir.path().join("collector-token");
    write_file(&token, &format!("Bearer {BEARER}\n"));
    let sections = format!(
        "otlp:\n  endpoint: http://127.0.0.1:{}\n  protocol: {protocol}\n  headers:\n    x-scope-orgid: tenant-a\n  header_files:\n    authorization: {}\n  resource:\n    k8s.cluster.name: test-cluster\n    k8s.node.name: test-node\n{extra}",
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
            && record.attributes.get("process.pid") == Some(&reader.pid.into())
            && record.attributes.get("file.path") == Some(&path.as_str().into())
    });
    // The directory contains the collector token, which the daemon reads at every request.
    (daemon, line, record, dir)
}

/// Checks that the record carries exactly what the JSON line carries.
fn assert_same_event(line: &Value, record: &Received) {
    assert_eq!(
        line["attributes"]["credwatch.identify.result"], "identified",
        "the fixture must hold a valid made-up key: {line}"
    );
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
    assert!(
        record.resource.contains_key("host.name"),
        "{:?}",
        record.resource
    );
    assert!(
        record.resource.contains_key("service.version"),
        "{:?}",
        record.resource
    );
    assert!(record.time_unix_nano > 0);
}

fn assert_no_secrets(daemon: &Daemon, receiver: &OtlpReceiver) {
    let stderr = daemon.stderr_text();
    assert!(
        !stderr.contains(SECRET),
        "stderr contains the credential's secret"
    );
    assert!(
        !stderr.contains(BEARER),
        "stderr contains the collector token"
    );
    for record in receiver.records() {
        let text = serde_json::to_string(&record.attributes).unwrap();
        assert!(
            !text.contains(SECRET),
            "a record contains the credential's secret"
        );
    }
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn http_export_matches_json_lines() {
    let receiver = OtlpReceiver::http(0);
    let (mut daemon, line, record, _files) = export_one_read(&receiver, "http/protobuf");
    let health = daemon.request_health();
    assert!(daemon.stop().success());

    assert_same_event(&line, &record);
    assert_eq!(record.headers["authorization"], format!("Bearer {BEARER}"));
    assert_eq!(record.headers["x-scope-orgid"], "tenant-a");
    assert_eq!(record.headers["content-type"], "application/x-protobuf");
    assert!(
        health["attributes"]["credwatch.export.otlp.sent"].as_u64() >= Some(1),
        "{health}"
    );
    assert_eq!(
        health["attributes"]["credwatch.export.otlp.connected"], true,
        "{health}"
    );
    assert_no_secrets(&daemon, &receiver);
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn ocsf_body_is_file_system_activity() {
    let receiver = OtlpReceiver::http(0);
    let (mut daemon, line, record, _files) =
        export_one_read_with(&receiver, "http/protobuf", "  body: ocsf\n");
    assert!(daemon.stop().success());

    // The attributes stay as they are; the body adds the OCSF event.
    assert_same_event(&line, &record);
    let body = &record.body;
    assert_eq!(body["class_uid"], 1001, "{body}");
    assert_eq!(body["activity_id"], 14);
    assert_eq!(body["type_uid"], 100114);
    assert_eq!(body["file"]["path"], line["attributes"]["file.path"]);
    assert_eq!(
        body["actor"]["process"]["pid"],
        line["attributes"]["process.pid"]
    );
    assert_eq!(body["metadata"]["product"]["name"], "credwatch");
    assert_eq!(body["device"]["hostname"], line["resource"]["host.name"]);
    assert!(!body.to_string().contains(SECRET));
}

/// Waits until the receiver's metric `name` has a point that `matches`.
fn wait_for_point(
    receiver: &OtlpReceiver,
    name: &str,
    matches: impl Fn(&credwatch_tests::otlp::Point) -> bool,
) -> credwatch_tests::otlp::Point {
    let deadline = std::time::Instant::now() + credwatch_tests::TIMEOUT;
    loop {
        if let Some(point) = receiver.metric_points(name).into_iter().find(&matches) {
            return point;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no point of {name} matched; the last request had {:?}",
            receiver.metric_points(name)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn counters_arrive_as_metrics() {
    for (receiver, protocol) in [
        (OtlpReceiver::http(0), "http/protobuf"),
        (OtlpReceiver::grpc(0), "grpc"),
    ] {
        let (mut daemon, _, _, _files) =
            export_one_read_with(&receiver, protocol, "  metrics_interval: 1s\n");

        let accesses = wait_for_point(&receiver, "credwatch.events", |point| {
            point.attributes["event.name"] == "credwatch.credential.access" && point.value >= 1
        });
        let credentials = wait_for_point(&receiver, "credwatch.inventory.credentials", |point| {
            point.value >= 1
        });
        let probe = wait_for_point(&receiver, "credwatch.probes", |point| {
            point.attributes["credwatch.probe.program"] == "sys_enter_openat"
        });
        let lost = wait_for_point(&receiver, "credwatch.records.lost", |_| true);
        // The queue's gauge is sent whatever its value.
        wait_for_point(&receiver, "credwatch.export.queue.depth", |_| true);
        assert!(daemon.stop().success());

        assert!(accesses.value >= 1, "{protocol}: {accesses:?}");
        assert!(credentials.value >= 1, "{protocol}: {credentials:?}");
        assert_eq!(
            probe.attributes["credwatch.probe.state"], "attached",
            "{protocol}"
        );
        assert_eq!(lost.value, 0, "{protocol}: records were lost");
    }
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn grpc_export_matches_json_lines() {
    let receiver = OtlpReceiver::grpc(0);
    let (mut daemon, line, record, _files) = export_one_read(&receiver, "grpc");
    assert!(daemon.stop().success());

    assert_same_event(&line, &record);
    assert_eq!(record.headers["authorization"], format!("Bearer {BEARER}"));
    assert_eq!(record.headers["x-scope-orgid"], "tenant-a");
    assert_no_secrets(&daemon, &receiver);
}

/// Makes, in `dir`, a made-up CA (`ca.pem`), a server certificate for 127.0.0.1
/// (`server.pem`, `server.key`) and a client certificate (`client.pem`, `client.key`) it
/// issued, and an unrelated CA (`other-ca.pem`).
fn make_pki(dir: &std::path::Path) {
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for (name, subject) in [
        ("ca", "/CN=made-up test CA"),
        ("other-ca", "/CN=made-up other CA"),
    ] {
        let (key_file, certificate) = (format!("{name}.key"), format!("{name}.pem"));
        let mut args = vec!["req", "-x509"];
        args.extend(key);
        args.extend([
            "-days",
            "2",
            "-subj",
            subject,
            "-keyout",
            &key_file,
            "-out",
            &certificate,
        ]);
        openssl(dir, &args);
    }
    for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        let extensions = format!("{name}.ext");
        write_file(
            &dir.join(&extensions),
            &format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"),
        );
        let (key_file, request, certificate) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        let mut args = vec!["req", "-new"];
        args.extend(key);
        args.extend([
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &key_file,
            "-out",
            &request,
        ]);
        openssl(dir, &args);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &request,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &extensions,
                "-out",
                &certificate,
            ],
        );
    }
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn grpc_mutual_tls_and_wrong_ca() {
    let pki = scratch_dir();
    make_pki(pki.path());
    let read = |name: &str| std::fs::read(pki.path().join(name)).unwrap();
    let receiver =
        OtlpReceiver::grpc_mutual_tls(0, (read("server.pem"), read("server.key")), read("ca.pem"));
    let files = scratch_dir();
    let file = credential_file(files.path());
    let path = file.to_string_lossy().into_owned();
    let settings = |ca: &str| {
        format!(
            "otlp:\n  endpoint: https://127.0.0.1:{}\n  protocol: grpc\n  ca_file: {}\n  client_certificate_file: {}\n  client_key_file: {}\n",
            receiver.port(),
            pki.path().join(ca).display(),
            pki.path().join("client.pem").display(),
            pki.path().join("client.key").display()
        )
    };

    let mut trusted = Daemon::start_with_config(&settings("ca.pem"));
    let reader = run_to_end(Command::new("/usr/bin/cat").arg(&file));
    let record = receiver.wait_for("the access event over mutual TLS", |record| {
        record.attributes.get("process.pid") == Some(&reader.pid.into())
            && record.attributes.get("file.path") == Some(&path.as_str().into())
    });
    assert!(trusted.stop().success());

    let mut untrusting = Daemon::start_with_config(&settings("other-ca.pem"));
    let refused = run_to_end(Command::new("/usr/bin/cat").arg(&file));
    let line = untrusting.wait_for("the access event in the JSON lines", |event| {
        event["attributes"]["process.pid"] == refused.pid
    });
    let health = untrusting.wait_for("a health event for the failed export", |event| {
        event["attributes"]["credwatch.health.reason"] == "export"
    });
    assert!(untrusting.stop().success());

    assert_eq!(record.event_name, "credwatch.credential.access");
    assert_eq!(line["event_name"], "credwatch.credential.access");
    let error = health["attributes"]["credwatch.export.otlp.last_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("certificate") || error.contains("Certificate"),
        "{health}"
    );
    assert_eq!(
        health["attributes"]["credwatch.export.otlp.connected"],
        false
    );
    assert!(
        untrusting.stderr_text().contains("failed to export events"),
        "{}",
        untrusting.stderr_text()
    );
    assert!(
        receiver
            .records()
            .iter()
            .all(|record| record.attributes.get("process.pid") != Some(&refused.pid.into())),
        "a collector the daemon does not trust received its events"
    );
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn silent_collector_does_not_hold_the_stop() {
    // A collector that accepts connections and never responds: every request waits for the
    // default 10 s timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let files = scratch_dir();
    let file = credential_file(files.path());
    let sections = format!("otlp:\n  endpoint: http://127.0.0.1:{port}\n");
    let mut daemon = Daemon::start_with_config(&sections);
    let reader = run_to_end(Command::new("/usr/bin/cat").arg(&file));
    daemon.wait_for("the access event", |event| {
        event["attributes"]["process.pid"] == reader.pid
    });
    let (connection, _) = listener
        .accept()
        .expect("the daemon connects to the collector");

    // The harness allows 20 s for the stop; waiting out each pending request would take 30.
    let status = daemon.stop();
    drop(connection);

    assert!(status.success(), "{}", daemon.stderr_text());
    assert!(
        daemon
            .stderr_text()
            .contains("did not answer before the stop"),
        "{}",
        daemon.stderr_text()
    );
}
