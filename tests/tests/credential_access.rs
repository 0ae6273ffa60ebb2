//! Credential-file access, end to end: the real daemon, real programs, made-up credentials.

use std::{
    fs,
    os::unix::fs::{PermissionsExt as _, symlink},
    process::Command,
};

use credwatch_tests::{
    Daemon, attribute, contract::assert_documented, run, scratch_dir, write_file,
};

/// Made-up AWS credentials; the key id has the real format but is not a real key.
const FAKE_AWS: &str = "[default]\naws_access_key_id = AKIAFAKEFAKEFAKE1234\naws_secret_access_key = made-up-secret-for-tests-only\n";

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn cat_of_aws_credentials_gives_one_event() {
    let mut daemon = Daemon::start("");
    let home = daemon.dir().join("home");
    let credentials = home.join(".aws/credentials");
    write_file(&credentials, FAKE_AWS);

    let (pid, status) = run(Command::new("/usr/bin/cat")
        .arg(&credentials)
        .env("HOME", &home));
    assert!(status.success());
    daemon.barrier();

    let events = daemon.access_events_of(pid);
    assert_eq!(
        events.len(),
        1,
        "expected exactly one event for cat: {events:#?}"
    );
    let event = &events[0];
    assert_eq!(event["attributes"]["process.pid"], pid);
    assert_eq!(attribute(event, "process.executable.path"), "/usr/bin/cat");
    assert_eq!(attribute(event, "process.executable.name"), "cat");
    assert_eq!(attribute(event, "file.path"), credentials.to_str().unwrap());
    assert_eq!(
        attribute(event, "credwatch.credential.type"),
        "aws_credentials"
    );
    assert_eq!(attribute(event, "credwatch.access.result"), "ok");
    assert_eq!(attribute(event, "credwatch.access.mode"), "read");
    assert_eq!(event["attributes"]["process.user.id"], 0);
    assert_eq!(attribute(event, "process.user.name"), "root");
    assert!(attribute(event, "process.command_line").starts_with("/usr/bin/cat "));
    assert!(event["attributes"]["process.parent_pid"].as_u64().is_some());
    assert!(attribute(event, "process.creation.time").ends_with('Z'));
    assert!(attribute(event, "process.linux.cgroup").starts_with("0::/"));
    assert_eq!(event["severity_text"], "INFO");
    assert_eq!(event["resource"]["service.name"], "credwatch");
    assert_documented(event);

    let text = fs::read_to_string(daemon.dir().join("events.jsonl")).unwrap();
    assert!(
        !text.contains("made-up-secret-for-tests-only"),
        "the secret leaked into events"
    );
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn relative_path_after_chdir_is_reported_absolute() {
    let dir = scratch_dir();
    let account = dir.path().join("serviceaccount");
    let token = account.join("token");
    write_file(
        &token,
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWRlLXVwIn0.made-up-signature\n",
    );
    let entry = format!(
        "    - {{id: test-sa-token, type: kubernetes_service_account_token, paths: [{}]}}\n",
        token.display()
    );
    let mut daemon = Daemon::start(&entry);

    let script = format!(
        "import os\nos.chdir({:?})\nopen('token').read()\n",
        account.to_str().unwrap()
    );
    let (pid, status) = run(Command::new("/usr/bin/python3").args(["-c", &script]));
    assert!(status.success());
    daemon.barrier();

    let events = daemon.access_events_of(pid);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(attribute(&events[0], "file.path"), token.to_str().unwrap());
    assert_eq!(
        attribute(&events[0], "credwatch.file.requested_path"),
        "token"
    );
    assert_eq!(
        attribute(&events[0], "credwatch.credential.type"),
        "kubernetes_service_account_token"
    );
    assert!(attribute(&events[0], "process.executable.path").contains("python3"));
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn dot_dot_traversal_is_normalised() {
    let mut daemon = Daemon::start("");
    let home = daemon.dir().join("home");
    let credentials = home.join(".aws/credentials");
    write_file(&credentials, FAKE_AWS);
    fs::create_dir_all(home.join("projects")).unwrap();
    let traversal = format!("{}/projects/../.aws/./credentials", home.display());

    let (pid, status) = run(Command::new("/usr/bin/cat").arg(&traversal));
    assert!(status.success());
    daemon.barrier();

    let events = daemon.access_events_of(pid);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        attribute(&events[0], "file.path"),
        credentials.to_str().unwrap()
    );
    assert_eq!(
        attribute(&events[0], "credwatch.file.requested_path"),
        traversal
    );
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn kubelet_data_symlink_layout_is_normalised() {
    let dir = scratch_dir();
    let account = dir.path().join("serviceaccount");
    let timestamped = account.join("..2026_12_04_19_50_00.123456789");
    write_file(&timestamped.join("token"), "made-up-projected-token\n");
    symlink("..2026_12_04_19_50_00.123456789", account.join("..data")).unwrap();
    symlink("..data/token", account.join("token")).unwrap();
    let token = account.join("token");
    let entry = format!(
        "    - {{id: test-sa-token, type: kubernetes_service_account_token, paths: [{}]}}\n",
        token.display()
    );
    let mut daemon = Daemon::start(&entry);

    let through_data = account.join("..data/token");
    let through_timestamp = timestamped.join("token");
    let (first, _) = run(Command::new("/usr/bin/cat").arg(&through_data));
    let (second, _) = run(Command::new("/usr/bin/cat").arg(&through_timestamp));
    daemon.barrier();

    for pid in [first, second] {
        let events = daemon.access_events_of(pid);
        assert_eq!(events.len(), 1, "pid {pid}: {events:#?}");
        assert_eq!(attribute(&events[0], "file.path"), token.to_str().unwrap());
    }
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn ordinary_file_gives_no_event() {
    let mut daemon = Daemon::start("");
    let notes = daemon.dir().join("home/notes.txt");
    write_file(&notes, "nothing secret\n");

    let (pid, status) = run(Command::new("/usr/bin/cat").arg(&notes));
    assert!(status.success());
    daemon.barrier();

    assert_eq!(
        daemon.access_events_of(pid),
        Vec::<serde_json::Value>::new()
    );
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn missing_credential_reports_enoent() {
    let mut daemon = Daemon::start("");
    let missing = daemon.dir().join("nobody-home/.aws/credentials");

    let (pid, status) = run(Command::new("/usr/bin/cat").arg(&missing));
    assert!(!status.success(), "cat of a missing file must fail");
    daemon.barrier();

    let events = daemon.access_events_of(pid);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(attribute(&events[0], "credwatch.access.result"), "ENOENT");
    assert_eq!(
        attribute(&events[0], "file.path"),
        missing.to_str().unwrap()
    );
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn unprivileged_read_reports_eacces() {
    let mut daemon = Daemon::start("");
    let key = daemon.dir().join("home/.ssh/id_ed25519");
    write_file(
        &key,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nmade-up\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();

    let (pid, status) = run(Command::new("/usr/bin/setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/cat",
        ])
        .arg(&key));
    assert!(
        !status.success(),
        "nobody must not read a root-owned 0600 key"
    );
    daemon.barrier();

    let events = daemon.access_events_of(pid);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(attribute(&events[0], "credwatch.access.result"), "EACCES");
    assert_eq!(
        attribute(&events[0], "credwatch.credential.type"),
        "ssh_private_key"
    );
    assert_eq!(events[0]["attributes"]["process.user.id"], 65534);
    assert_eq!(
        attribute(&events[0], "process.executable.path"),
        "/usr/bin/cat"
    );
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn ordinary_opens_never_reach_userspace() {
    let mut daemon = Daemon::start("");
    let file = daemon.dir().join("ordinary-data.txt");
    write_file(&file, "data\n");
    let before = daemon.request_health();

    let script = format!(
        "for _ in range(10000):\n    open({:?}).close()\n",
        file.to_str().unwrap()
    );
    let (_, status) = run(Command::new("/usr/bin/python3").args(["-c", &script]));
    assert!(status.success());
    let after = daemon.request_health();

    let counter = |event: &serde_json::Value, key: &str| event["attributes"][key].as_u64().unwrap();
    let seen = counter(&after, "credwatch.kernel.opens_seen")
        - counter(&before, "credwatch.kernel.opens_seen");
    let matched = counter(&after, "credwatch.kernel.opens_matched")
        - counter(&before, "credwatch.kernel.opens_matched");
    assert!(seen >= 10_000, "the enter program saw only {seen} opens");
    assert_eq!(matched, 0, "ordinary opens were sent to userspace");
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn daemon_own_reads_are_excluded() {
    // /etc/passwd becomes a credential here; the daemon reads it to name the user of an event.
    let mut daemon =
        Daemon::start("    - {id: test-passwd, type: test_passwd, paths: [/etc/passwd]}\n");
    let home = daemon.dir().join("home");
    let credentials = home.join(".aws/credentials");
    write_file(&credentials, FAKE_AWS);

    let (pid, _) = run(Command::new("/usr/bin/cat").arg(&credentials));
    let event = daemon.wait_for("cat's access", |event| {
        event["attributes"]["process.pid"] == pid
    });
    assert_eq!(
        attribute(&event, "process.user.name"),
        "root",
        "the daemon did not read /etc/passwd"
    );
    let (reader, _) = run(Command::new("/usr/bin/cat").arg("/etc/passwd"));
    daemon.barrier();

    assert_eq!(
        daemon.access_events_of(reader).len(),
        1,
        "another process reading /etc/passwd is reported"
    );
    assert_eq!(
        daemon.access_events_of(daemon.pid()),
        Vec::<serde_json::Value>::new()
    );
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn secret_arguments_are_redacted() {
    let mut daemon = Daemon::start("");
    let credentials = daemon.dir().join("home/.aws/credentials");
    write_file(&credentials, FAKE_AWS);
    let script = format!("open({:?}).read()", credentials.to_str().unwrap());

    let (pid, _) = run(Command::new("/usr/bin/python3").args([
        "-c",
        &script,
        "--password",
        "hunter2-made-up",
    ]));
    daemon.barrier();

    let events = daemon.access_events_of(pid);
    assert_eq!(events.len(), 1, "{events:#?}");
    let command_line = attribute(&events[0], "process.command_line");
    assert!(command_line.contains("--password"), "{command_line}");
    assert!(!command_line.contains("hunter2-made-up"), "{command_line}");
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn relative_open_by_exiting_process_is_resolved() {
    // cat exits right after the open, before the daemon could read /proc/PID/cwd, so this
    // passes only when the directory is taken in the kernel at the time of the open.
    let mut daemon = Daemon::start("");
    let aws = daemon.dir().join("home/.aws");
    write_file(&aws.join("credentials"), FAKE_AWS);

    let mut pids = Vec::new();
    for _ in 0..5 {
        let (pid, status) = run(Command::new("/usr/bin/cat")
            .arg("credentials")
            .current_dir(&aws));
        assert!(status.success());
        pids.push(pid);
    }
    daemon.barrier();

    for pid in pids {
        let events = daemon.access_events_of(pid);
        assert_eq!(events.len(), 1, "pid {pid}: {events:#?}");
        assert_eq!(
            attribute(&events[0], "file.path"),
            aws.join("credentials").to_str().unwrap()
        );
        assert_eq!(
            attribute(&events[0], "credwatch.file.requested_path"),
            "credentials"
        );
    }
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn openat_with_directory_descriptor_is_resolved() {
    let mut daemon = Daemon::start("");
    let aws = daemon.dir().join("home/.aws");
    write_file(&aws.join("credentials"), FAKE_AWS);
    let script = format!(
        "import os\nfd = os.open({:?}, os.O_RDONLY | os.O_DIRECTORY)\nos.close(os.open('credentials', os.O_RDONLY, dir_fd=fd))\n",
        aws.to_str().unwrap()
    );

    let (pid, status) = run(Command::new("/usr/bin/python3").args(["-c", &script]));
    assert!(status.success());
    daemon.barrier();

    let events = daemon.access_events_of(pid);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        attribute(&events[0], "file.path"),
        aws.join("credentials").to_str().unwrap()
    );
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn long_command_line_is_marked_truncated() {
    let mut daemon = Daemon::start("");
    let credentials = daemon.dir().join("home/.aws/credentials");
    write_file(&credentials, FAKE_AWS);
    let script = format!("open({:?}).read()", credentials.to_str().unwrap());
    let padding = "x".repeat(1200);

    let (pid, _) = run(Command::new("/usr/bin/python3").args(["-c", &script, &padding]));
    daemon.barrier();

    let events = daemon.access_events_of(pid);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        events[0]["attributes"]["credwatch.process.command_line.truncated"],
        true
    );
    assert!(attribute(&events[0], "process.command_line").len() < 1100);
    assert_documented(&events[0]);
    assert!(daemon.stop().success());
}
