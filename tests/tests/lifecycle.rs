//! Daemon lifecycle: readiness, health at start, clean stop and start-up errors.

use std::{fs, process::Command};

use credwatch_tests::{Daemon, contract::assert_documented, credwatch_binary, scratch_dir};

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn ready_file_health_and_sigterm() {
    let mut daemon = Daemon::start("");
    let ready = daemon.ready_file().to_path_buf();
    let pid_text = fs::read_to_string(&ready).unwrap();
    assert_eq!(pid_text.trim(), daemon.pid().to_string());

    let start = daemon.health_events("start");
    assert_eq!(start.len(), 1);
    let probes = start[0]["attributes"]["credwatch.probes"]
        .as_array()
        .unwrap();
    for required in [
        "sys_enter_openat",
        "sys_exit_openat",
        "sched_process_exec",
        "sched_process_exit",
    ] {
        let probe = probes
            .iter()
            .find(|probe| probe["program"] == required)
            .unwrap_or_else(|| panic!("{required} missing"));
        assert_eq!(probe["state"], "attached", "{probe}");
        assert_eq!(probe["hook"], "tracepoint");
    }
    let status = daemon.stop();
    assert_eq!(status.code(), Some(0));
    assert!(!ready.exists(), "the ready file must be removed at exit");
    let stop = daemon.health_events("stop");
    assert_eq!(stop.len(), 1, "no final health event");
    assert_documented(&start[0]);
    assert_documented(&stop[0]);
    let walk = probes
        .iter()
        .find(|probe| probe["program"] == "directory_walk")
        .expect("directory_walk missing");
    assert_eq!(walk["state"], "attached", "{walk}");
    assert_eq!(walk["hook"], "tail_call");
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn sigint_also_exits_zero() {
    let mut daemon = Daemon::start("");
    daemon.signal(libc::SIGINT);
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(0));
}

#[test]
#[ignore = "needs root to switch to an unprivileged user; run with `cargo xtask test`"]
fn unprivileged_start_names_capabilities() {
    let dir = scratch_dir();
    let output = Command::new("/usr/bin/setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(credwatch_binary())
        .args(["run", "--json-file"])
        .arg(dir.path().join("events.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("CAP_BPF"), "{stderr}");
    assert!(stderr.contains("root"), "{stderr}");
}

#[test]
#[ignore = "needs the release binary; run with `cargo xtask test`"]
fn invalid_config_names_key_and_exits_2() {
    let dir = scratch_dir();
    let config = dir.path().join("config.yaml");
    fs::write(
        &config,
        "catalogue:\n  entries:\n    - {id: mine, type: my_token, suffixes: [/]}\n",
    )
    .unwrap();
    let output = Command::new(credwatch_binary())
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("catalogue.entries[0].suffixes[0]"),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs the release binary; run with `cargo xtask test`"]
fn missing_config_file_is_named() {
    let output = Command::new(credwatch_binary())
        .args(["check-config", "--config", "/nonexistent/credwatch.yaml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/credwatch.yaml"), "{stderr}");
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn sighup_reopens_rotated_event_file() {
    let mut daemon = Daemon::start("");
    let events = daemon.dir().join("events.jsonl");
    let rotated = daemon.dir().join("events.jsonl.1");
    fs::rename(&events, &rotated).unwrap();

    daemon.signal(libc::SIGHUP);
    // The daemon handles the signal and ring-buffer records in either order, so the
    // barrier's open must wait for the new file: before the reopen its event would go to the
    // rotated file.
    let deadline = std::time::Instant::now() + credwatch_tests::TIMEOUT;
    while !events.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP must create a new event file"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    daemon.barrier();
    let old = fs::read_to_string(&rotated).unwrap();
    assert!(
        old.contains("\"credwatch.health.reason\":\"start\""),
        "the start event stays in the rotated file"
    );
    assert_eq!(daemon.stop().code(), Some(0));
}

#[test]
#[ignore = "needs the release binary; run with `cargo xtask test`"]
fn unknown_log_level_is_rejected() {
    let output = Command::new(credwatch_binary())
        .args(["--log-level", "verbose", "catalogue"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("verbose"), "{stderr}");
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn sigterm_during_start_exits_zero() {
    let dir = scratch_dir();
    let mut child = Command::new(credwatch_binary())
        .args(["run", "--json-file"])
        .arg(dir.path().join("events.jsonl"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Loading and attaching takes about a second, so this signal arrives during start-up.
    std::thread::sleep(std::time::Duration::from_millis(200));
    // SAFETY: kill only signals the child this test started.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let events = fs::read_to_string(dir.path().join("events.jsonl")).unwrap_or_default();
    assert!(
        events.contains("\"credwatch.health.reason\":\"stop\""),
        "{events}"
    );
}

/// Returns the tracefs mounts in the mount namespace of process `pid` (`self` for this one),
/// as lines of its `mountinfo`.
fn tracefs_mounts_of(pid: &str) -> Vec<String> {
    fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .filter(|line| line.contains(" - tracefs "))
        .map(str::to_owned)
        .collect()
}

fn tracefs_mounts() -> Vec<String> {
    tracefs_mounts_of("self")
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn two_daemons_start_at_once() {
    let before = tracefs_mounts();

    let (mut first, mut second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| Daemon::start(""));
        let second = scope.spawn(|| Daemon::start(""));
        (first.join().unwrap(), second.join().unwrap())
    });
    let while_running = tracefs_mounts();
    let daemon_mounts = tracefs_mounts_of(&first.pid().to_string());
    assert!(first.stop().success(), "{}", first.stderr_text());
    assert!(second.stop().success(), "{}", second.stderr_text());

    // A tracefs the daemons mount lives in their own mount namespaces, so neither can take it
    // away from the other and the host keeps its mounts as they were.
    assert_eq!(while_running, before);
    assert_eq!(tracefs_mounts(), before);
    if before.is_empty() {
        assert!(
            !daemon_mounts.is_empty(),
            "the daemon mounted tracefs for itself and keeps it"
        );
    }
}
