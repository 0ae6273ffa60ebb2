//! Attaching the TLS probes to library files and releasing them.
//!
//! A uprobe belongs to a file (device and inode), not to a path or a process, so each file is
//! attached once, however many processes map it and under whatever path. Files are opened
//! through `/proc/PID/root`, so a library inside a container's mount namespace is reached
//! without entering it, and the probes are attached through `/proc/self/fd/N` of that open
//! file, so the file cannot be swapped between inspection and attachment. A file stays
//! attached while a process that was seen using it runs. Libraries found on the host at start
//! stay attached until the daemon stops.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    fs::File,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    programs::{
        ProgramError, UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope},
    },
};
use monitor_common::tls::cookie;

use super::{
    discovery,
    library::{self, LibraryKind},
};

/// Maximum number of files remembered as not TLS libraries; the set is cleared when full.
const MAX_NOT_TLS: usize = 65_536;
/// Maximum number of processes waiting for their first inspection.
const MAX_QUEUED: usize = 16_384;

/// A file's identity: device and inode.
type FileId = (u64, u64);

/// Facts about an attached library, for the handshake events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibraryInfo {
    /// The implementation.
    pub kind: LibraryKind,
    /// The path under which it was first found, as the process saw it.
    pub path: String,
}

struct Attachment {
    id: u32,
    links: Vec<(&'static str, UProbeLinkId)>,
    users: HashSet<u32>,
    pinned: bool,
    /// Keeps the file open, so `/proc/self/fd/N` stays valid and the inode cannot be reused.
    _file: File,
}

/// Counts for the health event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookStats {
    /// Library files attached since start.
    pub libraries_attached: u64,
    /// Library files released because no process used them any more.
    pub libraries_released: u64,
    /// Probes that failed to attach.
    pub attach_failures: u64,
    /// Processes whose memory map was read.
    pub processes_inspected: u64,
}

/// The TLS probes' attachments.
pub struct TlsHooks {
    next_id: u32,
    by_file: HashMap<FileId, Attachment>,
    libraries: HashMap<u32, LibraryInfo>,
    not_tls: HashSet<FileId>,
    by_pid: HashMap<u32, HashSet<FileId>>,
    queue: VecDeque<(u32, Instant)>,
    delay: Duration,
    /// Counts of what the hooks did.
    pub stats: HookStats,
}

impl TlsHooks {
    /// Hooks with no attachment. New processes are inspected `delay` after their exec.
    pub fn new(delay: Duration) -> Self {
        Self {
            next_id: 1,
            by_file: HashMap::new(),
            libraries: HashMap::new(),
            not_tls: HashSet::new(),
            by_pid: HashMap::new(),
            queue: VecDeque::new(),
            delay,
            stats: HookStats::default(),
        }
    }

    /// Returns what is known about the library with the number a record carries.
    pub fn library(&self, id: u32) -> Option<&LibraryInfo> {
        self.libraries.get(&id)
    }

    /// Number of library files attached now.
    pub fn attached(&self) -> usize {
        self.by_file.len()
    }

    /// Attaches the TLS libraries installed on the host, which stay attached: most processes
    /// load these, and a process that loads one before the daemon handles its open is still covered.
    pub fn attach_host_libraries(&mut self, ebpf: &mut Ebpf) {
        for path in discovery::host_libraries() {
            match open_regular(&path) {
                Ok(file) => self.attach_file(ebpf, file, &path.to_string_lossy(), None),
                Err(error) => {
                    tracing::debug!(path = %path.display(), %error, "cannot open host TLS library")
                }
            }
        }
    }

    /// Inspects every running process.
    pub fn scan_all(&mut self, ebpf: &mut Ebpf) {
        for pid in discovery::pids() {
            self.inspect_process(ebpf, pid);
        }
    }

    /// Queues a process that just executed, to be inspected once its loader has run.
    pub fn exec(&mut self, pid: u32, now: Instant) {
        if self.queue.len() >= MAX_QUEUED {
            self.queue.pop_front();
        }
        self.queue.push_back((pid, now + self.delay));
    }

    /// Inspects the queued processes whose delay has passed.
    pub fn inspect_due(&mut self, ebpf: &mut Ebpf, now: Instant) {
        while let Some(&(pid, due)) = self.queue.front() {
            if due > now {
                break;
            }
            self.queue.pop_front();
            self.inspect_process(ebpf, pid);
        }
    }

    /// Returns whether processes wait for inspection.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Attaches to a file named like a TLS library that a process opened (the loader or
    /// `dlopen`).
    pub fn library_opened(&mut self, ebpf: &mut Ebpf, pid: u32, path: &Path) {
        if !path.is_absolute() {
            // NOTE: a library opened by a relative path is found by the memory-map inspection
            // instead, which reads absolute paths.
            return;
        }
        let in_root = discovery::in_process_root(pid, path);
        match open_regular(&in_root) {
            Ok(file) => self.attach_file(ebpf, file, &path.to_string_lossy(), Some(pid)),
            Err(error) => {
                tracing::debug!(pid, path = %path.display(), %error, "cannot open a library the process opened")
            }
        }
    }

    /// Releases the files only an exited process used.
    pub fn process_exited(&mut self, ebpf: &mut Ebpf, pid: u32) {
        self.queue.retain(|(queued, _)| *queued != pid);
        let Some(files) = self.by_pid.remove(&pid) else {
            return;
        };
        for file in files {
            let release = match self.by_file.get_mut(&file) {
                Some(attachment) => {
                    attachment.users.remove(&pid);
                    attachment.users.is_empty() && !attachment.pinned
                }
                None => false,
            };
            if release && let Some(attachment) = self.by_file.remove(&file) {
                tracing::debug!(
                    library = attachment.id,
                    "released a TLS library no process uses"
                );
                detach(ebpf, attachment);
                self.stats.libraries_released += 1;
            }
        }
    }

    /// Reads a process's memory map and attaches the TLS libraries and the executable.
    fn inspect_process(&mut self, ebpf: &mut Ebpf, pid: u32) {
        self.stats.processes_inspected += 1;
        let Some(paths) = discovery::mapped_libraries(pid) else {
            return;
        };
        for path in paths {
            if let Ok(file) = open_regular(&discovery::in_process_root(pid, &path)) {
                self.attach_file(ebpf, file, &path.to_string_lossy(), Some(pid));
            }
        }
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        if let Ok(file) = open_regular(&exe) {
            let shown = std::fs::read_link(&exe).unwrap_or(exe);
            self.attach_file(ebpf, file, &shown.to_string_lossy(), Some(pid));
        }
    }

    /// Attaches the probes to an open file unless it is attached already or not TLS, and
    /// records `pid` as a user.
    fn attach_file(&mut self, ebpf: &mut Ebpf, file: File, shown: &str, pid: Option<u32>) {
        let Ok(metadata) = file.metadata() else {
            return;
        };
        let id = (metadata.dev(), metadata.ino());
        if let Some(attachment) = self.by_file.get_mut(&id) {
            if let Some(pid) = pid {
                attachment.users.insert(pid);
                self.by_pid.entry(pid).or_default().insert(id);
            }
            return;
        }
        if self.not_tls.contains(&id) {
            return;
        }
        let library = match library::inspect_file(&file) {
            Ok(Some(library)) => library,
            Ok(None) => {
                self.remember_not_tls(id);
                return;
            }
            Err(error) => {
                tracing::debug!(path = shown, %error, "not an ELF file; not a TLS library");
                self.remember_not_tls(id);
                return;
            }
        };

        let number = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let target = format!("/proc/self/fd/{}", file.as_raw_fd());
        let mut links = Vec::with_capacity(library.hooks.len());
        for hook in &library.hooks {
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(hook.offset),
                cookie: Some(cookie::new(
                    hook.function,
                    hook.flags,
                    library.in_init_offset,
                    library.server_offset,
                    number,
                )),
            };
            match attach_program(ebpf, hook.program, point, &target) {
                Ok(link) => links.push((hook.program, link)),
                Err(error) => {
                    self.stats.attach_failures += 1;
                    tracing::warn!(path = shown, symbol = hook.symbol, program = hook.program, error = %error, source = ?std::error::Error::source(&error), "failed to attach a TLS probe");
                }
            }
        }
        if links.is_empty() {
            self.remember_not_tls(id);
            return;
        }
        tracing::info!(
            path = shown,
            library = library.kind.as_str(),
            probes = links.len(),
            pid,
            "attached TLS probes"
        );
        self.stats.libraries_attached += 1;
        self.libraries.insert(
            number,
            LibraryInfo {
                kind: library.kind,
                path: shown.to_owned(),
            },
        );
        let mut users = HashSet::new();
        if let Some(pid) = pid {
            users.insert(pid);
            self.by_pid.entry(pid).or_default().insert(id);
        }
        self.by_file.insert(
            id,
            Attachment {
                id: number,
                links,
                users,
                pinned: pid.is_none(),
                _file: file,
            },
        );
    }

    fn remember_not_tls(&mut self, id: FileId) {
        if self.not_tls.len() >= MAX_NOT_TLS {
            self.not_tls.clear();
        }
        self.not_tls.insert(id);
    }
}

/// Opens a regular file for reading. Anything else is rejected before it is opened, and the
/// open does not block, so a FIFO or device named like a library cannot stall the daemon.
fn open_regular(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;

    let not_regular =
        || std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file");
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    // The path may have been replaced between the check and the open.
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    Ok(file)
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut UProbe, ProgramError> {
    let program = ebpf
        .program_mut(name)
        .ok_or(ProgramError::UnexpectedProgramType)?;
    program.try_into()
}

fn attach_program(
    ebpf: &mut Ebpf,
    program: &'static str,
    point: UProbeAttachPoint<'_>,
    target: &str,
) -> Result<UProbeLinkId, ProgramError> {
    uprobe(ebpf, program)?.attach(point, target, UProbeScope::AllProcesses)
}

fn detach(ebpf: &mut Ebpf, attachment: Attachment) {
    for (program, link) in attachment.links {
        let result = uprobe(ebpf, program).and_then(|probe| probe.detach(link));
        if let Err(error) = result {
            tracing::warn!(program, %error, "failed to detach a TLS probe");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_regular_rejects_fifos_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("libssl.so.3");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `name` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let error = open_regular(&fifo).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
        assert!(open_regular(Path::new("/dev/null")).is_err());
        assert!(open_regular(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn open_regular_opens_files() {
        let own = std::env::current_exe().unwrap();
        assert!(open_regular(&own).unwrap().metadata().unwrap().is_file());
    }
}
