//! Runs the real programs under test (curl, wget, `openssl s_client`, gnutls-cli, python3 and
//! credwatch itself) with a time limit, and keeps their output for failure messages.

use std::{
    fs::File,
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use crate::TIMEOUT;

/// The Debian python3 whose `ssl` module links the system libssl; `python3` on `PATH` may be
/// another build.
pub const PYTHON3: &str = "/usr/bin/python3";

/// Proxy variables that curl, wget and python read. The clients must connect straight to the
/// loopback servers of the tests, never through a proxy, so these are removed.
const PROXY_VARIABLES: [&str; 8] = [
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
];

/// Builds a command for `program` with no proxy variables in its environment.
pub fn client(program: &str) -> Command {
    let mut command = Command::new(program);
    for variable in PROXY_VARIABLES {
        command.env_remove(variable);
    }
    command
}

/// Returns the executable name that credwatch reports for `path`: the last component after
/// symbolic links are resolved (`/usr/bin/python3` is `python3.11` on Debian 12).
pub fn executable_name(path: &str) -> String {
    let resolved = std::fs::canonicalize(path)
        .unwrap_or_else(|error| panic!("{path} is missing ({error}); run `cargo xtask setup`"));
    resolved
        .file_name()
        .expect("an executable has a file name")
        .to_string_lossy()
        .into_owned()
}

/// A program that ran to completion.
#[derive(Debug)]
pub struct Finished {
    /// Its process id.
    pub pid: u32,
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Finished {
    /// Panics with the output unless the program exited 0.
    pub fn assert_success(&self) {
        assert!(
            self.status.success(),
            "pid {} exited with {}; stdout:\n{}\nstderr:\n{}",
            self.pid,
            self.status,
            self.stdout,
            self.stderr
        );
    }

    /// Panics with the output if the program exited 0.
    pub fn assert_failure(&self) {
        assert!(
            !self.status.success(),
            "pid {} was expected to fail; stdout:\n{}\nstderr:\n{}",
            self.pid,
            self.stdout,
            self.stderr
        );
    }
}

/// A running program whose standard input is a pipe. Dropping it kills the program by its pid.
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: File,
    stderr: File,
    description: String,
}

impl Running {
    /// Returns the process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes `text` to the program's standard input.
    pub fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("standard input is still open");
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|error| panic!("write to {}: {error}", self.description));
    }

    /// Closes the program's standard input.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Panics with the output if the program has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early with {status}; stdout:\n{}\nstderr:\n{}",
                self.description,
                read_all(&mut self.stdout),
                read_all(&mut self.stderr)
            );
        }
    }

    /// Closes standard input, waits for the program to exit and returns its output. Kills it
    /// and panics when it runs longer than [`TIMEOUT`].
    pub fn finish(mut self) -> Finished {
        self.close_stdin();
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the program") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {TIMEOUT:?} and was killed; stdout:\n{}\nstderr:\n{}",
                    self.description,
                    read_all(&mut self.stdout),
                    read_all(&mut self.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Finished {
            pid: self.child.id(),
            status,
            stdout: read_all(&mut self.stdout),
            stderr: read_all(&mut self.stderr),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts a program with a pipe as standard input and temporary files as its output.
pub fn spawn(command: &mut Command) -> Running {
    let stdout = tempfile::tempfile().expect("create a file for standard output");
    let stderr = tempfile::tempfile().expect("create a file for standard error");
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(stdout.try_clone().expect("duplicate the output file"))
        .stderr(stderr.try_clone().expect("duplicate the output file"))
        .spawn()
        .unwrap_or_else(|error| {
            panic!("failed to start {description}: {error}; run `cargo xtask setup`")
        });
    let stdin = child.stdin.take();
    Running {
        child,
        stdin,
        stdout,
        stderr,
        description,
    }
}

/// Runs a program with standard input closed, and returns its pid, status and output. Kills
/// it and panics when it runs longer than [`TIMEOUT`].
pub fn run_to_end(command: &mut Command) -> Finished {
    spawn(command).finish()
}

/// Runs a program with `input` as its standard input, like [`run_to_end`].
pub fn run_with_input(command: &mut Command, input: &str) -> Finished {
    let mut running = spawn(command);
    running.send(input);
    running.finish()
}

fn read_all(file: &mut File) -> String {
    let mut text = String::new();
    if file.seek(SeekFrom::Start(0)).is_ok() {
        let _ = file.read_to_string(&mut text);
    }
    text
}
