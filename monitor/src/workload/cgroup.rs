//! Resolving cgroup v2 ids to paths.
//!
//! The kernel stamps each record with `bpf_get_current_cgroup_id()`, the inode number of the
//! task's cgroup v2 directory. The daemon maps it back to a path below the cgroup2 mount,
//! which it discovers in `/proc/self/mountinfo`: it is `/sys/fs/cgroup` on unified hosts and
//! `/sys/fs/cgroup/unified` on hybrid ones. The id is also the cgroup's file handle, so
//! `open_by_handle_at` opens the directory directly; a walk of the mount is the fallback. A
//! cgroup usually outlives the processes in it, so this works for processes that have
//! already exited, unlike reading `/proc/PID/cgroup`.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Minimum time between two walks of the hierarchy for unknown ids.
const RESCAN_AFTER: Duration = Duration::from_secs(1);
/// Directories visited in one walk at most, so a huge hierarchy cannot stall the daemon.
const MAX_WALK: usize = 200_000;

/// Finds the mount point of the cgroup2 file system in `/proc/self/mountinfo` text.
pub fn find_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let fstype = after.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        let mount_point = before.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_mountinfo(mount_point)))
    })
}

/// Undoes the octal escapes (`\040` for a space) that mountinfo uses in paths.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b));
        if escaped {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `FILEID_KERNFS`, the file handle type of kernfs files such as cgroup directories.
const FILEID_KERNFS: i32 = 0xfe;

/// Handle of a cgroup directory for `open_by_handle_at`: the `file_handle` header followed by
/// the 64-bit cgroup id.
#[repr(C)]
struct CgroupHandle {
    handle_bytes: u32,
    handle_type: i32,
    id: u64,
}

/// Opens the cgroup directory whose id is `id` through its file handle and returns its path
/// relative to `root`, starting with `/`. Needs `CAP_DAC_READ_SEARCH`; any failure (a removed
/// cgroup, an older kernel) gives `None`.
fn path_by_handle(root: &Path, id: u64) -> Option<String> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

    let mount = fs::File::open(root).ok()?;
    let mut handle = CgroupHandle {
        handle_bytes: size_of::<u64>() as u32,
        handle_type: FILEID_KERNFS,
        id,
    };
    // SAFETY: `handle` starts with the `file_handle` header and is followed by `handle_bytes`
    // bytes of handle, as the call expects. `mount` is an open directory of the cgroup2 mount.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount.as_raw_fd(),
            (&raw mut handle).cast::<libc::file_handle>(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    let directory = unsafe { OwnedFd::from_raw_fd(fd) };
    let absolute = fs::read_link(format!("/proc/self/fd/{}", directory.as_raw_fd())).ok()?;
    let relative = absolute.strip_prefix(root).ok()?;
    Some(format!("/{}", relative.display()))
}

/// Reads the cgroup v2 path (`0::PATH`) of a process from `/proc/PID/cgroup`.
fn proc_cgroup_path(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    Some(path.trim_end().to_owned())
}

/// Cache of cgroup id to path (relative to the cgroup2 root, starting with `/`).
#[derive(Debug)]
pub struct CgroupResolver {
    root: Option<PathBuf>,
    paths: HashMap<u64, String>,
    last_walk: Option<Instant>,
}

impl CgroupResolver {
    /// A resolver for the host's cgroup2 mount, if there is one.
    pub fn discover() -> Self {
        let root = fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|text| find_cgroup2_mount(&text));
        match &root {
            Some(root) => tracing::info!(path = %root.display(), "found the cgroup v2 hierarchy"),
            None => tracing::warn!(
                "no cgroup v2 hierarchy is mounted; events will carry no cgroup path"
            ),
        }
        Self::with_root(root)
    }

    /// A resolver for a given root, or none.
    pub fn with_root(root: Option<PathBuf>) -> Self {
        Self {
            root,
            paths: HashMap::new(),
            last_walk: None,
        }
    }

    /// The cgroup2 mount point.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// The path of a cgroup id: from the cache, by its file handle, or by walking the
    /// hierarchy again when the id is new.
    pub fn path(&mut self, id: u64) -> Option<&str> {
        if !self.paths.contains_key(&id)
            && let Some(root) = &self.root
            && let Some(path) = path_by_handle(root, id)
        {
            self.paths.insert(id, path);
        }
        if !self.paths.contains_key(&id) && self.may_walk() {
            self.walk();
        }
        self.paths.get(&id).map(String::as_str)
    }

    /// Returns the path of a process's cgroup: from the cache, else from `/proc/PID/cgroup` when the
    /// directory it names has the inode `id` (so a process that moved meanwhile is not
    /// misattributed), else from a new walk of the hierarchy.
    pub fn path_of_process(&mut self, id: u64, pid: u32) -> Option<&str> {
        if !self.paths.contains_key(&id)
            && let Some(root) = &self.root
            && let Some(path) = proc_cgroup_path(pid)
            && fs::metadata(root.join(path.trim_start_matches('/')))
                .is_ok_and(|meta| meta.ino() == id)
        {
            self.paths.insert(id, path);
        }
        self.path(id)
    }

    fn may_walk(&self) -> bool {
        self.root.is_some() && self.last_walk.is_none_or(|at| at.elapsed() >= RESCAN_AFTER)
    }

    fn walk(&mut self) {
        let Some(root) = self.root.clone() else {
            return;
        };
        self.last_walk = Some(Instant::now());
        self.paths.clear();
        let mut stack = vec![root.clone()];
        let mut visited = 0;
        while let Some(directory) = stack.pop() {
            visited += 1;
            if visited > MAX_WALK {
                tracing::warn!(
                    limit = MAX_WALK,
                    "cgroup hierarchy too large to index fully"
                );
                break;
            }
            let Ok(metadata) = fs::metadata(&directory) else {
                continue;
            };
            let relative = directory.strip_prefix(&root).unwrap_or(Path::new(""));
            self.paths
                .insert(metadata.ino(), format!("/{}", relative.display()));
            let Ok(children) = fs::read_dir(&directory) else {
                continue;
            };
            for child in children.flatten() {
                if child.file_type().is_ok_and(|kind| kind.is_dir()) {
                    stack.push(child.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cgroup_is_found_by_handle() {
        // SAFETY: geteuid only reads the caller's credentials.
        let root_user = unsafe { libc::geteuid() } == 0;
        let mount = fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|text| find_cgroup2_mount(&text));
        let (Some(mount), true) = (mount, root_user) else {
            eprintln!("needs root and a cgroup v2 mount; skipped");
            return;
        };
        let own = proc_cgroup_path(std::process::id()).unwrap();
        let id = fs::metadata(mount.join(own.trim_start_matches('/')))
            .unwrap()
            .ino();

        assert_eq!(path_by_handle(&mount, id).as_deref(), Some(own.as_str()));
        assert_eq!(path_by_handle(&mount, u64::MAX), None);
    }

    #[test]
    fn hybrid_layout_mount_is_found() {
        let mountinfo = "25 1 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                         26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n\
                         27 25 0:25 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(
            find_cgroup2_mount(mountinfo),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn unified_layout_mount_is_found() {
        let mountinfo =
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            find_cgroup2_mount(mountinfo),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn no_cgroup2_gives_none() {
        assert_eq!(
            find_cgroup2_mount("22 1 0:5 / /proc rw - proc proc rw\n"),
            None
        );
    }

    #[test]
    fn escaped_mount_point_is_decoded() {
        let mountinfo = "30 23 0:26 / /mnt/my\\040cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            find_cgroup2_mount(mountinfo),
            Some(PathBuf::from("/mnt/my cgroup"))
        );
    }

    #[test]
    fn walk_maps_inodes_to_paths() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("a.slice/b.scope")).unwrap();
        let inode = fs::metadata(root.path().join("a.slice/b.scope"))
            .unwrap()
            .ino();
        let mut resolver = CgroupResolver::with_root(Some(root.path().to_path_buf()));
        assert_eq!(resolver.path(inode), Some("/a.slice/b.scope"));
        let root_inode = fs::metadata(root.path()).unwrap().ino();
        assert_eq!(resolver.path(root_inode), Some("/"));
    }
}
