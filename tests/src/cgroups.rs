//! Cgroup v2 hierarchies made by the tests, to place a process in a container, pod or
//! systemd unit the way each runtime names them. Every cgroup is removed again, also when a
//! test fails.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use serde_json::Value;

use crate::{Daemon, contract::assert_documented, unique};

/// Returns the cgroup v2 mount point, from `/proc/self/mountinfo`.
pub fn cgroup2_root() -> PathBuf {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split_whitespace().next() == Some("cgroup2"))
                .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap()))
        })
        .expect("a cgroup v2 hierarchy is mounted")
}

/// A cgroup directory chain made by a test, removed deepest first on drop.
pub struct TestCgroup {
    directories: Vec<PathBuf>,
}

impl TestCgroup {
    /// Creates `relative` below a directory of its own under the cgroup v2 root.
    pub fn create(relative: &str) -> Self {
        let mut directories = Vec::new();
        let mut path = cgroup2_root().join(format!(
            "credwatch-test-{}-{}",
            std::process::id(),
            unique()
        ));
        fs::create_dir(&path).expect("create the test cgroup");
        directories.push(path.clone());
        for part in relative.split('/').filter(|part| !part.is_empty()) {
            path = path.join(part);
            fs::create_dir(&path).expect("create a nested test cgroup");
            directories.push(path.clone());
        }
        Self { directories }
    }

    /// Returns the deepest directory.
    pub fn leaf(&self) -> &Path {
        self.directories.last().unwrap()
    }

    /// Moves process `pid` into the deepest directory.
    pub fn enter(&self, pid: u32) {
        fs::write(self.leaf().join("cgroup.procs"), pid.to_string())
            .expect("move the process into the test cgroup");
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for directory in self.directories.iter().rev() {
            let _ = fs::remove_dir(directory);
        }
    }
}

/// A shell that waits for a line on its standard input, then reads `file` with `cat`.
pub struct WaitingReader {
    child: Child,
}

impl WaitingReader {
    /// Starts the shell, which waits.
    pub fn start(file: &Path) -> Self {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"read go; exec cat "$1" > /dev/null"#)
            .arg("sh")
            .arg(file)
            .stdin(Stdio::piped())
            .spawn()
            .expect("start the reader");
        Self { child }
    }

    /// Returns the shell's pid, which `cat` keeps through `exec`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets the reader run, waits for it and returns its pid.
    pub fn go(mut self) -> u32 {
        let pid = self.child.id();
        let mut stdin = self.child.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
        drop(stdin);
        assert!(self.child.wait().unwrap().success());
        pid
    }
}

impl Drop for WaitingReader {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads `file` from a process inside a cgroup at `relative` and returns its event.
pub fn read_file_inside(daemon: &Daemon, file: &Path, relative: &str) -> Value {
    let cgroup = TestCgroup::create(relative);
    let reader = WaitingReader::start(file);
    cgroup.enter(reader.pid());
    let pid = reader.go();
    let text = file.to_string_lossy().into_owned();
    let event = daemon.wait_for("the access event from the test cgroup", |event| {
        event["attributes"]["file.path"] == text.as_str()
            && event["attributes"]["process.pid"] == pid
    });
    assert_documented(&event);
    drop(cgroup);
    event
}
