//! Findings from real reads: an expired token, a sweep over many credentials, and a reader
//! at a terminal, each with the benign repeat that must raise nothing.

use std::{path::Path, process::Command};

use credwatch_tests::{
    Daemon, attribute,
    client::run_to_end,
    contract::assert_documented,
    counter,
    encoding::jwt,
    findings::{FINDING, findings_of},
    scratch_dir,
    servers::test_has_terminal,
    write_file,
};

/// Returns a made-up service-account token that expires at Unix time `exp`.
fn token(exp: u64) -> String {
    let claims = format!(
        r#"{{"iss":"https://kubernetes.default.svc","sub":"system:serviceaccount:shop:cart","exp":{exp},"kubernetes.io":{{"namespace":"shop","serviceaccount":{{"name":"cart","uid":"5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b"}}}}}}"#
    );
    jwt(r#"{"alg":"RS256"}"#, &claims, "madeUpSignature")
}

/// Reads `file` with `cat` by its real path. A reader that exits before the daemon reads
/// `/proc/PID/exe` is named by the path it was started with, and `/bin/cat` would then be
/// another consumer than `/usr/bin/cat`.
fn cat(file: &Path) -> u32 {
    let finished = run_to_end(Command::new("/usr/bin/cat").arg(file));
    finished.assert_success();
    finished.pid
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn expired_token_read_raises_expired_use_once() {
    let dir = scratch_dir();
    let expired = dir.path().join("expired/token");
    let valid = dir.path().join("valid/token");
    write_file(&expired, &token(1_700_000_000));
    write_file(&valid, &token(4_102_444_800));
    let entry = format!(
        "    - {{id: test-tokens, type: kubernetes_service_account_token, paths: [{}, {}]}}\n",
        expired.display(),
        valid.display()
    );
    let mut daemon = Daemon::start(&entry);

    let first = cat(&expired);
    cat(&valid);
    let second = cat(&expired);
    let finding = daemon.wait_for("an expired_use finding", |event| {
        event["event_name"] == FINDING && event["attributes"]["process.pid"] == first
    });
    daemon.barrier();
    let health = daemon.request_health();
    assert!(daemon.stop().success());

    assert_documented(&finding);
    assert_eq!(attribute(&finding, "credwatch.finding.type"), "expired_use");
    assert_eq!(attribute(&finding, "credwatch.finding.severity"), "medium");
    assert_eq!(
        attribute(&finding, "credwatch.finding.credential.type"),
        "kubernetes_service_account_token"
    );
    assert_eq!(
        attribute(&finding, "credwatch.finding.credential.expires_at"),
        "2023-11-14T22:13:20.000000Z"
    );
    assert_eq!(attribute(&finding, "file.path"), expired.to_str().unwrap());
    assert!(
        attribute(&finding, "credwatch.finding.summary").contains("that expired"),
        "{finding}"
    );
    // The valid token raises nothing, and the second read of the expired one by the same
    // executable is a repeat within the deduplication window.
    let expired_findings = findings_of(&daemon, "expired_use");
    assert_eq!(expired_findings.len(), 1, "{expired_findings:#?}");
    assert!(
        daemon
            .events_of(FINDING, second)
            .iter()
            .all(|event| event["attributes"]["credwatch.finding.type"] != "expired_use")
    );
    assert!(counter(&health, "credwatch.daemon.findings_deduplicated") >= 1);
    assert!(counter(&health, "credwatch.daemon.findings_raised") >= 1);
}

/// Writes `count` made-up AWS credential files with distinct keys below `dir`.
fn aws_files(dir: &Path, count: usize) -> Vec<String> {
    (0..count)
        .map(|index| {
            let file = dir.join(format!("home-{index}/.aws/credentials"));
            write_file(
                &file,
                &format!(
                    "[default]\naws_access_key_id = AKIAMADEUPSWEEP{index:05}\naws_secret_access_key = madeUpSweepSecret{index:023}\n"
                ),
            );
            file.to_string_lossy().into_owned()
        })
        .collect()
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn ten_credentials_in_two_seconds_are_a_sweep() {
    let dir = scratch_dir();
    let files = aws_files(dir.path(), 10);
    let mut daemon = Daemon::start("");

    // One file read twenty times is an application, not a sweep.
    let again = format!(
        "import sys\nfor _ in range(20):\n    open({:?}).read()\n",
        files[0]
    );
    let repeated = run_to_end(Command::new("/usr/bin/python3").args(["-c", &again]));
    repeated.assert_success();
    let sweep = "import sys\nfor path in sys.argv[1:]:\n    open(path).read()\n";
    let sweeper = run_to_end(
        Command::new("/usr/bin/python3")
            .args(["-c", sweep])
            .args(&files),
    );
    sweeper.assert_success();
    let finding = daemon.wait_for("a credential_sweep finding", |event| {
        event["event_name"] == FINDING && event["attributes"]["process.pid"] == sweeper.pid
    });
    daemon.barrier();
    assert!(daemon.stop().success());

    assert_documented(&finding);
    assert_eq!(
        attribute(&finding, "credwatch.finding.type"),
        "credential_sweep"
    );
    assert_eq!(attribute(&finding, "credwatch.finding.severity"), "high");
    assert!(
        attribute(&finding, "credwatch.finding.summary").contains("read 10 distinct credentials"),
        "{finding}"
    );
    let sweeps = findings_of(&daemon, "credential_sweep");
    assert_eq!(sweeps.len(), 1, "{sweeps:#?}");
    assert!(daemon.events_of(FINDING, repeated.pid).is_empty());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn terminal_reader_raises_interactive_use() {
    if test_has_terminal() {
        eprintln!("skipped: the test runs at a terminal, so every reader would be interactive");
        return;
    }
    let dir = scratch_dir();
    let files = aws_files(dir.path(), 2);
    let mut daemon = Daemon::start("");

    // `script` gives `cat` a pseudo-terminal; the plain reader has none.
    let plain = run_to_end(Command::new("/usr/bin/cat").arg(&files[1]));
    plain.assert_success();
    let at_terminal = run_to_end(Command::new("script").args([
        "-qec",
        &format!("cat {}", files[0]),
        "/dev/null",
    ]));
    at_terminal.assert_success();
    let finding = daemon.wait_for("an interactive_use finding", |event| {
        event["event_name"] == FINDING
            && event["attributes"]["credwatch.finding.type"] == "interactive_use"
    });
    daemon.barrier();
    assert!(daemon.stop().success());

    assert_documented(&finding);
    assert_eq!(attribute(&finding, "process.executable.name"), "cat");
    assert_eq!(attribute(&finding, "file.path"), files[0]);
    assert_eq!(finding["attributes"]["credwatch.process.interactive"], true);
    assert!(daemon.events_of(FINDING, plain.pid).is_empty());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn revoked_key_raises_revoked_use_and_the_list_reloads() {
    let dir = scratch_dir();
    let files = aws_files(dir.path(), 2);
    let list = dir.path().join("revoked.txt");
    write_file(
        &list,
        "# made-up keys revoked by the test\nAKIAMADEUPSWEEP00000\n",
    );
    let mut daemon = Daemon::start_with_config(&format!(
        "detection:\n  revocation_file: {}\n",
        list.display()
    ));

    let first = run_to_end(Command::new("/usr/bin/cat").arg(&files[0]));
    first.assert_success();
    let finding = daemon.wait_for("a revoked_use finding", |event| {
        event["event_name"] == FINDING && event["attributes"]["process.pid"] == first.pid
    });
    // The second key is not revoked yet; revoking it takes effect without a restart.
    let before = run_to_end(Command::new("/usr/bin/cat").arg(&files[1]));
    before.assert_success();
    daemon.barrier();
    let revoked_before = daemon.events_of(FINDING, before.pid);
    write_file(&list, "AKIAMADEUPSWEEP00000\nAKIAMADEUPSWEEP00001\n");
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    let after = run_to_end(Command::new("/usr/bin/head").arg(&files[1]));
    after.assert_success();
    let reloaded = daemon.wait_for("a revoked_use finding after the reload", |event| {
        event["event_name"] == FINDING && event["attributes"]["process.pid"] == after.pid
    });
    assert!(daemon.stop().success());

    assert_documented(&finding);
    assert_eq!(attribute(&finding, "credwatch.finding.type"), "revoked_use");
    assert_eq!(attribute(&finding, "credwatch.finding.severity"), "high");
    assert_eq!(
        attribute(&finding, "credwatch.finding.credential.native_id"),
        "AKIAMADEUPSWEEP00000"
    );
    assert!(revoked_before.is_empty(), "{revoked_before:#?}");
    assert_eq!(
        attribute(&reloaded, "credwatch.finding.type"),
        "revoked_use"
    );
    assert_eq!(
        attribute(&reloaded, "credwatch.finding.credential.native_id"),
        "AKIAMADEUPSWEEP00001"
    );
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn missing_revocation_file_is_a_configuration_error() {
    let dir = scratch_dir();
    let config = dir.path().join("config.yaml");
    write_file(
        &config,
        &format!(
            "detection:\n  revocation_file: {}\n",
            dir.path().join("absent.txt").display()
        ),
    );
    let output = Command::new(credwatch_tests::credwatch_binary())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("detection.revocation_file"), "{stderr}");
    assert!(stderr.contains("absent.txt"), "{stderr}");
}
