//! Reading a credential file the way the process that opened it sees it, once per version.
//!
//! The file is opened with `openat2(RESOLVE_IN_ROOT)` below `/proc/PID/root`, so symbolic
//! links, including the kubelet's `..data` links, resolve inside the process's root directory:
//! a container cannot point a link at a host file and make the daemon read it. `/proc` magic
//! links are refused, the file must be a regular file, and at most [`MAX_FILE_BYTES`] are
//! read. The version (device, inode, size, modification and change time) comes from the open
//! descriptor, so it describes the bytes that were read even if the path changes meanwhile.

use std::{
    ffi::CString,
    fs::File,
    io::Read as _,
    os::{
        fd::{FromRawFd as _, OwnedFd},
        unix::{ffi::OsStrExt as _, fs::MetadataExt as _},
    },
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::store::FileVersion;

/// Largest credential file the daemon reads. Larger files are reported by type only.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A credential file could not be read.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The open failed: the process is gone, the file was removed, or a link leads outside
    /// the process's root.
    #[error("failed to open {path} in the root of process {pid}")]
    Open {
        /// Process id.
        pid: u32,
        /// Path as the process saw it.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a regular file.
    #[error("{path} in the root of process {pid} is not a regular file")]
    NotRegular {
        /// Process id.
        pid: u32,
        /// Path.
        path: PathBuf,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{path} is {size} bytes, more than the {MAX_FILE_BYTES} bytes credwatch reads")]
    TooLarge {
        /// Path.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// Reading failed.
    #[error("failed to read {path}")]
    Read {
        /// Path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Returns the version of an open file.
pub fn version_of(path: &Path, metadata: &std::fs::Metadata) -> FileVersion {
    FileVersion {
        path: path.to_string_lossy().into_owned(),
        device: metadata.dev(),
        inode: metadata.ino(),
        size: metadata.size(),
        modified_ns: metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec(),
        changed_ns: metadata.ctime() * 1_000_000_000 + metadata.ctime_nsec(),
    }
}

/// Opens `path` as process `pid` resolves it, as the module documentation describes.
pub fn open_in_process_root(pid: u32, path: &Path) -> Result<File, ReadError> {
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    open_beneath(&root, path).map_err(|source| ReadError::Open {
        pid,
        path: path.to_path_buf(),
        source,
    })
}

/// Opens `path` with `root` as the root directory for every link it follows.
pub fn open_beneath(root: &Path, path: &Path) -> std::io::Result<File> {
    let root = File::open(root)?;
    let relative = path.strip_prefix("/").unwrap_or(path);
    let name = CString::new(relative.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut how: libc::open_how = unsafe_zeroed_open_how();
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `root` is an open directory descriptor, `name` a NUL-terminated string and `how`
    // an initialised `open_how` whose size is passed; all outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            std::os::fd::AsRawFd::as_raw_fd(&root),
            name.as_ptr(),
            &raw const how,
            size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    Ok(File::from(owned))
}

fn unsafe_zeroed_open_how() -> libc::open_how {
    // SAFETY: `open_how` is a plain C struct of integers, for which all zero bytes are valid.
    unsafe { std::mem::zeroed() }
}

/// Reads an open credential file up to [`MAX_FILE_BYTES`] and returns its version and bytes.
pub fn read_file(
    file: &mut File,
    pid: u32,
    path: &Path,
) -> Result<(FileVersion, Vec<u8>), ReadError> {
    let metadata = file.metadata().map_err(|source| ReadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !metadata.is_file() {
        return Err(ReadError::NotRegular {
            pid,
            path: path.to_path_buf(),
        });
    }
    let version = version_of(path, &metadata);
    if metadata.size() > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            size: metadata.size(),
        });
    }
    let mut contents = Vec::with_capacity(metadata.size() as usize);
    file.take(MAX_FILE_BYTES)
        .read_to_end(&mut contents)
        .map_err(|source| ReadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Ok((version, contents))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/inside"), "made-up inside").unwrap();
        // An absolute link that would name a host file resolves below `root` instead.
        std::os::unix::fs::symlink("/etc/inside", root.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/hostname", root.join("climb")).unwrap();

        let mut file = open_beneath(root, Path::new("/link")).unwrap();
        let (_, contents) = read_file(&mut file, 1, Path::new("/link")).unwrap();
        assert_eq!(contents, b"made-up inside");
        assert!(open_beneath(root, Path::new("/escape")).is_err());
        assert!(open_beneath(root, Path::new("/climb")).is_err());
    }

    #[test]
    fn versions_change_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "one").unwrap();
        let mut file = open_beneath(dir.path(), Path::new("/token")).unwrap();
        let (first, _) = read_file(&mut file, 1, Path::new("/token")).unwrap();
        std::fs::write(dir.path().join("token"), "second").unwrap();
        let mut file = open_beneath(dir.path(), Path::new("/token")).unwrap();
        let (second, contents) = read_file(&mut file, 1, Path::new("/token")).unwrap();
        assert_eq!(contents, b"second");
        assert_eq!(first.inode, second.inode);
        assert_ne!(first.size, second.size);
    }

    #[test]
    fn directories_and_large_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let mut file = open_beneath(dir.path(), Path::new("/sub")).unwrap();
        assert!(matches!(
            read_file(&mut file, 1, Path::new("/sub")),
            Err(ReadError::NotRegular { .. })
        ));
        let big = File::create(dir.path().join("big")).unwrap();
        big.set_len(MAX_FILE_BYTES + 1).unwrap();
        let mut file = open_beneath(dir.path(), Path::new("/big")).unwrap();
        let error = read_file(&mut file, 1, Path::new("/big"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("/big"), "{error}");
    }

    #[test]
    fn own_process_root_is_the_host_root() {
        let own = std::env::current_exe().unwrap();
        assert!(open_in_process_root(std::process::id(), &own).is_ok());
        let error = open_in_process_root(u32::MAX, Path::new("/etc/hostname"))
            .unwrap_err()
            .to_string();
        assert!(error.contains(&u32::MAX.to_string()), "{error}");
    }
}
