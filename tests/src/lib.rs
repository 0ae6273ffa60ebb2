//! Harness for the integration tests: starts the real `credwatch run` with a ready file, reads
//! its JSON-lines events, and stops it with SIGTERM.
//!
//! The tests need root, because the daemon loads eBPF programs, so they are `#[ignore]`d by
//! default; `cargo xtask test` runs them one at a time with `--include-ignored` and points
//! `CREDWATCH_BIN` at the release binary.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tempfile::TempDir;

pub mod cgroups;
pub mod client;
pub mod contract;
pub mod encoding;
pub mod findings;
pub mod otlp;
pub mod servers;

/// How long a test waits for the daemon to start or for an event.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Basename of the marker file that [`Daemon::barrier`] opens.
const MARKER_NAME: &str = "credwatch-test-marker";

/// Path of the credwatch binary under test.
pub fn credwatch_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CREDWATCH_BIN") {
        return PathBuf::from(path);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/credwatch")
}

/// Creates a temporary directory that other users can traverse, removed on drop.
pub fn scratch_dir() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("credwatch-test-")
        .tempdir()
        .expect("create a temporary directory");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
        .expect("chmod the temporary directory");
    dir
}

/// Writes a made-up credential file, creating its directories with mode 0755.
pub fn write_file(path: &Path, contents: &str) {
    let parent = path.parent().expect("file has a parent directory");
    fs::create_dir_all(parent).expect("create parent directories");
    let mut directory = parent;
    while fs::set_permissions(directory, fs::Permissions::from_mode(0o755)).is_ok() {
        match directory.parent() {
            Some(up) if up != Path::new("/tmp") && up != Path::new("/") => directory = up,
            _ => break,
        }
    }
    fs::write(path, contents).expect("write the file");
}

/// A running daemon.
pub struct Daemon {
    child: Child,
    dir: TempDir,
    events: PathBuf,
    ready: PathBuf,
    stderr: PathBuf,
}

impl Daemon {
    /// Starts the daemon with the built-in catalogue plus `extra_entries`, a YAML list of
    /// catalogue entries (may be empty), and waits for its ready file.
    pub fn start(extra_entries: &str) -> Self {
        Self::start_with_entries_and_sections(extra_entries, "", None)
    }

    /// Starts the daemon like [`Daemon::start`] with no extra entries, plus `sections`:
    /// top-level YAML sections such as `"network:\n  dedup_window: 0s\n"`. The harness writes
    /// the `catalogue` and `health` sections itself, so `sections` must not contain them.
    pub fn start_with_config(sections: &str) -> Self {
        Self::start_with_entries_and_sections("", sections, None)
    }

    /// Starts the daemon like [`Daemon::start_with_config`], with its state (inventory and
    /// install key) in `state_dir`, so that a later daemon can find it. Without this the state
    /// goes to a directory removed with the daemon.
    pub fn start_with_state(sections: &str, state_dir: &Path) -> Self {
        Self::start_with_entries_and_sections("", sections, Some(state_dir.to_path_buf()))
    }

    /// Starts the daemon with `extra_entries` as [`Daemon::start`] and `sections` as
    /// [`Daemon::start_with_config`], and its state in `state_dir` when given.
    pub fn start_with_entries_and_sections(
        extra_entries: &str,
        sections: &str,
        state_dir: Option<PathBuf>,
    ) -> Self {
        let dir = scratch_dir();
        let marker_entry =
            format!("    - {{id: test-marker, type: test_marker, basenames: [{MARKER_NAME}]}}\n");
        let config = format!(
            "catalogue:\n  entries:\n{marker_entry}{extra_entries}health:\n  report_interval: 0s\n{sections}"
        );
        let config_path = dir.path().join("config.yaml");
        fs::write(&config_path, config).expect("write the daemon configuration");
        let state_dir = state_dir.unwrap_or_else(|| dir.path().join("state"));
        Self::start_with_config_file(dir, &config_path, &state_dir)
    }

    fn start_with_config_file(dir: TempDir, config: &Path, state_dir: &Path) -> Self {
        let events = dir.path().join("events.jsonl");
        let ready = dir.path().join("ready");
        let stderr = dir.path().join("stderr.log");
        let child = Command::new(credwatch_binary())
            .args(["--log-level", "debug", "run", "--config"])
            .arg(config)
            .arg("--json-file")
            .arg(&events)
            .arg("--ready-file")
            .arg(&ready)
            .arg("--state-dir")
            .arg(state_dir)
            .stdout(fs::File::create(dir.path().join("stdout.log")).expect("create the stdout log"))
            .stderr(fs::File::create(&stderr).expect("create the stderr log"))
            .spawn()
            .expect("start credwatch; build it with `cargo xtask build`");
        let mut daemon = Self {
            child,
            dir,
            events,
            ready,
            stderr,
        };
        daemon.wait_ready();
        daemon
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.ready.exists() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "credwatch exited with {status} before it was ready; stderr:\n{}",
                    self.stderr_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "credwatch was not ready after {TIMEOUT:?}; stderr:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Returns the daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns the ready file.
    pub fn ready_file(&self) -> &Path {
        &self.ready
    }

    /// Returns a directory the test may use, removed with the daemon.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends SIGKILL, as a crash or `kill -9` would, and waits for the daemon to die.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.wait_exit();
    }

    /// Returns the daemon's standard error so far.
    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Returns every event written so far. A last line without its newline is still being
    /// written, so it is left for the next call.
    pub fn events(&self) -> Vec<Value> {
        let text = fs::read_to_string(&self.events).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|error| panic!("invalid JSON line {line:?}: {error}"))
            })
            .collect()
    }

    /// Access events for one process.
    pub fn access_events_of(&self, pid: u32) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|event| event["event_name"] == "credwatch.credential.access")
            .filter(|event| event["attributes"]["process.pid"] == pid)
            .collect()
    }

    /// Events named `event_name` (such as `credwatch.network.connect`) for one process.
    pub fn events_of(&self, event_name: &str, pid: u32) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|event| event["event_name"] == event_name)
            .filter(|event| event["attributes"]["process.pid"] == pid)
            .collect()
    }

    /// Waits for an event that satisfies `matches`, and panics with every event seen otherwise.
    pub fn wait_for(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(event) = self.events().into_iter().find(|event| matches(event)) {
                return event;
            }
            if Instant::now() > deadline {
                panic!(
                    "no event for {what} after {TIMEOUT:?}; events:\n{}\nstderr:\n{}",
                    self.events()
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n"),
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Opens a marker file from the test process and waits for its event. The ring buffer keeps
    /// records in order, so after this returns the daemon has handled every earlier record.
    pub fn barrier(&self) {
        let marker = self
            .dir()
            .join(format!("barrier-{}", unique()))
            .join(MARKER_NAME);
        write_file(&marker, "marker\n");
        fs::read(&marker).expect("read the marker");
        let marker_text = marker.to_string_lossy().into_owned();
        self.wait_for("the barrier marker", |event| {
            event["attributes"]["file.path"] == marker_text.as_str()
        });
    }

    /// Sends SIGUSR1 and returns the health event it produces.
    pub fn request_health(&self) -> Value {
        let before = self.health_events("requested").len();
        self.signal(libc::SIGUSR1);
        self.wait_for("a requested health event", |_| {
            self.health_events("requested").len() > before
        });
        self.health_events("requested")
            .pop()
            .expect("a requested health event")
    }

    /// Health events with the given reason.
    pub fn health_events(&self, reason: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|event| event["event_name"] == "credwatch.monitor.health")
            .filter(|event| event["attributes"]["credwatch.health.reason"] == reason)
            .collect()
    }

    /// Sends SIGTERM and returns the exit status. The events stay readable afterwards.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit()
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill only sends a signal to the daemon this harness started.
        let result = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(result, 0, "failed to signal credwatch");
    }

    /// Waits for the daemon to exit and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for credwatch") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "credwatch did not exit within {TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Returns a number unique within this test process.
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs a command to completion and returns its pid and status.
pub fn run(command: &mut Command) -> (u32, ExitStatus) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("failed to start {command:?}: {error}"));
    let pid = child.id();
    let status = child.wait().expect("wait for the command");
    (pid, status)
}

/// Returns the attribute `key` of an event, as a string.
pub fn attribute<'a>(event: &'a Value, key: &str) -> &'a str {
    event["attributes"][key]
        .as_str()
        .unwrap_or_else(|| panic!("event has no string attribute {key}: {event}"))
}

/// Returns the integer attribute `key` of an event, such as a health counter.
pub fn counter(event: &Value, key: &str) -> u64 {
    event["attributes"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("event has no integer attribute {key}: {event}"))
}
