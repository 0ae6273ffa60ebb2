//! The process cache: what the daemon has learned about each live process, keyed by pid.
//!
//! Entries come from exec records (which carry the file name and arguments captured in the
//! kernel, so they survive a process that exits at once), from a `/proc` scan at start-up, and
//! from `/proc` on demand for processes that forked without exec. Exit records remove them.

use std::{
    collections::HashMap,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{procfs, redact};
use crate::sensor::decode::ExecEvent;

/// Entries kept before the cache sweeps out processes that no longer exist, which only happens
/// when exit records were lost.
const MAX_ENTRIES: usize = 65_536;

/// How long a cached pid counts as checked against the running process's start time. The
/// check reads `/proc/PID/stat`, which cost more than the rest of an event when it ran for
/// every record of a busy process. A pid is only reused after its exit record was lost and
/// the kernel went once through every pid.
const REUSE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Facts about one process. Every field may be missing when the process was
/// gone before it could be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: Option<u32>,
    /// Absolute path of the executable.
    pub executable: Option<PathBuf>,
    /// Command line with secret-looking arguments redacted.
    pub command_line: Option<String>,
    /// Whether the kernel cut the arguments at its 1,023-byte limit.
    pub command_line_truncated: bool,
    /// Process start time, nanoseconds since boot.
    pub start_boot_ns: Option<u64>,
    /// Whether the process has a controlling terminal, when `/proc` could be read.
    pub tty: Option<bool>,
    /// Whether the process or one of its ancestors has a controlling terminal: a person may
    /// be behind it. `None` when neither the process nor any ancestor could be read.
    pub interactive: Option<bool>,
    /// Executable names of the parent, grandparent and so on, nearest first, at most
    /// [`MAX_ANCESTORS`], as far as they are known.
    pub ancestors: Vec<String>,
}

/// Most ancestors kept per process.
pub const MAX_ANCESTORS: usize = 8;

impl ProcessInfo {
    /// Returns the last component of the executable path.
    pub fn executable_name(&self) -> Option<String> {
        let name = self.executable.as_deref()?.file_name()?;
        Some(name.to_string_lossy().into_owned())
    }
}

/// Cache of live processes.
#[derive(Debug)]
pub struct ProcessCache {
    entries: HashMap<u32, Arc<ProcessInfo>>,
    /// When each cached pid was last found to still be the cached process.
    checked: HashMap<u32, Instant>,
    clock_ticks_per_second: u64,
    pids_reused: u64,
}

impl Default for ProcessCache {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessCache {
    /// Creates an empty cache.
    pub fn new() -> Self {
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Self {
            entries: HashMap::new(),
            checked: HashMap::new(),
            clock_ticks_per_second: u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100),
            pids_reused: 0,
        }
    }

    /// Loads every process in `/proc`, skipping the ones that exit meanwhile. Returns how many
    /// were loaded.
    pub fn scan(&mut self) -> usize {
        let pids = match procfs::list_pids() {
            Ok(pids) => pids,
            Err(error) => {
                tracing::warn!(%error, "cannot list /proc; processes started before credwatch are loaded on first use");
                return 0;
            }
        };
        for pid in pids {
            if let Some(info) = self.load_from_proc(pid) {
                self.entries.insert(pid, Arc::new(info));
            }
        }
        // Parents may come after their children in /proc, so the lineage is filled in once
        // every process is known.
        let pids: Vec<u32> = self.entries.keys().copied().collect();
        for pid in pids {
            let mut info = ProcessInfo::clone(&self.entries[&pid]);
            self.fill_lineage(&mut info);
            self.entries.insert(pid, Arc::new(info));
        }
        self.entries.len()
    }

    /// Records an exec: the kernel's data first, `/proc` for what the kernel could not read.
    pub fn exec(&mut self, event: &ExecEvent) -> Arc<ProcessInfo> {
        let executable = procfs::read_exe(event.pid)
            .ok()
            .or_else(|| executable_from_filename(&event.filename));
        let command_line = if event.args.is_empty() {
            procfs::read_cmdline(event.pid)
                .ok()
                .map(|raw| redacted_command_line(&raw))
        } else {
            Some(redacted_command_line(&event.args))
        };
        let stat = procfs::read_stat(event.pid).ok();
        let ppid = event.ppid.or_else(|| stat.as_ref().map(|stat| stat.ppid));
        let mut info = ProcessInfo {
            pid: event.pid,
            ppid,
            executable,
            command_line,
            command_line_truncated: event.args_truncated,
            start_boot_ns: event.start_boot_ns,
            tty: stat.map(|stat| stat.tty_nr != 0),
            ..ProcessInfo::default()
        };
        self.fill_lineage(&mut info);
        let info = Arc::new(info);
        self.insert(event.pid, Arc::clone(&info));
        info
    }

    /// Returns the cached process, loading it from `/proc` when unknown. A process that is
    /// already gone yields an entry with only the pid, which is not cached.
    ///
    /// Processes are distinguished by pid and start time: when the process now running under a
    /// cached pid started at another time, its exit record was lost and the pid reused, so
    /// the entry is loaded again. A process that is gone keeps its cached entry, because the
    /// record being handled is its own. Each pid is checked at most once per
    /// [`REUSE_CHECK_INTERVAL`].
    pub fn get_or_load(&mut self, pid: u32) -> Arc<ProcessInfo> {
        if self.entries.contains_key(&pid) {
            let due = self.reuse_check_due(pid);
            let info = &self.entries[&pid];
            if !due || !self.pid_was_reused(info) {
                return Arc::clone(info);
            }
            self.pids_reused += 1;
            tracing::debug!(pid, "a cached pid belongs to a new process; reloading it");
            self.entries.remove(&pid);
        }
        match self.load_from_proc(pid) {
            Some(mut info) => {
                self.fill_lineage(&mut info);
                let info = Arc::new(info);
                self.insert(pid, Arc::clone(&info));
                info
            }
            None => Arc::new(ProcessInfo {
                pid,
                ..ProcessInfo::default()
            }),
        }
    }

    /// Tells whether the pid's start time is due for a check, and counts the check as done.
    fn reuse_check_due(&mut self, pid: u32) -> bool {
        let now = Instant::now();
        match self.checked.get(&pid) {
            Some(last) if now.duration_since(*last) < REUSE_CHECK_INTERVAL => false,
            _ => {
                self.checked.insert(pid, now);
                true
            }
        }
    }

    /// Tells whether the process running under `info.pid` started at another time than the
    /// cached one. Start times are compared at the clock-tick resolution of `/proc`.
    fn pid_was_reused(&self, info: &ProcessInfo) -> bool {
        let Some(cached) = info.start_boot_ns else {
            return false;
        };
        let Ok(stat) = procfs::read_stat(info.pid) else {
            return false;
        };
        let tick_ns = 1_000_000_000 / self.clock_ticks_per_second;
        let running = stat.start_ticks.saturating_mul(tick_ns);
        cached.abs_diff(running) > tick_ns
    }

    /// Returns how many cached pids turned out to belong to a new process.
    pub fn pids_reused(&self) -> u64 {
        self.pids_reused
    }

    /// Forgets an exited process.
    pub fn exit(&mut self, pid: u32) {
        self.entries.remove(&pid);
        self.checked.remove(&pid);
    }

    /// Number of cached processes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(&mut self, pid: u32, info: Arc<ProcessInfo>) {
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&pid) {
            self.sweep();
        }
        self.entries.insert(pid, info);
    }

    /// Drops entries whose process no longer exists.
    fn sweep(&mut self) {
        let before = self.entries.len();
        self.entries.retain(|pid, _| procfs::pid_dir(*pid).exists());
        let entries = &self.entries;
        self.checked.retain(|pid, _| entries.contains_key(pid));
        tracing::info!(
            before,
            after = self.entries.len(),
            "swept exited processes from the cache; exit records were lost"
        );
    }

    fn load_from_proc(&self, pid: u32) -> Option<ProcessInfo> {
        let stat = procfs::read_stat(pid).ok()?;
        let start_ns = stat.start_ticks.saturating_mul(1_000_000_000) / self.clock_ticks_per_second;
        Some(ProcessInfo {
            pid,
            ppid: Some(stat.ppid),
            executable: procfs::read_exe(pid).ok(),
            command_line: procfs::read_cmdline(pid)
                .ok()
                .map(|raw| redacted_command_line(&raw)),
            command_line_truncated: false,
            start_boot_ns: Some(start_ns),
            tty: Some(stat.tty_nr != 0),
            ..ProcessInfo::default()
        })
    }

    /// Fills `ancestors` and `interactive` from the cached parent chain.
    fn fill_lineage(&self, info: &mut ProcessInfo) {
        let mut ancestors = Vec::new();
        let mut interactive = info.tty;
        let mut next = info.ppid;
        let mut seen = 0;
        while let Some(ppid) = next.filter(|&ppid| ppid != 0 && ppid != info.pid) {
            let Some(parent) = self.entries.get(&ppid) else {
                break;
            };
            if ancestors.len() < MAX_ANCESTORS {
                ancestors.push(
                    parent
                        .executable_name()
                        .unwrap_or_else(|| format!("pid {ppid}")),
                );
            }
            if parent.tty == Some(true) {
                interactive = Some(true);
            } else if interactive.is_none() {
                interactive = parent.tty;
            }
            seen += 1;
            // The chain ends at init; a cycle (a reused pid) ends it too.
            if seen > 64 {
                break;
            }
            next = parent.ppid;
        }
        info.ancestors = ancestors;
        info.interactive = interactive;
    }
}

/// Splits, redacts and joins a NUL-separated argument buffer.
pub fn redacted_command_line(raw: &[u8]) -> String {
    let args = redact::split_cmdline(raw);
    redact::command_line(&redact::redact_args(&args))
}

/// Returns the exec file name as an executable path, when it is absolute. A relative name (`./app`)
/// would need the working directory at exec time, which is not kept.
fn executable_from_filename(filename: &[u8]) -> Option<PathBuf> {
    if filename.first() != Some(&b'/') {
        return None;
    }
    Some(Path::new(std::ffi::OsStr::from_bytes(filename)).to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec_event(pid: u32, filename: &[u8], args: &[u8]) -> ExecEvent {
        ExecEvent {
            pid,
            ppid: Some(1),
            uid: 0,
            gid: 0,
            args_truncated: false,
            start_boot_ns: Some(5),
            boot_ns: 6,
            cgroup_id: 1,
            filename: filename.to_vec(),
            args: args.to_vec(),
        }
    }

    #[test]
    fn exec_of_gone_process_uses_kernel_data() {
        let mut cache = ProcessCache::new();
        // pid_max is at most 2^22, so this pid cannot exist.
        let pid = 4_194_304 + 17;
        let info = cache.exec(&exec_event(pid, b"/usr/bin/cat", b"cat\0/tmp/x\0"));
        assert_eq!(info.executable.as_deref(), Some(Path::new("/usr/bin/cat")));
        assert_eq!(info.command_line.as_deref(), Some("cat /tmp/x"));
        assert_eq!(info.ppid, Some(1));
        assert_eq!(
            cache.get_or_load(pid).executable_name().as_deref(),
            Some("cat")
        );
    }

    #[test]
    fn exec_redacts_arguments() {
        let mut cache = ProcessCache::new();
        let info = cache.exec(&exec_event(
            4_194_304 + 18,
            b"/usr/bin/app",
            b"app\0--password\0hunter2-made-up\0",
        ));
        let command_line = info.command_line.as_deref().unwrap();
        assert!(!command_line.contains("hunter2-made-up"), "{command_line}");
    }

    #[test]
    fn lineage_follows_cached_parents() {
        let mut cache = ProcessCache::new();
        let base = 4_194_304 + 40;
        let entry = |pid, ppid, exe: &str, tty| ProcessInfo {
            pid,
            ppid: Some(ppid),
            executable: Some(PathBuf::from(exe)),
            tty,
            ..ProcessInfo::default()
        };
        cache.insert(
            base,
            Arc::new(entry(base, 1, "/usr/sbin/sshd", Some(false))),
        );
        cache.insert(
            base + 1,
            Arc::new(entry(base + 1, base, "/usr/bin/bash", Some(true))),
        );
        cache.insert(
            base + 2,
            Arc::new(entry(base + 2, 1, "/usr/bin/containerd", Some(false))),
        );

        let mut shell_child = entry(base + 3, base + 1, "/usr/bin/cat", Some(false));
        cache.fill_lineage(&mut shell_child);
        let mut daemon_child = entry(base + 4, base + 2, "/usr/bin/app", Some(false));
        cache.fill_lineage(&mut daemon_child);
        let mut unknown = entry(base + 5, base + 99, "/usr/bin/x", None);
        cache.fill_lineage(&mut unknown);

        assert_eq!(shell_child.ancestors, ["bash", "sshd"]);
        assert_eq!(shell_child.interactive, Some(true));
        assert_eq!(daemon_child.ancestors, ["containerd"]);
        assert_eq!(daemon_child.interactive, Some(false));
        assert!(unknown.ancestors.is_empty());
        assert_eq!(unknown.interactive, None);
    }

    /// Returns an entry for the same pid that started a minute earlier with another
    /// executable, as a lost exit record leaves behind.
    fn earlier_process(real: &ProcessInfo) -> ProcessInfo {
        ProcessInfo {
            executable: Some(PathBuf::from("/usr/bin/old-program")),
            start_boot_ns: real
                .start_boot_ns
                .map(|ns| ns.saturating_sub(60_000_000_000)),
            ..real.clone()
        }
    }

    #[test]
    fn reused_pid_is_loaded_again() {
        let mut cache = ProcessCache::new();
        let pid = std::process::id();
        let real = cache.get_or_load(pid);
        cache.insert(pid, Arc::new(earlier_process(&real)));

        let loaded = cache.get_or_load(pid);
        let again = cache.get_or_load(pid);

        assert_eq!(loaded.executable, real.executable);
        assert_eq!(cache.pids_reused(), 1);
        assert!(
            Arc::ptr_eq(&loaded, &again),
            "an entry that matches is kept"
        );
    }

    #[test]
    fn reuse_is_checked_at_most_once_per_interval() {
        let mut cache = ProcessCache::new();
        let pid = std::process::id();
        let real = cache.get_or_load(pid);
        // The next lookup checks the start time once; after it, a changed entry is served
        // without reading /proc until the interval has passed.
        let _ = cache.get_or_load(pid);
        cache.insert(pid, Arc::new(earlier_process(&real)));
        let served = cache.get_or_load(pid);
        assert_eq!(
            served.executable.as_deref(),
            Some(Path::new("/usr/bin/old-program"))
        );
        assert_eq!(cache.pids_reused(), 0);

        cache
            .checked
            .insert(pid, Instant::now() - REUSE_CHECK_INTERVAL);
        let reloaded = cache.get_or_load(pid);
        assert_eq!(reloaded.executable, real.executable);
        assert_eq!(cache.pids_reused(), 1);
    }

    #[test]
    fn exit_forgets_process() {
        let mut cache = ProcessCache::new();
        let pid = 4_194_304 + 19;
        cache.exec(&exec_event(pid, b"/usr/bin/cat", b"cat\0"));
        cache.exit(pid);
        assert_eq!(cache.get_or_load(pid).executable, None);
    }

    #[test]
    fn own_process_loads_from_proc() {
        let mut cache = ProcessCache::new();
        let info = cache.get_or_load(std::process::id());
        assert!(info.executable.is_some());
        assert!(info.start_boot_ns.is_some());
    }

    #[test]
    fn relative_exec_filename_is_not_an_executable_path() {
        assert_eq!(executable_from_filename(b"./app"), None);
        assert_eq!(
            executable_from_filename(b"/bin/sh"),
            Some(PathBuf::from("/bin/sh"))
        );
    }
}
