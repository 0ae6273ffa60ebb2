//! Delivery guarantees of the OTLP export, tested against a real receiver on loopback
//! (`credwatch_tests::otlp`). Events queued while the collector is down arrive once and in the
//! order of the JSON lines, and the queue survives a SIGKILL. A full queue drops its oldest
//! events and counts them exactly, and a wrong endpoint leaves the JSON lines untouched.
//!
//! An event is matched across the two outputs by its name, its time in microseconds (the
//! precision of the JSON lines), its `process.pid` and its `file.path`.

use std::{
    collections::BTreeSet,
    fs,
    io::{self, Read as _, Write as _},
    net::{Shutdown, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use credwatch_tests::{
    Daemon, TIMEOUT,
    client::run_to_end,
    counter, credwatch_binary,
    otlp::{OtlpReceiver, Received, free_port},
    scratch_dir, write_file,
};
use serde_json::Value;

const ACCESS: &str = "credwatch.credential.access";
const HEALTH: &str = "credwatch.monitor.health";
/// How long a test waits for queued events once the receiver listens. The delivery thread
/// pauses up to 30 s between two failed attempts, so this is longer than that.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(40);
/// Name of the queue directory in the state directory.
const QUEUE_DIRECTORY: &str = "otlp-queue";

/// Writes a made-up AWS credentials file below `dir`/`home` and returns its path.
fn credential_file(dir: &Path, home: &str) -> PathBuf {
    let file = dir.join(home).join(".aws/credentials");
    write_file(
        &file,
        "[default]\naws_access_key_id = AKIAMADEUPDELIVERY01\naws_secret_access_key = madeUpDeliverySecretNotRealAtAll0000000\n",
    );
    file
}

/// Reads `file` `times` times in one `/usr/bin/cat` process and returns its pid. Each open is
/// one access event.
fn cat(file: &Path, times: usize) -> u64 {
    let mut command = Command::new("/usr/bin/cat");
    for _ in 0..times {
        command.arg(file);
    }
    let finished = run_to_end(&mut command);
    finished.assert_success();
    u64::from(finished.pid)
}

/// Returns the `otlp` section that exports over HTTP/protobuf to 127.0.0.1:`port`, with the
/// further keys `extra` (indented by two spaces).
fn otlp_section(port: u16, extra: &str) -> String {
    format!("otlp:\n  endpoint: http://127.0.0.1:{port}\n  protocol: http/protobuf\n{extra}")
}

/// The identity of one event in the JSON lines and in the OTLP records.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct EventKey {
    name: String,
    time_micros: u64,
    pid: Option<u64>,
    file: Option<String>,
}

fn line_key(line: &Value) -> EventKey {
    let time = line["time"]
        .as_str()
        .unwrap_or_else(|| panic!("a JSON line without a time: {line}"));
    EventKey {
        name: line["event_name"].as_str().unwrap_or_default().to_owned(),
        time_micros: unix_micros(time),
        pid: line["attributes"]["process.pid"].as_u64(),
        file: line["attributes"]["file.path"].as_str().map(str::to_owned),
    }
}

fn record_key(record: &Received) -> EventKey {
    EventKey {
        name: record.event_name.clone(),
        time_micros: record.time_unix_nano / 1000,
        pid: record.attributes.get("process.pid").and_then(Value::as_u64),
        file: record
            .attributes
            .get("file.path")
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

/// Parses a time of the JSON lines, RFC 3339 in UTC with microseconds such as
/// `2026-12-04T19:50:00.123456Z`, into microseconds since the Unix epoch.
fn unix_micros(time: &str) -> u64 {
    const MONTH_DAYS: [u64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    assert!(
        time.len() == 27 && time.ends_with('Z'),
        "unexpected time format {time:?}"
    );
    let number = |range: std::ops::Range<usize>| -> u64 {
        time.get(range)
            .and_then(|digits| digits.parse().ok())
            .unwrap_or_else(|| panic!("unexpected time format {time:?}"))
    };
    let is_leap = |year: u64| {
        year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
    };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let mut days: u64 = (1970..year)
        .map(|year| if is_leap(year) { 366 } else { 365 })
        .sum();
    days += MONTH_DAYS[..(month - 1) as usize].iter().sum::<u64>();
    if month > 2 && is_leap(year) {
        days += 1;
    }
    days += day - 1;
    let seconds = days * 86_400 + number(11..13) * 3600 + number(14..16) * 60 + number(17..19);
    seconds * 1_000_000 + number(20..26)
}

/// Polls `check` every 50 ms until it returns `Ok`, and panics with `description` and the last
/// `Err` after `timeout`.
fn wait_until<T>(
    description: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(state) if Instant::now() > deadline => {
                panic!("timed out after {timeout:?} waiting for {description}: {state}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Waits until the JSON lines have an access event of each of `pids` for `file`, and returns
/// those events in the order of the JSON lines.
fn wait_for_access_lines(daemon: &Daemon, file: &Path, pids: &[u64]) -> Vec<Value> {
    let path = file.to_string_lossy().into_owned();
    let expected: BTreeSet<u64> = pids.iter().copied().collect();
    wait_until("access events in the JSON lines", TIMEOUT, || {
        let lines: Vec<Value> = daemon
            .events()
            .into_iter()
            .filter(|line| {
                line["event_name"] == ACCESS && line["attributes"]["file.path"] == path.as_str()
            })
            .filter(|line| {
                line["attributes"]["process.pid"]
                    .as_u64()
                    .is_some_and(|pid| expected.contains(&pid))
            })
            .collect();
        if lines.len() >= pids.len() {
            Ok(lines)
        } else {
            Err(format!("{} of {} access events", lines.len(), pids.len()))
        }
    })
}

/// Returns the JSON lines before `event`, which must be among them.
fn lines_before(daemon: &Daemon, event: &Value) -> Vec<Value> {
    let lines = daemon.events();
    let position = lines
        .iter()
        .position(|line| line == event)
        .unwrap_or_else(|| panic!("the event is not in the JSON lines: {event}"));
    lines[..position].to_vec()
}

/// Waits until the receiver has a record of every key in `keys`, and returns the records whose
/// key is among `keys`, in arrival order.
fn wait_for_records(
    receiver: &OtlpReceiver,
    keys: &[EventKey],
    description: &str,
) -> Vec<EventKey> {
    let expected: BTreeSet<&EventKey> = keys.iter().collect();
    wait_until(description, DELIVERY_TIMEOUT, || {
        let arrived: Vec<EventKey> = receiver
            .records()
            .iter()
            .map(record_key)
            .filter(|key| expected.contains(key))
            .collect();
        let distinct: BTreeSet<&EventKey> = arrived.iter().collect();
        if distinct.len() == expected.len() {
            Ok(arrived)
        } else {
            Err(format!(
                "{} of {} events arrived; the receiver has {} records",
                distinct.len(),
                expected.len(),
                receiver.records().len()
            ))
        }
    })
}

/// Sends SIGUSR1 until a requested health event satisfies `done`, and returns that event.
fn request_health_until(
    daemon: &Daemon,
    description: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait_until(description, DELIVERY_TIMEOUT, || {
        let health = daemon.request_health();
        if done(&health) {
            Ok(health)
        } else {
            std::thread::sleep(Duration::from_millis(200));
            Err(format!("last health event: {health}"))
        }
    })
}

/// Returns the string attribute `key`, or "" when the event has none.
fn string_attribute<'a>(event: &'a Value, key: &str) -> &'a str {
    event["attributes"][key].as_str().unwrap_or_default()
}

/// Returns the total size of the queue's segment files.
fn queue_size_on_disk(state_dir: &Path) -> u64 {
    fs::read_dir(state_dir.join(QUEUE_DIRECTORY))
        .expect("read the queue directory")
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".seg"))
        .map(|entry| entry.metadata().map_or(0, |metadata| metadata.len()))
        .sum()
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn collector_down_then_up_delivers_once() {
    let dir = scratch_dir();
    let file = credential_file(dir.path(), "outage");
    let port = free_port();
    let mut daemon = Daemon::start_with_config(&otlp_section(port, ""));

    let pids: Vec<u64> = (0..30).map(|_| cat(&file, 1)).collect();
    let lines = wait_for_access_lines(&daemon, &file, &pids);
    let failing = daemon.wait_for("a health event with reason export", |event| {
        event["event_name"] == HEALTH && event["attributes"]["credwatch.health.reason"] == "export"
    });
    let during_outage = daemon.request_health();

    let receiver = OtlpReceiver::http(port);
    let line_keys: Vec<EventKey> = lines.iter().map(line_key).collect();
    wait_for_records(&receiver, &line_keys, "access events at the receiver");
    // Delivery keeps the queue's order, so once an event written after the reads arrived, any
    // second copy of a read would have arrived before it.
    let recovered = request_health_until(&daemon, "a connected health event", |health| {
        health["attributes"]["credwatch.export.otlp.connected"] == true
    });
    let arrived = wait_for_records(
        &receiver,
        &[line_keys.clone(), vec![line_key(&recovered)]].concat(),
        "the health event after the reads at the receiver",
    );
    // The export event of the recovery comes at the daemon's next check after the first
    // success.
    daemon.wait_for("the export event of the recovery", |event| {
        event["event_name"] == HEALTH
            && event["attributes"]["credwatch.health.reason"] == "export"
            && event["attributes"]["credwatch.export.otlp.connected"] == true
    });
    assert!(daemon.stop().success(), "{}", daemon.stderr_text());

    let expected_target = format!("127.0.0.1:{port}");
    for health in [&failing, &during_outage] {
        assert_eq!(
            health["attributes"]["credwatch.export.otlp.connected"], false,
            "{health}"
        );
        assert!(
            counter(health, "credwatch.export.otlp.failures") >= 1,
            "{health}"
        );
        assert!(
            counter(health, "credwatch.export.otlp.queued") >= 1,
            "{health}"
        );
        let last_error = string_attribute(health, "credwatch.export.otlp.last_error");
        assert!(last_error.contains(&expected_target), "{health}");
        assert!(last_error.contains("Connection refused"), "{health}");
    }
    assert!(
        counter(&during_outage, "credwatch.export.otlp.queued") >= pids.len() as u64,
        "the reads are not all queued: {during_outage}"
    );
    assert_eq!(
        counter(&during_outage, "credwatch.export.otlp.sent"),
        0,
        "{during_outage}"
    );
    let arrived_reads: Vec<&EventKey> = arrived.iter().filter(|key| key.name == ACCESS).collect();
    let json_pids: Vec<Option<u64>> = line_keys.iter().map(|key| key.pid).collect();
    let otlp_pids: Vec<Option<u64>> = arrived_reads.iter().map(|key| key.pid).collect();
    assert_eq!(
        otlp_pids, json_pids,
        "the reads did not arrive exactly once each in the order of the JSON lines"
    );
    assert!(
        counter(&recovered, "credwatch.export.otlp.sent") >= pids.len() as u64,
        "{recovered}"
    );
    // One run of failures writes one export event when it starts and one when it ends.
    let export_events = daemon.health_events("export");
    let connected: Vec<&Value> = export_events
        .iter()
        .map(|event| &event["attributes"]["credwatch.export.otlp.connected"])
        .collect();
    assert_eq!(
        connected,
        [&Value::Bool(false), &Value::Bool(true)],
        "{export_events:#?}"
    );
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn killed_daemon_delivers_after_restart() {
    let dir = scratch_dir();
    let state = scratch_dir();
    let file = credential_file(dir.path(), "crash");
    let port = free_port();
    let sections = otlp_section(port, "");
    let mut first = Daemon::start_with_state(&sections, state.path());

    let pids: Vec<u64> = (0..10).map(|_| cat(&file, 1)).collect();
    let reads = wait_for_access_lines(&first, &file, &pids);
    // The daemon writes its queue buffer to the segment files after each drain of the ring
    // buffer and handles SIGUSR1 only between drains, so every event before this health event
    // is in the files.
    let health = first.request_health();
    let queued_lines = lines_before(&first, &health);
    first.kill();
    assert!(
        queue_size_on_disk(state.path()) > 0,
        "the killed daemon left no queue on disk"
    );

    let receiver = OtlpReceiver::http(port);
    let mut second = Daemon::start_with_state(&sections, state.path());
    let start = second
        .health_events("start")
        .pop()
        .expect("the second daemon's start health event");
    // The second daemon queues its start event after what the first one left, so once it
    // arrived every event of the first daemon has arrived, and so has any second copy.
    let queued_keys: Vec<EventKey> = queued_lines.iter().map(line_key).collect();
    let arrived = wait_for_records(
        &receiver,
        &[queued_keys.clone(), vec![line_key(&start)]].concat(),
        "the first daemon's events at the receiver",
    );
    assert!(second.stop().success(), "{}", second.stderr_text());

    assert_eq!(
        health["attributes"]["credwatch.export.otlp.connected"], false,
        "{health}"
    );
    assert!(
        counter(&health, "credwatch.export.otlp.queued") >= pids.len() as u64,
        "{health}"
    );
    let read_keys: Vec<EventKey> = reads.iter().map(line_key).collect();
    let arrived_reads: Vec<&EventKey> = arrived
        .iter()
        .filter(|key| read_keys.contains(key))
        .collect();
    assert_eq!(
        arrived_reads,
        read_keys.iter().collect::<Vec<_>>(),
        "the first daemon's reads did not arrive exactly once each, in order"
    );
    let arrived_queued: Vec<EventKey> = arrived
        .into_iter()
        .filter(|key| queued_keys.contains(key))
        .collect();
    assert_eq!(
        arrived_queued, queued_keys,
        "the first daemon's queued events did not arrive exactly once each, in order"
    );
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn full_queue_counts_drops_exactly() {
    const QUEUE_MAX_BYTES: u64 = 1024 * 1024;
    let dir = scratch_dir();
    let state = scratch_dir();
    let file = credential_file(dir.path(), "flood");
    let port = free_port();
    let daemon = Daemon::start_with_state(&otlp_section(port, "  queue_max_mb: 1\n"), state.path());

    // Each round adds 100 access events to the queue. They took about 2.5 KB each in the
    // queue files when this test was written, so a few rounds pass the bound.
    let overflowed = wait_until(
        "a health event with dropped events",
        Duration::from_secs(30),
        || {
            cat(&file, 100);
            let health = daemon.request_health();
            if counter(&health, "credwatch.export.otlp.dropped") > 0 {
                Ok(health)
            } else {
                Err(format!("last health event: {health}"))
            }
        },
    );
    let queue_bytes = queue_size_on_disk(state.path());

    let receiver = OtlpReceiver::http(port);
    let drained = request_health_until(&daemon, "a health event with an empty queue", |health| {
        counter(health, "credwatch.export.otlp.queued") == 0
    });
    let before = lines_before(&daemon, &drained);
    let before_keys: Vec<EventKey> = before.iter().map(line_key).collect();
    let known: BTreeSet<&EventKey> = before_keys.iter().collect();
    let received: Vec<EventKey> = receiver
        .records()
        .iter()
        .map(record_key)
        .filter(|key| known.contains(key))
        .collect();

    // The queue deletes a segment only once it passes its bound, and a segment is a quarter of
    // the bound (256 KiB here), so more than half of the bound stays in the files.
    assert!(
        queue_bytes > QUEUE_MAX_BYTES / 2,
        "the queue holds only {queue_bytes} bytes after it dropped events"
    );
    assert!(
        queue_bytes <= QUEUE_MAX_BYTES,
        "the queue holds {queue_bytes} bytes, over its bound of 1 MiB"
    );
    let dropped = counter(&drained, "credwatch.export.otlp.dropped");
    let sent = counter(&drained, "credwatch.export.otlp.sent");
    assert!(
        dropped >= counter(&overflowed, "credwatch.export.otlp.dropped"),
        "{drained}"
    );
    assert_eq!(
        counter(&drained, "credwatch.export.otlp.rejected"),
        0,
        "{drained}"
    );
    assert_eq!(
        counter(&drained, "credwatch.daemon.events_failed"),
        0,
        "{drained}"
    );
    assert_eq!(
        received.len() as u64 + dropped,
        before.len() as u64,
        "received {} + dropped {dropped} is not the {} events written before {drained}",
        received.len(),
        before.len()
    );
    assert_eq!(sent, received.len() as u64, "{drained}");
    let dropped_count = usize::try_from(dropped).expect("the dropped count fits in usize");
    assert_eq!(
        received,
        before_keys[dropped_count..],
        "the delivered events are not the newest ones, once each and in order"
    );
}

/// A TCP server on loopback that is no OTLP collector: it reads each request, replies with an
/// SSH banner and closes the connection.
struct NotHttpServer {
    port: u16,
    connections: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NotHttpServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("make the listener non-blocking");
        let port = listener
            .local_addr()
            .expect("the listener's address")
            .port();
        let connections = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let connections = connections.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            connections.fetch_add(1, Ordering::Relaxed);
                            let _ = reply_not_http(stream);
                        }
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => return,
                    }
                }
            })
        };
        Self {
            port,
            connections,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for NotHttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one HTTP request to the end of its body, so that closing sends a FIN and no reset,
/// then replies with bytes that are not HTTP.
fn reply_not_http(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut buffer = [0_u8; 8192];
    loop {
        if let Some(head_end) = request.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|length| length.trim().parse().ok())
                .unwrap_or(0);
            if request.len() >= head_end + 4 + length {
                break;
            }
        }
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..read]);
    }
    stream.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")?;
    stream.shutdown(Shutdown::Both)
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn wrong_endpoint_keeps_json_sink() {
    let dir = scratch_dir();
    let file = credential_file(dir.path(), "wrong-endpoint");
    let server = NotHttpServer::start();
    let mut daemon = Daemon::start_with_config(&otlp_section(server.port, ""));

    let mut pids: Vec<u64> = (0..3).map(|_| cat(&file, 1)).collect();
    let failing = daemon.wait_for("a health event with reason export", |event| {
        event["event_name"] == HEALTH && event["attributes"]["credwatch.health.reason"] == "export"
    });
    pids.extend((0..3).map(|_| cat(&file, 1)));
    let reads = wait_for_access_lines(&daemon, &file, &pids);
    let health = daemon.request_health();
    let status = daemon.stop();
    let stderr = daemon.stderr_text();

    assert!(
        status.success(),
        "credwatch exited with {status}; stderr:\n{stderr}"
    );
    assert_eq!(reads.len(), pids.len(), "{reads:#?}");
    assert!(
        server.connections.load(Ordering::Relaxed) >= 1,
        "the daemon never connected"
    );
    for event in [&failing, &health] {
        assert_eq!(
            event["attributes"]["credwatch.export.otlp.connected"], false,
            "{event}"
        );
        assert_eq!(counter(event, "credwatch.export.otlp.sent"), 0, "{event}");
        let last_error = string_attribute(event, "credwatch.export.otlp.last_error");
        assert!(last_error.contains("not HTTP"), "{event}");
        assert!(last_error.contains("otlp.protocol"), "{event}");
    }
    assert!(
        counter(&health, "credwatch.export.otlp.queued") >= pids.len() as u64,
        "{health}"
    );
    let error_lines: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("failed to export events"))
        .collect();
    assert_eq!(
        error_lines.len(),
        1,
        "a repeated failure is logged once:\n{stderr}"
    );
    assert!(error_lines[0].contains("ERROR"), "{}", error_lines[0]);
    assert!(
        error_lines[0].contains(&format!("127.0.0.1:{}", server.port)),
        "{}",
        error_lines[0]
    );
    assert!(error_lines[0].contains("not HTTP"), "{}", error_lines[0]);
}

/// Runs `credwatch check-config` on a configuration of `otlp` alone, with no `OTEL_*`
/// variables in its environment, and returns its exit code and standard error.
fn check_config(dir: &Path, otlp: &str) -> (Option<i32>, String) {
    let config = dir.join(format!("config-{}.yaml", credwatch_tests::unique()));
    fs::write(&config, otlp).expect("write the configuration");
    let mut command = Command::new(credwatch_binary());
    command.args(["check-config", "--config"]).arg(&config);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    let finished = run_to_end(&mut command);
    (finished.status.code(), finished.stderr)
}

#[test]
#[ignore = "needs the release binary; run with `cargo xtask test`"]
fn invalid_otlp_settings_fail_check() {
    let dir = scratch_dir();
    let port = free_port();
    let cases = [
        (
            "otlp:\n  endpoint: \"ftp://x\"\n".to_owned(),
            "otlp.endpoint",
            "ftp://x",
        ),
        (
            format!("otlp:\n  endpoint: https://127.0.0.1:{port}\n  ca_file: /nonexistent\n"),
            "otlp.ca_file",
            "/nonexistent",
        ),
    ];
    for (otlp, key, value) in cases {
        let (code, stderr) = check_config(dir.path(), &otlp);
        assert_eq!(code, Some(2), "{otlp}: {stderr}");
        assert!(
            stderr.contains(key),
            "{otlp}: stderr does not name {key}: {stderr}"
        );
        assert!(
            stderr.contains(value),
            "{otlp}: stderr does not name {value}: {stderr}"
        );
    }
}
