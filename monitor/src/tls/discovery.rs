//! Finding TLS libraries: on the host, in a process's memory map, in its mount namespace.

use std::{
    collections::BTreeSet,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use super::library::{LIBRARY_NAMES, is_library_name};

/// Directories where distributions install shared libraries.
fn library_directories() -> Vec<PathBuf> {
    let arch = std::env::consts::ARCH;
    [
        format!("/usr/lib/{arch}-linux-gnu"),
        format!("/lib/{arch}-linux-gnu"),
        "/usr/lib64".to_owned(),
        "/lib64".to_owned(),
        "/usr/lib".to_owned(),
        "/lib".to_owned(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

/// Lists the TLS libraries installed on the host, one canonical path per file, because
/// symbolic links and the `/lib` to `/usr/lib` merge give one file several names.
pub fn host_libraries() -> Vec<PathBuf> {
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for directory in library_directories() {
        for name in LIBRARY_NAMES {
            let path = directory.join(name);
            if let Ok(canonical) = std::fs::canonicalize(&path)
                && seen.insert(canonical.clone())
            {
                found.push(canonical);
            }
        }
    }
    found
}

/// Lists the process ids in `/proc`.
pub fn pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Lists the files named like TLS libraries in a process's memory map, as paths in the
/// process's mount namespace, or `None` when the process is gone.
pub fn mapped_libraries(pid: u32) -> Option<Vec<PathBuf>> {
    let maps = std::fs::read(format!("/proc/{pid}/maps")).ok()?;
    Some(libraries_in_maps(&maps))
}

/// Parses `/proc/PID/maps` text and returns the distinct TLS library paths in it.
pub fn libraries_in_maps(maps: &[u8]) -> Vec<PathBuf> {
    let mut found = BTreeSet::new();
    for line in maps.split(|byte| *byte == b'\n') {
        // address perms offset dev inode pathname: the path starts at the first '/'.
        let Some(start) = line.iter().position(|byte| *byte == b'/') else {
            continue;
        };
        let path = &line[start..];
        let path = path.strip_suffix(b" (deleted)").unwrap_or(path);
        let name = path.rsplit(|byte| *byte == b'/').next().unwrap_or_default();
        if is_library_name(name) {
            found.insert(PathBuf::from(std::ffi::OsStr::from_bytes(path)));
        }
    }
    found.into_iter().collect()
}

/// Returns `path` as seen from the process's root directory, through `/proc/PID/root`.
pub fn in_process_root(pid: u32, path: &Path) -> PathBuf {
    let relative = path.strip_prefix("/").unwrap_or(path);
    Path::new("/proc")
        .join(pid.to_string())
        .join("root")
        .join(relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_give_distinct_library_paths() {
        let maps = b"\
5581a000-5581b000 r--p 00000000 08:01 1234 /usr/bin/curl
7f00a000-7f00b000 r--p 00000000 08:01 2345 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f00b000-7f00c000 r-xp 00001000 08:01 2345 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f00c000-7f00d000 r--p 00000000 00:2a 99 /opt/app lib/libgnutls.so.30 (deleted)
7f00d000-7f00e000 rw-p 00000000 00:00 0 [heap]
7f00e000-7f00f000 r--p 00000000 08:01 3456 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
";
        let found = libraries_in_maps(maps);
        assert_eq!(
            found,
            vec![
                PathBuf::from("/opt/app lib/libgnutls.so.30"),
                PathBuf::from("/usr/lib/x86_64-linux-gnu/libssl.so.3"),
            ]
        );
    }

    #[test]
    fn paths_are_reached_through_the_process_root() {
        assert_eq!(
            in_process_root(42, Path::new("/usr/lib/libssl.so.3")),
            PathBuf::from("/proc/42/root/usr/lib/libssl.so.3")
        );
    }

    #[test]
    fn own_process_is_listed() {
        assert!(pids().contains(&std::process::id()));
        assert!(mapped_libraries(std::process::id()).is_some());
        assert_eq!(mapped_libraries(u32::MAX), None);
    }
}
