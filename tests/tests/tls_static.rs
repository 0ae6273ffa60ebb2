//! A program with OpenSSL linked in statically, found through its own executable.

use std::process::Command;

use credwatch_tests::{
    Daemon, attribute, contract::assert_documented, scratch_dir, servers::TlsServer,
};

/// Builds the static client from its C source. Needs gcc and the static OpenSSL libraries
/// (`libssl-dev`), which `cargo xtask setup` installs.
fn build_static_client(dir: &std::path::Path) -> std::path::PathBuf {
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/static_tls_client.c");
    let binary = dir.join("static_tls_client");
    let output = Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&binary)
        .arg(source)
        .args([
            "-rdynamic",
            "-Wl,-Bstatic",
            "-lssl",
            "-lcrypto",
            "-Wl,-Bdynamic",
            "-lpthread",
            "-ldl",
        ])
        .output()
        .expect("run gcc; run `cargo xtask setup` to install it");
    assert!(
        output.status.success(),
        "building the static TLS client failed (needs gcc and libssl-dev, which `cargo xtask setup` installs): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    binary
}

#[test]
#[ignore = "needs root: loads eBPF programs"]
fn static_openssl_executable_is_hooked() {
    let dir = scratch_dir();
    let binary = build_static_client(dir.path());
    let server = TlsServer::start();
    let daemon = Daemon::start("");

    // The client waits a second before its handshake, longer than the daemon's default
    // inspection delay after exec, because a new executable is hooked only after that delay.
    let output = Command::new(&binary)
        .arg(server.port().to_string())
        .arg("static.example.test")
        .arg("1000")
        .output()
        .expect("run the static TLS client");
    assert!(
        output.status.success(),
        "static client failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let event = daemon.wait_for("the static client's handshake", |event| {
        event["event_name"] == "credwatch.tls.handshake"
            && event["attributes"]["server.address"] == "static.example.test"
    });
    assert_documented(&event);
    assert_eq!(attribute(&event, "credwatch.tls.result"), "success");
    assert_eq!(attribute(&event, "credwatch.tls.library"), "openssl");
    assert_eq!(
        attribute(&event, "credwatch.tls.library.path"),
        binary.to_str().unwrap(),
        "the executable itself carries the library"
    );
    assert_eq!(
        attribute(&event, "process.executable.name"),
        "static_tls_client"
    );
    assert_eq!(event["attributes"]["server.port"], u64::from(server.port()));
}
