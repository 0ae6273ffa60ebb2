//! TLS client handshakes, end to end: the real daemon, real clients (curl, `openssl s_client`,
//! python3's `ssl` module, wget and gnutls-cli) and a real `openssl s_server` on loopback with
//! a made-up certificate.

use std::{fs, process::Command};

use credwatch_tests::{
    Daemon, TIMEOUT, attribute,
    client::{PYTHON3, client, executable_name, run_to_end, run_with_input, spawn},
    contract::assert_documented,
    counter, scratch_dir,
    servers::{NonTlsServer, TlsServer, self_signed_certificate},
};
use serde_json::Value;

const HANDSHAKE: &str = "credwatch.tls.handshake";
const CONNECT: &str = "credwatch.network.connect";

/// The values of `credwatch.tls.function` that docs/events.md lists.
const FUNCTIONS: [&str; 5] = [
    "SSL_do_handshake",
    "SSL_connect",
    "SSL_read",
    "SSL_write",
    "gnutls_handshake",
];

/// What a handshake event of one client must contain.
struct Expected<'a> {
    pid: u32,
    executable: &'a str,
    /// The SNI, or `None` when the client sends none.
    server_name: Option<&'a str>,
    port: u16,
    library: &'a str,
    result: &'a str,
}

/// Python client: connects to 127.0.0.1 at `sys.argv[1]`, handshakes without checking the
/// certificate, with SNI `sys.argv[2]` unless it is empty, and prints the protocol version.
const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
connection = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
name = sys.argv[2] or None
with context.wrap_socket(connection, server_hostname=name) as tls:
    print(tls.version())
"#;

/// Waits for the one handshake event of `pid`, and checks after a barrier that there is no
/// other.
fn only_handshake_of(daemon: &Daemon, pid: u32) -> Value {
    daemon.wait_for("a TLS handshake event", |event| {
        event["event_name"] == HANDSHAKE && event["attributes"]["process.pid"] == pid
    });
    daemon.barrier();
    let events = daemon.events_of(HANDSHAKE, pid);
    assert_eq!(events.len(), 1, "expected one handshake: {events:#?}");
    events.into_iter().next().expect("one event")
}

fn check_handshake(event: &Value, expected: &Expected<'_>) {
    let attributes = &event["attributes"];
    assert_eq!(event["event_name"], HANDSHAKE, "{event}");
    assert_eq!(attributes["process.pid"], expected.pid, "{event}");
    assert_eq!(
        attribute(event, "process.executable.name"),
        expected.executable,
        "{event}"
    );
    match expected.server_name {
        Some(name) => assert_eq!(attribute(event, "server.address"), name, "{event}"),
        None => assert!(
            attributes.get("server.address").is_none(),
            "no SNI was sent: {event}"
        ),
    }
    assert_eq!(attributes["server.port"], expected.port, "{event}");
    assert_eq!(attributes["network.peer.port"], expected.port, "{event}");
    assert_eq!(
        attribute(event, "network.peer.address"),
        "127.0.0.1",
        "{event}"
    );
    assert_eq!(
        attribute(event, "credwatch.tls.library"),
        expected.library,
        "{event}"
    );
    assert_eq!(
        attribute(event, "credwatch.tls.result"),
        expected.result,
        "{event}"
    );
    let function = attribute(event, "credwatch.tls.function");
    assert!(FUNCTIONS.contains(&function), "{event}");
    assert_eq!(attributes["process.user.id"], 0, "{event}");
    if let Some(version) = attributes.get("tls.protocol.version") {
        // s_server and every client here support TLS 1.3, so they agree on it.
        assert_eq!(version, "1.3", "{event}");
        assert_eq!(attribute(event, "tls.protocol.name"), "tls");
    }
    assert_documented(event);
}

/// Checks that `pid` made a successful connect to 127.0.0.1:`port`.
fn check_connect(daemon: &Daemon, pid: u32, port: u16) {
    let events: Vec<Value> = daemon
        .events_of(CONNECT, pid)
        .into_iter()
        .filter(|event| event["attributes"]["network.peer.port"] == port)
        .collect();
    if events.len() != 1 {
        // The health event shows whether records were lost, for example under load from
        // other programs on the host.
        let all: Vec<Value> = daemon
            .events()
            .into_iter()
            .filter(|event| event["attributes"]["process.pid"] == pid)
            .collect();
        panic!(
            "expected one connect of pid {pid} to port {port}, got {}; every event of the \
             process: {all:#?}\nhealth: {}\nstderr:\n{}",
            events.len(),
            daemon.request_health(),
            daemon.stderr_text()
        );
    }
    let event = &events[0];
    assert_eq!(attribute(event, "network.peer.address"), "127.0.0.1");
    assert_eq!(attribute(event, "credwatch.connect.result"), "ok");
    assert_documented(event);
}

fn curl(host: &str, port: u16) -> Command {
    let mut command = client("/usr/bin/curl");
    // -q first: no ~/.curlrc.
    command
        .args(["-q", "-sS", "-k", "--noproxy", "*", "-o", "/dev/null"])
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}/"));
    command
}

fn s_client(port: u16, server_name: &str) -> Command {
    let mut command = client("/usr/bin/openssl");
    command
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-servername", server_name]);
    command
}

fn gnutls_cli(port: u16, server_name: &str) -> Command {
    let mut command = client("/usr/bin/gnutls-cli");
    command
        .args(["--insecure", "-p"])
        .arg(port.to_string())
        .args(["--sni-hostname", server_name, "127.0.0.1"]);
    command
}

fn python_client(port: u16, server_name: &str) -> Command {
    let mut command = client(PYTHON3);
    command
        .args(["-c", PYTHON_CLIENT])
        .arg(port.to_string())
        .arg(server_name);
    command
}

fn host_libssl() -> String {
    format!("/usr/lib/{}-linux-gnu/libssl.so.3", std::env::consts::ARCH)
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn curl_handshake_reports_sni_and_peer() {
    let mut daemon = Daemon::start("");
    let server = TlsServer::start();
    let port = server.port();

    let curl = run_to_end(&mut curl("api.example.test", port));
    curl.assert_success();

    let event = only_handshake_of(&daemon, curl.pid);
    check_handshake(
        &event,
        &Expected {
            pid: curl.pid,
            executable: "curl",
            server_name: Some("api.example.test"),
            port,
            library: "openssl",
            result: "success",
        },
    );
    assert_eq!(
        attribute(&event, "process.executable.path"),
        "/usr/bin/curl"
    );
    assert!(
        attribute(&event, "process.command_line").contains("https://api.example.test:"),
        "{event}"
    );
    assert!(
        attribute(&event, "credwatch.tls.library.path").contains("libssl.so.3"),
        "{event}"
    );
    assert!(
        event["attributes"]
            .get("credwatch.tls.return_code")
            .is_none()
    );
    assert!(event["attributes"].get("credwatch.tls.failure").is_none());
    assert_eq!(event["severity_text"], "INFO");
    check_connect(&daemon, curl.pid, port);
    assert_eq!(
        daemon.events_of(HANDSHAKE, server.pid()),
        Vec::<Value>::new(),
        "the server side of a handshake is reported"
    );
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn openssl_s_client_with_input_reports_sni() {
    let mut daemon = Daemon::start("");
    let server = TlsServer::start();
    let port = server.port();

    let openssl = run_with_input(&mut s_client(port, "s.example.test"), "hello\n");
    openssl.assert_success();

    let event = only_handshake_of(&daemon, openssl.pid);
    check_handshake(
        &event,
        &Expected {
            pid: openssl.pid,
            executable: "openssl",
            server_name: Some("s.example.test"),
            port,
            library: "openssl",
            result: "success",
        },
    );
    check_connect(&daemon, openssl.pid, port);
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn openssl_s_client_with_closed_stdin_succeeds() {
    // `openssl s_client ... </dev/null` is the usual way to check a server's certificate. It
    // completes the handshake, prints the certificate and exits without sending data.
    let mut daemon = Daemon::start("");
    let server = TlsServer::start();
    let port = server.port();

    let openssl = run_to_end(&mut s_client(port, "s.example.test"));
    openssl.assert_success();
    assert!(
        openssl.stdout.contains("BEGIN CERTIFICATE"),
        "s_client did not finish the handshake: {openssl:?}"
    );

    let event = only_handshake_of(&daemon, openssl.pid);
    check_handshake(
        &event,
        &Expected {
            pid: openssl.pid,
            executable: "openssl",
            server_name: Some("s.example.test"),
            port,
            library: "openssl",
            result: "success",
        },
    );
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn python_ssl_module_reports_server_hostname() {
    let mut daemon = Daemon::start("");
    let server = TlsServer::start();
    let port = server.port();

    let python = run_to_end(&mut python_client(port, "py.example.test"));
    python.assert_success();
    assert_eq!(python.stdout.trim(), "TLSv1.3");

    let event = only_handshake_of(&daemon, python.pid);
    check_handshake(
        &event,
        &Expected {
            pid: python.pid,
            executable: &executable_name(PYTHON3),
            server_name: Some("py.example.test"),
            port,
            library: "openssl",
            result: "success",
        },
    );
    check_connect(&daemon, python.pid, port);

    // `openssl s_server -www` runs its side of the handshake inside a BIO read, which has
    // no probe, so its session is never reported.
    assert!(
        daemon
            .events_of("credwatch.tls.handshake", server.pid())
            .is_empty(),
        "the server's sessions must not be reported"
    );
    assert!(daemon.stop().success());
}

/// One Python process that serves TLS on loopback in a thread and connects to itself, so that
/// both sides of one handshake run in the same process. Arguments: certificate, key.
const SERVER_AND_CLIENT: &str = r#"
import socket, ssl, sys, threading
certificate, key = sys.argv[1], sys.argv[2]
server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_context.load_cert_chain(certificate, key)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
def serve():
    connection, _ = listener.accept()
    with server_context.wrap_socket(connection, server_side=True) as tls:
        tls.recv(1)
thread = threading.Thread(target=serve)
thread.start()
client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
client_context.load_verify_locations(certificate)
with socket.create_connection(listener.getsockname()) as plain:
    with client_context.wrap_socket(plain, server_hostname="both.example.test") as tls:
        tls.sendall(b"x")
thread.join()
"#;

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn server_side_handshake_is_dropped_in_the_kernel() {
    let mut daemon = Daemon::start("");
    let dir = scratch_dir();
    let (certificate, key) = self_signed_certificate(dir.path(), "both.example.test");

    let python = run_to_end(
        client(PYTHON3)
            .arg("-c")
            .arg(SERVER_AND_CLIENT)
            .arg(&certificate)
            .arg(&key),
    );
    python.assert_success();

    // Only the client's side is reported; the server's return is dropped and counted.
    let event = only_handshake_of(&daemon, python.pid);
    assert_eq!(attribute(&event, "server.address"), "both.example.test");
    assert_eq!(attribute(&event, "credwatch.tls.result"), "success");
    let health = daemon.request_health();
    assert!(
        counter(&health, "credwatch.kernel.tls_server_calls") >= 1,
        "{health}"
    );
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn python_without_server_hostname_has_no_sni() {
    let mut daemon = Daemon::start("");
    let server = TlsServer::start();
    let port = server.port();

    let python = run_to_end(&mut python_client(port, ""));
    python.assert_success();

    let event = only_handshake_of(&daemon, python.pid);
    check_handshake(
        &event,
        &Expected {
            pid: python.pid,
            executable: &executable_name(PYTHON3),
            server_name: None,
            port,
            library: "openssl",
            result: "success",
        },
    );
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn wget_gnutls_handshake_reports_localhost() {
    let mut daemon = Daemon::start("");
    let server = TlsServer::start();
    let port = server.port();

    let wget = run_to_end(
        client("/usr/bin/wget")
            .args([
                "--no-config",
                "--no-proxy",
                "-4",
                "-q",
                "--no-check-certificate",
            ])
            .args(["-O", "/dev/null"])
            .arg(format!("https://localhost:{port}/")),
    );
    wget.assert_success();

    let event = only_handshake_of(&daemon, wget.pid);
    check_handshake(
        &event,
        &Expected {
            pid: wget.pid,
            executable: "wget",
            server_name: Some("localhost"),
            port,
            library: "gnutls",
            result: "success",
        },
    );
    assert_eq!(
        attribute(&event, "credwatch.tls.function"),
        "gnutls_handshake"
    );
    assert!(
        attribute(&event, "credwatch.tls.library.path").contains("libgnutls.so.30"),
        "{event}"
    );
    check_connect(&daemon, wget.pid, port);
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn gnutls_cli_handshake_reports_sni() {
    let mut daemon = Daemon::start("");
    let server = TlsServer::start();
    let port = server.port();

    let gnutls = run_to_end(&mut gnutls_cli(port, "g.example.test"));
    gnutls.assert_success();

    let event = only_handshake_of(&daemon, gnutls.pid);
    check_handshake(
        &event,
        &Expected {
            pid: gnutls.pid,
            executable: "gnutls-cli",
            server_name: Some("g.example.test"),
            port,
            library: "gnutls",
            result: "success",
        },
    );
    check_connect(&daemon, gnutls.pid, port);
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn openssl_handshake_with_non_tls_server_fails() {
    let mut daemon = Daemon::start("");
    let server = NonTlsServer::start();
    let port = server.port();

    let curl = run_to_end(&mut curl("plain.example.test", port));
    curl.assert_failure();

    let event = only_handshake_of(&daemon, curl.pid);
    check_handshake(
        &event,
        &Expected {
            pid: curl.pid,
            executable: "curl",
            server_name: Some("plain.example.test"),
            port,
            library: "openssl",
            result: "failure",
        },
    );
    // curl frees the session after the failed call, so the failure is an abandoned session.
    assert_eq!(
        attribute(&event, "credwatch.tls.failure"),
        "ended_without_success"
    );
    let code = event["attributes"]["credwatch.tls.return_code"]
        .as_i64()
        .expect("a failed handshake has a return code");
    assert!(code <= 0, "OpenSSL fails with -1 or 0, got {code}");
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn python_handshake_with_non_tls_server_fails() {
    let mut daemon = Daemon::start("");
    let server = NonTlsServer::start();
    let port = server.port();

    let python = run_to_end(&mut python_client(port, "plain.example.test"));
    python.assert_failure();
    assert!(python.stderr.contains("SSLError"), "{python:?}");

    let event = only_handshake_of(&daemon, python.pid);
    check_handshake(
        &event,
        &Expected {
            pid: python.pid,
            executable: &executable_name(PYTHON3),
            server_name: Some("plain.example.test"),
            port,
            library: "openssl",
            result: "failure",
        },
    );
    assert_eq!(
        attribute(&event, "credwatch.tls.function"),
        "SSL_do_handshake"
    );
    let code = event["attributes"]["credwatch.tls.return_code"]
        .as_i64()
        .expect("a failed handshake has a return code");
    assert!(code <= 0, "OpenSSL fails with -1 or 0, got {code}");
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn gnutls_handshake_with_non_tls_server_fails() {
    let mut daemon = Daemon::start("");
    let server = NonTlsServer::start();
    let port = server.port();

    let gnutls = run_to_end(&mut gnutls_cli(port, "plain.example.test"));
    gnutls.assert_failure();

    let event = only_handshake_of(&daemon, gnutls.pid);
    check_handshake(
        &event,
        &Expected {
            pid: gnutls.pid,
            executable: "gnutls-cli",
            server_name: Some("plain.example.test"),
            port,
            library: "gnutls",
            result: "failure",
        },
    );
    let code = event["attributes"]["credwatch.tls.return_code"]
        .as_i64()
        .expect("a failed handshake has a return code");
    assert!(code < 0, "GnuTLS error codes are negative, got {code}");
    assert!(
        event["attributes"].get("credwatch.tls.failure").is_none(),
        "a fatal GnuTLS error is not an abandoned session: {event}"
    );
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn libssl_loaded_after_start_is_reported() {
    let mut daemon = Daemon::start("");
    let server = TlsServer::start();
    let port = server.port();
    // The process runs past the daemon's first look at its memory map (tls.inspect_delay,
    // 200 ms by default) before it loads libssl.
    let script = format!(
        "import time\n\
         before = [line for line in open('/proc/self/maps') if 'libssl' in line]\n\
         print('libssl mapped at start:', bool(before))\n\
         time.sleep(1)\n\
         {PYTHON_CLIENT}"
    );

    let python = run_to_end(
        client(PYTHON3)
            .args(["-c", &script])
            .arg(port.to_string())
            .arg("late.example.test"),
    );
    python.assert_success();
    assert!(
        python.stdout.contains("libssl mapped at start: False"),
        "{python:?}"
    );

    let event = only_handshake_of(&daemon, python.pid);
    check_handshake(
        &event,
        &Expected {
            pid: python.pid,
            executable: &executable_name(PYTHON3),
            server_name: Some("late.example.test"),
            port,
            library: "openssl",
            result: "success",
        },
    );
    assert!(daemon.stop().success());
}

/// Python client for the mount-namespace test: prints the libssl files it mapped, waits for a
/// line on standard input, then runs [`PYTHON_CLIENT`].
const NAMESPACE_CLIENT: &str = r#"
import ssl, sys
mapped = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libssl" in line})
print("mapped:", " ".join(mapped), flush=True)
sys.stdin.readline()
"#;

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn libssl_copy_in_private_mount_namespace_is_reported() {
    let mut daemon = Daemon::start("");
    let server = TlsServer::start();
    let port = server.port();
    // The tmpfs is mounted only in the client's private mount namespace, so this directory
    // stays empty on the host and the copy disappears when the client exits.
    let dir = scratch_dir();
    let mountpoint = dir.path().join("lib");
    fs::create_dir(&mountpoint).expect("create the mount point");
    let copy = mountpoint.join("libssl.so.3");
    let copy_text = copy.to_str().expect("a UTF-8 path").to_owned();
    let script = format!("{NAMESPACE_CLIENT}{PYTHON_CLIENT}");
    let before = daemon.request_health();

    let mut running = spawn(
        client("/usr/bin/unshare")
            .args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
            .arg(
                "mount -t tmpfs credwatch-test \"$1\" && cp \"$2\" \"$1/\" \
                 && export LD_LIBRARY_PATH=\"$1\" && exec \"$3\" -c \"$4\" \"$5\" \"$6\"",
            )
            .arg("sh")
            .arg(&mountpoint)
            .arg(host_libssl())
            .arg(PYTHON3)
            .arg(&script)
            .arg(port.to_string())
            .arg("ns.example.test"),
    );
    // A library first found while a process runs is attached when the daemon handles its open,
    // and a handshake in between is missed (docs/configuration.md, `tls`). So the client
    // waits until the health counter shows the attachment.
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        running.assert_running();
        let health = daemon.request_health();
        if counter(&health, "credwatch.daemon.tls_libraries_attached")
            > counter(&before, "credwatch.daemon.tls_libraries_attached")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the copy of libssl was not attached within {TIMEOUT:?}; stderr:\n{}",
            daemon.stderr_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    running.send("go\n");
    let python = running.finish();
    python.assert_success();
    assert!(
        python.stdout.contains(&format!("mapped: {copy_text}\n")),
        "the client did not load the copy: {python:?}"
    );
    assert!(
        fs::read_dir(&mountpoint).unwrap().next().is_none(),
        "the tmpfs is visible outside the namespace"
    );

    let event = only_handshake_of(&daemon, python.pid);
    check_handshake(
        &event,
        &Expected {
            pid: python.pid,
            executable: &executable_name(PYTHON3),
            server_name: Some("ns.example.test"),
            port,
            library: "openssl",
            result: "success",
        },
    );
    assert_eq!(
        attribute(&event, "credwatch.tls.library.path"),
        copy_text,
        "the event names the host's libssl instead of the copy"
    );
    let after = daemon.request_health();
    assert!(
        counter(&after, "credwatch.daemon.tls_libraries_released")
            > counter(&before, "credwatch.daemon.tls_libraries_released"),
        "the copy was not released after its only user exited: {after}"
    );
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn tls_disabled_reports_no_handshake() {
    let mut daemon = Daemon::start_with_config("tls:\n  enabled: false\n");
    let server = TlsServer::start();
    let port = server.port();

    let curl = run_to_end(&mut curl("api.example.test", port));
    curl.assert_success();
    daemon.wait_for("curl's connect", |event| {
        event["event_name"] == CONNECT && event["attributes"]["process.pid"] == curl.pid
    });
    daemon.barrier();

    assert_eq!(daemon.events_of(HANDSHAKE, curl.pid), Vec::<Value>::new());
    let start = &daemon.health_events("start")[0];
    let probes = start["attributes"]["credwatch.probes"]
        .as_array()
        .expect("the start event lists the probes");
    let uprobes: Vec<&Value> = probes
        .iter()
        .filter(|probe| probe["hook"] == "uprobe")
        .collect();
    assert!(!uprobes.is_empty(), "no TLS probe is listed: {start}");
    for probe in uprobes {
        assert_eq!(probe["state"], "disabled", "{probe}");
    }
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn tls_probes_are_loaded_at_start() {
    let mut daemon = Daemon::start("");
    let start = &daemon.health_events("start")[0];
    let probes = start["attributes"]["credwatch.probes"]
        .as_array()
        .expect("the start event lists the probes");
    let uprobes: Vec<&Value> = probes
        .iter()
        .filter(|probe| probe["hook"] == "uprobe")
        .collect();
    assert!(!uprobes.is_empty(), "no TLS probe is listed: {start}");
    for probe in uprobes {
        assert_eq!(probe["state"], "loaded", "{probe}");
    }
    let arch = std::env::consts::ARCH;
    let host_libraries = ["libssl.so.3", "libgnutls.so.30"]
        .iter()
        .filter(|name| fs::exists(format!("/usr/lib/{arch}-linux-gnu/{name}")).unwrap_or(false))
        .count() as u64;
    let attached = counter(start, "credwatch.daemon.tls_libraries_attached");
    assert!(
        attached >= host_libraries,
        "{host_libraries} host TLS libraries exist but {attached} were attached at start"
    );
    assert_eq!(counter(start, "credwatch.daemon.tls_attach_failures"), 0);
    assert_documented(start);
    assert!(daemon.stop().success());
}
