//! Findings of the learnt baselines from real reads and connects. The tests cover a consumer
//! or a server outside a credential's frozen baseline, one credential read by two services, a
//! credential used again after a dormant period, and baselines that survive a restart or are
//! imported. Each test also checks that the benign repeat raises nothing.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use credwatch_tests::{
    Daemon, attribute,
    cgroups::TestCgroup,
    client::{Finished, PYTHON3, run_to_end, spawn},
    contract::assert_documented,
    credwatch_binary,
    findings::{FINDING, wait_for_finding},
    scratch_dir, unique, write_file,
};
use serde_json::Value;

const CONNECT: &str = "credwatch.network.connect";

/// Made-up AWS access key id of the fixture.
const KEY_ID: &str = "AKIAMADEUPBASELINE23";
/// Made-up secret access key of the fixture. It must never appear in an event, the daemon's
/// log or an exported baseline.
const SECRET: &str = "madeUpBaselineSecretKey00000000000000000";

/// `detection.learning_window` of the tests that wait for learning to end.
const LEARNING_WINDOW: Duration = Duration::from_secs(3);
/// Time added to a computed end of learning, for the daemon's clock and scheduling.
const MARGIN: Duration = Duration::from_millis(500);
/// Setting that turns `interactive_use` off in every test, because at a developer's terminal
/// every reader the test starts would raise it.
const NOT_INTERACTIVE: &str = "  interactive_use: false\n";

/// Writes the made-up AWS credentials file below `dir`, where the built-in catalogue entry
/// `aws-cli-credentials` matches it, and returns its path.
fn aws_file(dir: &Path) -> PathBuf {
    let file = dir.join("home/.aws/credentials");
    write_file(
        &file,
        &format!("[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
    );
    file
}

/// Returns the path of the python3 executable after symbolic links, which is the path the
/// daemon reports. Starting python by this path gives the same consumer even when the daemon
/// cannot read `/proc/PID/exe` of a process that already exited.
fn python_path() -> String {
    std::fs::canonicalize(PYTHON3)
        .unwrap_or_else(|error| panic!("{PYTHON3} is missing ({error}); run `cargo xtask setup`"))
        .to_string_lossy()
        .into_owned()
}

/// Returns every finding about the fixture's credential, oldest first. The daemon reports the
/// reads of every process on the host, so tests that run at the same time raise findings about
/// their own credentials, which are left out.
fn findings(daemon: &Daemon) -> Vec<Value> {
    daemon
        .events()
        .into_iter()
        .filter(|event| event["event_name"] == FINDING)
        .filter(|event| event["attributes"]["credwatch.finding.credential.native_id"] == KEY_ID)
        .collect()
}

/// Returns the findings of one type.
fn findings_of(daemon: &Daemon, finding_type: &str) -> Vec<Value> {
    findings(daemon)
        .into_iter()
        .filter(|event| event["attributes"]["credwatch.finding.type"] == finding_type)
        .collect()
}

/// Waits for the access event of process `pid` on `file`.
fn wait_for_access(daemon: &Daemon, pid: u32, file: &Path) -> Value {
    let path = file.to_string_lossy().into_owned();
    daemon.wait_for(&format!("the access event of pid {pid}"), |event| {
        event["event_name"] == "credwatch.credential.access"
            && event["attributes"]["process.pid"] == pid
            && event["attributes"]["file.path"] == path.as_str()
    })
}

/// Returns the string items of an array attribute.
fn strings(event: &Value, key: &str) -> Vec<String> {
    event["attributes"][key]
        .as_array()
        .unwrap_or_else(|| panic!("event has no array attribute {key}: {event}"))
        .iter()
        .map(|item| item.as_str().expect("a string item").to_owned())
        .collect()
}

/// Panics when the fixture's secret appears in an event or in the daemon's log.
fn assert_secret_kept(daemon: &Daemon) {
    let events = daemon.events();
    assert!(!events.is_empty(), "the daemon wrote no events");
    for event in &events {
        assert!(
            !event.to_string().contains(SECRET),
            "an event contains the secret: {event}"
        );
    }
    assert!(
        !daemon.stderr_text().contains(SECRET),
        "the daemon's log contains the secret"
    );
}

/// Sleeps until `deadline`, if it is still ahead.
fn sleep_until(deadline: Instant) {
    if let Some(left) = deadline.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

/// Reads `file` with `/usr/bin/cat` outside every test cgroup and returns its pid. It uses the
/// real path, because a reader that exits before the daemon reads `/proc/PID/exe` is named by
/// the path it was started with, and `/bin/cat` would then be another consumer.
fn cat(file: &Path) -> u32 {
    let finished = run_to_end(Command::new("/usr/bin/cat").arg(file));
    finished.assert_success();
    finished.pid
}

/// Reads `file` with `/usr/bin/cat` inside `cgroup` and returns its pid. The shell waits until
/// it is in the cgroup before it starts `cat`.
fn cat_inside(cgroup: &TestCgroup, file: &Path) -> u32 {
    let mut reader = spawn(
        Command::new("/bin/sh")
            .args(["-c", r#"read go; exec /usr/bin/cat "$1" > /dev/null"#, "sh"])
            .arg(file),
    );
    cgroup.enter(reader.pid());
    reader.send("go\n");
    let finished: Finished = reader.finish();
    finished.assert_success();
    finished.pid
}

/// The long-running python program of [`Service`]. For each line `read PATH` it reads the
/// file and prints `done`, or `failed: ...` with the error.
const SERVICE_PROGRAM: &str = r#"
import sys
print("ready", flush=True)
for line in sys.stdin:
    command, argument = line.rstrip("\n").split(" ", 1)
    try:
        if command != "read":
            raise ValueError("unknown command " + command)
        with open(argument) as credential:
            credential.read()
        print("done", flush=True)
    except (OSError, ValueError) as error:
        print("failed: " + str(error), flush=True)
"#;

/// A service in its own systemd unit cgroup (`system.slice/<unit>`): one python3 process that
/// stays alive and reads a file for each command the test sends. Dropping it
/// kills the process by its pid and removes the cgroup.
struct Service {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    unit: String,
    cgroup: TestCgroup,
}

impl Service {
    /// Starts the service `credwatch-test-<name>-<test pid>-<n>.service` and waits until it is
    /// ready.
    fn start(name: &str) -> Self {
        let unit = format!(
            "credwatch-test-{name}-{}-{}.service",
            std::process::id(),
            unique()
        );
        let cgroup = TestCgroup::create(&format!("system.slice/{unit}"));
        // The shell waits until it is in the cgroup, so that python starts inside it, as a
        // service manager starts a service.
        let mut child = Command::new("/bin/sh")
            .args(["-c", r#"read go; exec "$1" -c "$2""#, "sh"])
            .arg(python_path())
            .arg(SERVICE_PROGRAM)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the test service");
        let stdin = child.stdin.take().expect("the service's standard input");
        let stdout = BufReader::new(child.stdout.take().expect("the service's output"));
        let mut service = Self {
            child,
            stdin,
            stdout,
            unit,
            cgroup,
        };
        service.cgroup.enter(service.pid());
        service.send("go");
        service.expect_reply("ready");
        service
    }

    /// Returns the pid of the python process.
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns the service's `credwatch.workload.id`.
    fn workload(&self) -> String {
        format!("systemd://{}", self.unit)
    }

    /// Returns the service as a baseline consumer, as findings list it.
    fn consumer(&self) -> String {
        format!("{} ({})", self.workload(), python_path())
    }

    /// Reads `file` once.
    fn read(&mut self, file: &Path) {
        self.send(&format!("read {}", file.display()));
        self.expect_reply("done");
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .expect("send a command to the test service");
    }

    fn expect_reply(&mut self, expected: &str) {
        let mut reply = String::new();
        self.stdout
            .read_line(&mut reply)
            .expect("read the test service's reply");
        assert_eq!(reply.trim_end(), expected, "the test service failed");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn service_baseline_then_cat_is_new_consumer() {
    let dir = scratch_dir();
    let file = aws_file(dir.path());
    let mut daemon = Daemon::start_with_config(&format!(
        "detection:\n  learning_window: 3s\n{NOT_INTERACTIVE}"
    ));
    let mut service = Service::start("cart");

    // The first read starts learning. Once the barrier returns, the daemon has handled it.
    service.read(&file);
    let access = wait_for_access(&daemon, service.pid(), &file);
    daemon.barrier();
    let frozen_at = Instant::now() + LEARNING_WINDOW;
    service.read(&file);
    service.read(&file);
    daemon.barrier();
    let while_learning = findings(&daemon);
    sleep_until(frozen_at + MARGIN);

    service.read(&file);
    daemon.barrier();
    let learnt_after = findings(&daemon);
    let outsider = cat(&file);
    let finding = wait_for_finding(&daemon, "new_consumer", outsider);
    let repeat = cat(&file);
    daemon.barrier();
    assert!(daemon.stop().success());

    assert_eq!(
        attribute(&access, "credwatch.workload.id"),
        service.workload()
    );
    assert!(while_learning.is_empty(), "{while_learning:#?}");
    assert!(learnt_after.is_empty(), "{learnt_after:#?}");

    assert_documented(&finding);
    assert_eq!(attribute(&finding, "credwatch.finding.severity"), "medium");
    assert_eq!(
        attribute(&finding, "credwatch.finding.trigger"),
        "credwatch.credential.access"
    );
    assert_eq!(
        attribute(&finding, "credwatch.finding.credential.native_id"),
        KEY_ID
    );
    assert_eq!(
        attribute(&finding, "process.executable.path"),
        "/usr/bin/cat"
    );
    assert_eq!(attribute(&finding, "file.path"), file.to_str().unwrap());
    assert_eq!(
        strings(&finding, "credwatch.finding.baseline.consumers"),
        [service.consumer()]
    );
    assert_eq!(
        finding["attributes"]["credwatch.finding.baseline.pinned"],
        false
    );
    let learning_until = attribute(&finding, "credwatch.finding.baseline.learning_until");
    assert!(
        learning_until < finding["time"].as_str().unwrap(),
        "learning ended at {learning_until}, after the finding: {finding}"
    );
    assert!(
        attribute(&finding, "credwatch.finding.summary").contains("outside the 1 consumer"),
        "{finding}"
    );
    // The repeat by cat is the same consumer within the deduplication window, and a host
    // program such as cat is no workload, so it cannot make the credential shared either.
    let all = findings(&daemon);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(daemon.events_of(FINDING, repeat).is_empty());
    assert_secret_kept(&daemon);
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn baselines_and_last_use_survive_restart() {
    let fixture = scratch_dir();
    let state = scratch_dir();
    let file = aws_file(fixture.path());
    let config =
        format!("detection:\n  learning_window: 3s\n  dormant_after: 2s\n{NOT_INTERACTIVE}");
    // The service keeps running while the daemon restarts, as a real one would.
    let mut service = Service::start("cart");

    let mut first = Daemon::start_with_state(&config, state.path());
    service.read(&file);
    let learnt = wait_for_access(&first, service.pid(), &file);
    first.barrier();
    let frozen_at = Instant::now() + LEARNING_WINDOW;
    assert!(first.stop().success());
    // Learning ends, and the credential turns dormant, while no daemon runs.
    sleep_until(frozen_at + MARGIN);

    let mut second = Daemon::start_with_state(&config, state.path());
    service.read(&file);
    let dormant = wait_for_finding(&second, "dormant_reuse", service.pid());
    second.barrier();
    let from_service = second.events_of(FINDING, service.pid());
    let outsider = cat(&file);
    let new_consumer = wait_for_finding(&second, "new_consumer", outsider);
    second.barrier();
    assert!(second.stop().success());

    let before_restart = findings(&first);
    assert!(before_restart.is_empty(), "{before_restart:#?}");

    // The learnt consumer raises only the dormancy finding, which carries the last use
    // recorded before the restart.
    assert_eq!(from_service.len(), 1, "{from_service:#?}");
    assert_documented(&dormant);
    assert_eq!(attribute(&dormant, "credwatch.finding.severity"), "high");
    let read_at = learnt["time"].as_str().expect("the access event's time");
    assert_eq!(
        attribute(&dormant, "credwatch.finding.last_used"),
        format!("{}.000000Z", &read_at[..19]),
        "the last use is the read before the restart, in whole seconds"
    );
    assert_eq!(dormant["attributes"]["credwatch.finding.dormant_days"], 0);
    assert!(
        attribute(&dormant, "credwatch.finding.summary").contains("unused for"),
        "{dormant}"
    );

    // Another consumer is outside the baseline frozen across the restart, and its read right
    // after the service's is no dormant reuse.
    assert_documented(&new_consumer);
    assert_eq!(
        strings(&new_consumer, "credwatch.finding.baseline.consumers"),
        [service.consumer()]
    );
    let dormant_findings = findings_of(&second, "dormant_reuse");
    assert_eq!(dormant_findings.len(), 1, "{dormant_findings:#?}");
    let all = findings(&second);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_secret_kept(&first);
    assert_secret_kept(&second);
}

/// Runs `credwatch baseline SUBCOMMAND --state-dir STATE_DIR ARGUMENTS` to completion.
fn baseline_command(subcommand: &str, state_dir: &Path, arguments: &[&Path]) -> Finished {
    run_to_end(
        Command::new(credwatch_binary())
            .args(["baseline", subcommand, "--state-dir"])
            .arg(state_dir)
            .args(arguments),
    )
}

/// Exports the baselines of `state_dir` to `file` with `-o` and returns the file's text.
fn export(state_dir: &Path, file: &Path) -> String {
    let exported = baseline_command("export", state_dir, &[Path::new("-o"), file]);
    exported.assert_success();
    std::fs::read_to_string(file).expect("read the exported baselines")
}

/// Returns the index of the baseline of `credential_id` in an exported document.
fn baseline_index(document: &Value, credential_id: &str) -> usize {
    document["baselines"]
        .as_array()
        .expect("a baselines array")
        .iter()
        .position(|baseline| baseline["credential_id"] == credential_id)
        .unwrap_or_else(|| panic!("no baseline for {credential_id}: {document:#}"))
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn imported_baseline_applies_without_restart() {
    let fixture = scratch_dir();
    let state = scratch_dir();
    let file = aws_file(fixture.path());
    // The default learning window of 24 hours is still open, so only the import freezes the
    // baseline.
    let mut daemon =
        Daemon::start_with_state(&format!("detection:\n{NOT_INTERACTIVE}"), state.path());
    let mut service = Service::start("cart");
    service.read(&file);
    let access = wait_for_access(&daemon, service.pid(), &file);
    daemon.barrier();
    let credential_id = access["attributes"]["credwatch.credential.id"][0]
        .as_str()
        .unwrap_or_else(|| panic!("the read was not identified: {access}"))
        .to_owned();

    let exported_file = fixture.path().join("exported.json");
    let exported = export(state.path(), &exported_file);
    let mut document: Value = serde_json::from_str(&exported).expect("the export is JSON");
    let index = baseline_index(&document, &credential_id);
    let learnt = document["baselines"][index].clone();

    // An edit that breaks the document is rejected and changes nothing.
    let mut broken = document.clone();
    broken["baselines"][index]["credential_id"] = "".into();
    let broken_file = fixture.path().join("broken.json");
    write_file(&broken_file, &broken.to_string());
    let rejected = baseline_command("import", state.path(), &[&broken_file]);
    let mut misspelt = document.clone();
    let consumers = misspelt["baselines"][index]["consumers"].take();
    misspelt["baselines"][index]["consumer"] = consumers;
    let misspelt_file = fixture.path().join("misspelt.json");
    write_file(&misspelt_file, &misspelt.to_string());
    let misspelt_rejected = baseline_command("import", state.path(), &[&misspelt_file]);
    let after_rejects: Value =
        serde_json::from_str(&export(state.path(), &exported_file)).expect("the export is JSON");

    // The review keeps only the fixture's baseline and replaces the service's executable, so
    // python is no longer allowed and cat is.
    let mut reviewed = learnt.clone();
    reviewed["consumers"][0]["executable"] = "/usr/bin/cat".into();
    document["baselines"] = serde_json::json!([reviewed]);
    let reviewed_file = fixture.path().join("reviewed.json");
    write_file(&reviewed_file, &document.to_string());
    let imported = baseline_command("import", state.path(), &[&reviewed_file]);
    imported.assert_success();
    let imported_at = Instant::now();

    // The daemon checks for imports at most every 2 seconds, when a credential is used, so
    // the service reads until the import applies.
    let finding = loop {
        service.read(&file);
        daemon.barrier();
        if let Some(finding) = findings_of(&daemon, "new_consumer").pop() {
            break finding;
        }
        assert!(
            imported_at.elapsed() < Duration::from_secs(5),
            "the import did not apply within 5 s; stderr:\n{}",
            daemon.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let applied_after = imported_at.elapsed();
    let reviewed_reader = cat_inside(&service.cgroup, &file);
    service.read(&file);
    daemon.barrier();
    assert!(daemon.stop().success());

    assert!(!exported.contains(SECRET), "the export contains the secret");
    assert_eq!(learnt["native_id"], KEY_ID, "{learnt:#}");
    assert_eq!(learnt["pinned"], false, "{learnt:#}");
    assert_eq!(
        learnt["consumers"],
        serde_json::json!([{"workload": service.workload(), "executable": python_path()}]),
        "{learnt:#}"
    );
    assert_eq!(learnt["workloads"], serde_json::json!([service.workload()]));

    assert_eq!(rejected.status.code(), Some(2), "{}", rejected.stderr);
    assert!(
        rejected.stderr.contains(&format!(
            "baselines[{index}]: credential_id \"\" is not a credwatch id"
        )),
        "{}",
        rejected.stderr
    );
    assert!(
        rejected.stderr.contains(broken_file.to_str().unwrap()),
        "{}",
        rejected.stderr
    );
    assert_eq!(
        misspelt_rejected.status.code(),
        Some(2),
        "{}",
        misspelt_rejected.stderr
    );
    assert!(
        misspelt_rejected
            .stderr
            .contains("unknown field `consumer`"),
        "{}",
        misspelt_rejected.stderr
    );
    assert_eq!(
        after_rejects["baselines"][baseline_index(&after_rejects, &credential_id)],
        learnt,
        "a rejected import changed the baseline"
    );
    assert!(
        imported
            .stderr
            .contains("imported and pinned 1 baseline into"),
        "{}",
        imported.stderr
    );

    assert_documented(&finding);
    assert_eq!(finding["attributes"]["process.pid"], service.pid());
    assert_eq!(
        finding["attributes"]["credwatch.finding.baseline.pinned"],
        true
    );
    assert_eq!(
        strings(&finding, "credwatch.finding.baseline.consumers"),
        [format!("{} (/usr/bin/cat)", service.workload())]
    );
    assert!(
        applied_after < Duration::from_secs(5),
        "applied after {applied_after:?}"
    );
    // cat in the service's cgroup is the reviewed consumer, and the service's repeat is
    // deduplicated.
    assert!(daemon.events_of(FINDING, reviewed_reader).is_empty());
    let all = findings(&daemon);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_secret_kept(&daemon);
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn second_service_is_shared_credential() {
    let dir = scratch_dir();
    let file = aws_file(dir.path());
    let mut daemon = Daemon::start_with_config(&format!("detection:\n{NOT_INTERACTIVE}"));
    let mut cart = Service::start("cart");
    let mut billing = Service::start("billing");

    cart.read(&file);
    daemon.barrier();
    let one_service = findings(&daemon);
    billing.read(&file);
    let finding = wait_for_finding(&daemon, "shared_credential", billing.pid());
    cart.read(&file);
    let host_reader = cat(&file);
    daemon.barrier();
    assert!(daemon.stop().success());

    assert!(one_service.is_empty(), "{one_service:#?}");
    assert_documented(&finding);
    assert_eq!(attribute(&finding, "credwatch.finding.severity"), "medium");
    assert_eq!(
        attribute(&finding, "credwatch.workload.id"),
        billing.workload()
    );
    let mut expected = vec![billing.workload(), cart.workload()];
    expected.sort();
    assert_eq!(strings(&finding, "credwatch.finding.workloads"), expected);
    assert!(
        attribute(&finding, "credwatch.finding.summary").contains("2 distinct workloads"),
        "{finding}"
    );
    // Neither the first service's third read nor a host program adds a workload.
    assert!(daemon.events_of(FINDING, host_reader).is_empty());
    let all = findings(&daemon);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_secret_kept(&daemon);
}

/// Reads the file `sys.argv[1]`, then connects to each following port on 127.0.0.1.
const READ_THEN_CONNECT: &str = r#"
import socket, sys
with open(sys.argv[1]) as credential:
    credential.read()
for port in sys.argv[2:]:
    socket.create_connection(("127.0.0.1", int(port)), timeout=5).close()
"#;

/// Runs [`READ_THEN_CONNECT`] with python3 and returns its pid.
fn read_then_connect(file: &Path, ports: &[u16]) -> u32 {
    let finished = run_to_end(
        Command::new(python_path())
            .args(["-c", READ_THEN_CONNECT])
            .arg(file)
            .args(ports.iter().map(u16::to_string)),
    );
    finished.assert_success();
    finished.pid
}

/// Waits for the connect event of `pid` to `port`.
fn wait_for_connect(daemon: &Daemon, pid: u32, port: u16) -> Value {
    daemon.wait_for(&format!("a connect of pid {pid} to port {port}"), |event| {
        event["event_name"] == CONNECT
            && event["attributes"]["process.pid"] == pid
            && event["attributes"]["network.peer.port"] == port
    })
}

fn listen_on_loopback() -> (TcpListener, u16) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("listen on 127.0.0.1");
    let port = listener.local_addr().expect("the listening address").port();
    (listener, port)
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn new_server_after_learning_is_new_destination() {
    let dir = scratch_dir();
    let file = aws_file(dir.path());
    // The kernel completes the TCP handshakes into the listeners' backlogs; nothing accepts.
    let (_known_listener, known) = listen_on_loopback();
    let (_new_listener, new) = listen_on_loopback();
    let mut daemon = Daemon::start_with_config(&format!(
        "detection:\n  learning_window: 3s\n{NOT_INTERACTIVE}\
         network:\n  dedup_window: 0s\n  exclude_networks: []\n  exclude_ports: []\n"
    ));

    let learner = read_then_connect(&file, &[known]);
    wait_for_connect(&daemon, learner, known);
    daemon.barrier();
    let frozen_at = Instant::now() + LEARNING_WINDOW;
    let while_learning = findings(&daemon);
    sleep_until(frozen_at + MARGIN);

    let sender = read_then_connect(&file, &[known, new]);
    let finding = wait_for_finding(&daemon, "new_destination", sender);
    wait_for_connect(&daemon, sender, known);
    let repeat = read_then_connect(&file, &[known, new]);
    wait_for_connect(&daemon, repeat, new);
    daemon.barrier();
    assert!(daemon.stop().success());

    assert!(while_learning.is_empty(), "{while_learning:#?}");
    assert_documented(&finding);
    assert_eq!(attribute(&finding, "credwatch.finding.severity"), "medium");
    assert_eq!(attribute(&finding, "credwatch.finding.trigger"), CONNECT);
    assert_eq!(
        attribute(&finding, "credwatch.finding.destination"),
        format!("127.0.0.1:{new}")
    );
    assert_eq!(attribute(&finding, "network.peer.address"), "127.0.0.1");
    assert_eq!(finding["attributes"]["network.peer.port"], new);
    assert_eq!(
        strings(&finding, "credwatch.finding.baseline.destinations"),
        [format!("127.0.0.1:{known}")]
    );
    assert_eq!(
        finding["attributes"]["credwatch.finding.baseline.pinned"],
        false
    );
    assert_eq!(
        attribute(&finding, "credwatch.finding.credential.native_id"),
        KEY_ID
    );
    assert!(
        attribute(&finding, "credwatch.finding.summary")
            .contains(&format!("connected to 127.0.0.1:{new} after reading")),
        "{finding}"
    );
    assert!(
        attribute(&finding, "credwatch.finding.summary").contains("outside the 1 destination"),
        "{finding}"
    );
    // The learnt server raises nothing, the repeat to the new one is deduplicated, and
    // python is the consumer that was learnt.
    assert!(daemon.events_of(FINDING, repeat).is_empty());
    let all = findings(&daemon);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_secret_kept(&daemon);
}
