//! Outbound TCP connects, end to end: the real daemon, python3 clients and listeners on
//! loopback, and the volume settings `network.dedup_window`, `network.exclude_ports` and
//! `network.exclude_networks`.

use std::{
    fs,
    net::{Ipv4Addr, Ipv6Addr, TcpListener},
};

use credwatch_tests::{
    Daemon, attribute,
    client::{Finished, PYTHON3, client, executable_name, run_to_end},
    contract::assert_documented,
    counter, credwatch_binary, scratch_dir,
    servers::ClosedPort,
};
use serde_json::Value;

const CONNECT: &str = "credwatch.network.connect";

/// Reports every connect, so that a test can count events without other tests' connects
/// counting against the window.
const NO_DEDUP: &str = "network:\n  dedup_window: 0s\n";

/// Connects to `sys.argv[1]` port `sys.argv[2]` with a blocking IPv4 socket
/// `int(sys.argv[3])` times.
const CONNECT_TIMES: &str = r#"
import socket, sys
for _ in range(int(sys.argv[3])):
    socket.create_connection((sys.argv[1], int(sys.argv[2]))).close()
"#;

/// Runs `script` with python3 and the given arguments, and checks that it exited 0.
fn python(script: &str, arguments: &[&str]) -> Finished {
    let finished = run_to_end(client(PYTHON3).args(["-c", script]).args(arguments));
    finished.assert_success();
    finished
}

/// Waits for the connect event of `pid` to `port`, and returns every connect event of `pid`
/// once a barrier shows that the daemon handled all earlier records.
fn connects_after(daemon: &Daemon, pid: u32, port: u16) -> Vec<Value> {
    daemon.wait_for("a connect event", |event| {
        event["event_name"] == CONNECT
            && event["attributes"]["process.pid"] == pid
            && event["attributes"]["network.peer.port"] == port
    });
    daemon.barrier();
    daemon.events_of(CONNECT, pid)
}

fn listen_ipv4() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("listen on 127.0.0.1")
}

fn port_of(listener: &TcpListener) -> u16 {
    listener.local_addr().expect("the listening address").port()
}

fn probes(daemon: &Daemon) -> Vec<Value> {
    let start = &daemon.health_events("start")[0];
    start["attributes"]["credwatch.probes"]
        .as_array()
        .expect("the start event lists the probes")
        .clone()
}

fn probe<'a>(probes: &'a [Value], program: &str) -> &'a Value {
    probes
        .iter()
        .find(|probe| probe["program"] == program)
        .unwrap_or_else(|| panic!("{program} is not listed: {probes:#?}"))
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn connect_probes_are_attached_at_start() {
    let mut daemon = Daemon::start("");
    let probes = probes(&daemon);

    for program in ["connect4", "connect6"] {
        let probe = probe(&probes, program);
        assert_eq!(probe["hook"], "cgroup_sock_addr", "{probe}");
        assert_eq!(probe["state"], "attached", "{probe}");
    }
    for program in ["sys_exit_connect", "inet_sock_set_state"] {
        let probe = probe(&probes, program);
        assert_eq!(probe["hook"], "tracepoint", "{probe}");
        assert_eq!(probe["state"], "attached", "{probe}");
    }
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn blocking_connect_reports_peer_and_process() {
    let mut daemon = Daemon::start_with_config(NO_DEDUP);
    let listener = listen_ipv4();
    let port = port_of(&listener);

    let python = python(CONNECT_TIMES, &["127.0.0.1", &port.to_string(), "1"]);

    let events = connects_after(&daemon, python.pid, port);
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    let attributes = &event["attributes"];
    assert_eq!(attribute(event, "network.peer.address"), "127.0.0.1");
    assert_eq!(attributes["network.peer.port"], port);
    assert_eq!(attribute(event, "network.transport"), "tcp");
    assert_eq!(attribute(event, "network.type"), "ipv4");
    assert_eq!(attribute(event, "credwatch.connect.result"), "ok");
    assert!(attributes.get("error.type").is_none(), "{event}");
    assert!(
        attributes
            .get("credwatch.connect.completed_later")
            .is_none(),
        "{event}"
    );
    assert_eq!(attributes["process.pid"], python.pid);
    assert_eq!(attributes["thread.id"], python.pid);
    assert_eq!(
        attribute(event, "process.executable.name"),
        executable_name(PYTHON3)
    );
    assert_eq!(attributes["process.user.id"], 0);
    assert_eq!(attribute(event, "process.user.name"), "root");
    assert!(
        attribute(event, "process.command_line").contains("create_connection"),
        "{event}"
    );
    assert_eq!(event["severity_text"], "INFO");
    assert_documented(event);
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn connect_from_thread_reports_thread_id() {
    let mut daemon = Daemon::start_with_config(NO_DEDUP);
    let listener = listen_ipv4();
    let port = port_of(&listener);
    let script = r#"
import socket, sys, threading
def connect():
    print(threading.get_native_id())
    socket.create_connection(("127.0.0.1", int(sys.argv[1]))).close()
thread = threading.Thread(target=connect)
thread.start()
thread.join()
"#;

    let python = python(script, &[&port.to_string()]);
    let thread_id: u32 = python.stdout.trim().parse().expect("the thread id");

    let events = connects_after(&daemon, python.pid, port);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_ne!(thread_id, python.pid);
    assert_eq!(events[0]["attributes"]["thread.id"], thread_id);
    assert_eq!(events[0]["attributes"]["process.pid"], python.pid);
    assert_documented(&events[0]);
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn refused_connect_reports_econnrefused() {
    let mut daemon = Daemon::start_with_config(NO_DEDUP);
    let closed = ClosedPort::bind();
    let port = closed.port();
    let script = r#"
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])))
except ConnectionRefusedError:
    print("refused")
"#;

    let python = python(script, &[&port.to_string()]);
    assert_eq!(python.stdout.trim(), "refused");

    let events = connects_after(&daemon, python.pid, port);
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(attribute(event, "credwatch.connect.result"), "ECONNREFUSED");
    assert_eq!(attribute(event, "error.type"), "ECONNREFUSED");
    assert_eq!(attribute(event, "network.peer.address"), "127.0.0.1");
    assert!(
        event["attributes"]
            .get("credwatch.connect.completed_later")
            .is_none(),
        "{event}"
    );
    assert_documented(event);
    assert!(daemon.stop().success());
}

/// Starts a non-blocking connect to 127.0.0.1 port `sys.argv[1]`, waits until the socket is
/// writable and prints the `connect_ex` errno name and the socket's `SO_ERROR`.
const NON_BLOCKING_CONNECT: &str = r#"
import errno, select, socket, sys
sock = socket.socket()
sock.setblocking(False)
started = sock.connect_ex(("127.0.0.1", int(sys.argv[1])))
select.select([], [sock], [], 10)
print(errno.errorcode.get(started, started), sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
sock.close()
"#;

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn non_blocking_connect_completes_later() {
    let mut daemon = Daemon::start_with_config(NO_DEDUP);
    let listener = listen_ipv4();
    let port = port_of(&listener);

    let python = python(NON_BLOCKING_CONNECT, &[&port.to_string()]);
    assert_eq!(python.stdout.trim(), "EINPROGRESS 0");

    let events = connects_after(&daemon, python.pid, port);
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(
        event["attributes"]["credwatch.connect.completed_later"],
        true
    );
    assert_eq!(attribute(event, "credwatch.connect.result"), "ok");
    assert!(event["attributes"].get("error.type").is_none(), "{event}");
    assert_documented(event);
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn non_blocking_refused_connect_completes_later() {
    let mut daemon = Daemon::start_with_config(NO_DEDUP);
    let closed = ClosedPort::bind();
    let port = closed.port();

    let python = python(NON_BLOCKING_CONNECT, &[&port.to_string()]);
    assert_eq!(
        python.stdout.trim(),
        format!("EINPROGRESS {}", libc::ECONNREFUSED)
    );

    let events = connects_after(&daemon, python.pid, port);
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(
        event["attributes"]["credwatch.connect.completed_later"],
        true
    );
    assert_eq!(attribute(event, "credwatch.connect.result"), "ECONNREFUSED");
    assert_eq!(attribute(event, "error.type"), "ECONNREFUSED");
    assert_documented(event);
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn ipv6_loopback_connect_reports_ipv6() {
    let mut daemon = Daemon::start_with_config(NO_DEDUP);
    let listener = TcpListener::bind((Ipv6Addr::LOCALHOST, 0))
        .expect("listen on ::1; the loopback interface needs IPv6");
    let port = port_of(&listener);
    let script = r#"
import socket, sys
sock = socket.socket(socket.AF_INET6)
sock.connect(("::1", int(sys.argv[1])))
sock.close()
"#;

    let python = python(script, &[&port.to_string()]);

    let events = connects_after(&daemon, python.pid, port);
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(attribute(event, "network.peer.address"), "::1");
    assert_eq!(attribute(event, "network.type"), "ipv6");
    assert_eq!(attribute(event, "credwatch.connect.result"), "ok");
    assert_documented(event);
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn ipv4_mapped_connect_reports_ipv6() {
    let mut daemon = Daemon::start_with_config(NO_DEDUP);
    let listener = listen_ipv4();
    let port = port_of(&listener);
    let script = r#"
import socket, sys
sock = socket.socket(socket.AF_INET6)
sock.connect(("::ffff:127.0.0.1", int(sys.argv[1])))
sock.close()
"#;

    let python = python(script, &[&port.to_string()]);

    let events = connects_after(&daemon, python.pid, port);
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(attribute(event, "network.peer.address"), "::ffff:127.0.0.1");
    assert_eq!(attribute(event, "network.type"), "ipv6");
    assert_documented(event);
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn udp_connect_is_not_reported() {
    let mut daemon = Daemon::start_with_config(NO_DEDUP);
    let listener = listen_ipv4();
    let port = port_of(&listener);
    // A UDP connect only sets the default peer; it sends nothing.
    let udp_port = ClosedPort::bind();
    let script = r#"
import socket, sys
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.connect(("127.0.0.1", int(sys.argv[2])))
udp.close()
socket.create_connection(("127.0.0.1", int(sys.argv[1]))).close()
"#;

    let python = python(script, &[&port.to_string(), &udp_port.port().to_string()]);

    let events = connects_after(&daemon, python.pid, port);
    assert_eq!(
        events.len(),
        1,
        "only the TCP connect is reported: {events:#?}"
    );
    assert_eq!(events[0]["attributes"]["network.peer.port"], port);
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn dedup_window_reports_first_connect_only() {
    let mut daemon = Daemon::start_with_config("network:\n  dedup_window: 1h\n");
    let listener = listen_ipv4();
    let port = port_of(&listener);
    let before = daemon.request_health();

    let python = python(CONNECT_TIMES, &["127.0.0.1", &port.to_string(), "5"]);

    let events = connects_after(&daemon, python.pid, port);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_documented(&events[0]);
    let after = daemon.request_health();
    let grew = |key: &str| counter(&after, key) - counter(&before, key);
    assert!(
        grew("credwatch.kernel.connects_deduplicated") >= 4,
        "before: {before}\nafter: {after}"
    );
    assert!(
        grew("credwatch.kernel.connects_seen") >= 5,
        "before: {before}\nafter: {after}"
    );
    assert_documented(&after);
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn zero_dedup_window_reports_every_connect() {
    let mut daemon = Daemon::start_with_config(NO_DEDUP);
    let listener = listen_ipv4();
    let port = port_of(&listener);

    let python = python(CONNECT_TIMES, &["127.0.0.1", &port.to_string(), "5"]);

    let events = connects_after(&daemon, python.pid, port);
    assert_eq!(events.len(), 5, "{events:#?}");
    for event in &events {
        assert_eq!(event["attributes"]["network.peer.port"], port);
        assert_eq!(attribute(event, "credwatch.connect.result"), "ok");
    }
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn excluded_port_is_counted_not_reported() {
    let excluded_listener = listen_ipv4();
    let excluded = port_of(&excluded_listener);
    let reported_listener = listen_ipv4();
    let reported = port_of(&reported_listener);
    let mut daemon = Daemon::start_with_config(&format!(
        "network:\n  dedup_window: 0s\n  exclude_ports: [{excluded}]\n"
    ));
    let before = daemon.request_health();
    let script = r#"
import socket, sys
for port in sys.argv[1:]:
    socket.create_connection(("127.0.0.1", int(port))).close()
"#;

    let python = python(script, &[&excluded.to_string(), &reported.to_string()]);

    let events = connects_after(&daemon, python.pid, reported);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["attributes"]["network.peer.port"], reported);
    let after = daemon.request_health();
    assert!(
        counter(&after, "credwatch.kernel.connects_excluded")
            > counter(&before, "credwatch.kernel.connects_excluded"),
        "before: {before}\nafter: {after}"
    );
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn excluded_network_is_counted_not_reported() {
    let excluded_listener =
        TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), 0)).expect("listen on 127.0.0.2");
    let excluded = port_of(&excluded_listener);
    let reported_listener = listen_ipv4();
    let reported = port_of(&reported_listener);
    let mut daemon = Daemon::start_with_config(
        "network:\n  dedup_window: 0s\n  exclude_networks: [\"127.0.0.2/32\"]\n",
    );
    let before = daemon.request_health();
    let script = r#"
import socket, sys
socket.create_connection(("127.0.0.2", int(sys.argv[1]))).close()
socket.create_connection(("127.0.0.1", int(sys.argv[2]))).close()
"#;

    let python = python(script, &[&excluded.to_string(), &reported.to_string()]);

    let events = connects_after(&daemon, python.pid, reported);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(attribute(&events[0], "network.peer.address"), "127.0.0.1");
    let after = daemon.request_health();
    assert!(
        counter(&after, "credwatch.kernel.connects_excluded")
            > counter(&before, "credwatch.kernel.connects_excluded"),
        "before: {before}\nafter: {after}"
    );
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn network_disabled_reports_no_connect() {
    let mut daemon = Daemon::start_with_config("network:\n  enabled: false\n");
    let listener = listen_ipv4();
    let port = port_of(&listener);

    let python = python(CONNECT_TIMES, &["127.0.0.1", &port.to_string(), "1"]);
    daemon.barrier();

    assert_eq!(daemon.events_of(CONNECT, python.pid), Vec::<Value>::new());
    let health = daemon.request_health();
    assert_eq!(
        counter(&health, "credwatch.kernel.connects_seen"),
        0,
        "{health}"
    );
    let probes = probes(&daemon);
    for program in ["connect4", "connect6"] {
        let probe = probe(&probes, program);
        assert_eq!(probe["state"], "disabled", "{probe}");
    }
    assert!(daemon.stop().success());
}

/// Writes `network` as the `network` section of a configuration file and runs
/// `credwatch check-config` and `credwatch run` on it. Both must exit 2 and name `key` and
/// `value` on standard error.
fn assert_rejected(network: &str, key: &str, value: &str) {
    let dir = scratch_dir();
    let config = dir.path().join("config.yaml");
    fs::write(&config, format!("network:\n{network}")).expect("write the configuration");

    let check = run_to_end(
        client(credwatch_binary().to_str().expect("a UTF-8 path"))
            .args(["check-config", "--config"])
            .arg(&config),
    );
    let run = run_to_end(
        client(credwatch_binary().to_str().expect("a UTF-8 path"))
            .args(["run", "--config"])
            .arg(&config)
            .arg("--json-file")
            .arg(dir.path().join("events.jsonl")),
    );

    for (command, finished) in [("check-config", check), ("run", run)] {
        assert_eq!(
            finished.status.code(),
            Some(2),
            "credwatch {command}: {finished:?}"
        );
        assert!(
            finished.stderr.contains(key),
            "credwatch {command} does not name {key}: {}",
            finished.stderr
        );
        assert!(
            finished.stderr.contains(value),
            "credwatch {command} does not name {value}: {}",
            finished.stderr
        );
    }
}

#[test]
#[ignore = "needs the release binary; run with `cargo xtask test`"]
fn network_with_host_bits_is_rejected() {
    assert_rejected(
        "  exclude_networks: [\"127.1.2.3/8\"]\n",
        "network.exclude_networks[0]",
        "\"127.1.2.3/8\"",
    );
}

#[test]
#[ignore = "needs the release binary; run with `cargo xtask test`"]
fn port_zero_is_rejected() {
    assert_rejected(
        "  exclude_ports: [443, 0]\n",
        "network.exclude_ports[1]",
        "\"0\"",
    );
}
