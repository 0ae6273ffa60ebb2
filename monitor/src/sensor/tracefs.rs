//! tracefs: making sure it is mounted while tracepoints are attached, and reading tracepoint
//! format files.
//!
//! aya resolves a tracepoint's id through `/sys/kernel/tracing` (or the older
//! `/sys/kernel/debug/tracing`). Hosts that boot without tracefs mounted (minimal images, some
//! container hosts) still have it compiled in, so the daemon mounts it when missing. It does so
//! in a mount namespace of its own, which receives the host's mounts but sends none back. The
//! mount is then invisible on the host, and two daemons starting at once cannot unmount each
//! other's.
//! Where that namespace cannot be made, the daemon mounts tracefs on the host and unmounts it
//! again once the tracepoints are attached, because an attached tracepoint does not need the
//! mount.

use std::{
    ffi::CString,
    fs, io,
    path::{Path, PathBuf},
};

use thiserror::Error;

/// Mount point the daemon uses when tracefs is not mounted yet.
const TRACEFS_MOUNT_POINT: &str = "/sys/kernel/tracing";
/// Older location, below debugfs.
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// tracefs could not be found, mounted or read.
#[derive(Debug, Error)]
pub enum TracefsError {
    /// Mounting failed.
    #[error(
        "tracefs is not mounted and mounting it on {path} failed; mount it with \
         `mount -t tracefs tracefs {path}` or check that the kernel has CONFIG_TRACING"
    )]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A format file could not be read.
    #[error("failed to read the tracepoint format {path}")]
    ReadFormat {
        /// The format file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A field is missing from a format file.
    #[error(
        "tracepoint {tracepoint} has no field `{field}`; this kernel's layout is not supported"
    )]
    MissingField {
        /// `category/name`.
        tracepoint: String,
        /// Field name.
        field: String,
    },
}

/// A tracefs mount, unmounted on drop if the daemon made it.
#[derive(Debug)]
pub struct Tracefs {
    root: PathBuf,
    mounted_by_us: bool,
}

impl Tracefs {
    /// Finds a mounted tracefs, or mounts one.
    pub fn ensure_mounted() -> Result<Self, TracefsError> {
        for candidate in [TRACEFS_MOUNT_POINT, DEBUGFS_TRACING] {
            if Path::new(candidate).join("events").is_dir() {
                return Ok(Self {
                    root: candidate.into(),
                    mounted_by_us: false,
                });
            }
        }
        let private = match enter_private_mount_namespace() {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, "failed to make a mount namespace of its own; mounting tracefs on the host");
                false
            }
        };
        mount_tracefs(Path::new(TRACEFS_MOUNT_POINT))?;
        if private {
            tracing::info!(
                path = TRACEFS_MOUNT_POINT,
                "mounted tracefs in the daemon's own mount namespace to attach tracepoints"
            );
        } else {
            tracing::info!(
                path = TRACEFS_MOUNT_POINT,
                "mounted tracefs to attach tracepoints; it is unmounted once they are attached"
            );
        }
        Ok(Self {
            root: TRACEFS_MOUNT_POINT.into(),
            mounted_by_us: !private,
        })
    }

    /// Whether the daemon mounted this tracefs on the host, and unmounts it on drop.
    pub fn mounted_by_us(&self) -> bool {
        self.mounted_by_us
    }

    /// Whether the kernel has this tracepoint.
    pub fn has_tracepoint(&self, category: &str, name: &str) -> bool {
        self.root.join("events").join(category).join(name).is_dir()
    }

    /// Byte offset of a field in a tracepoint's records.
    pub fn field_offset(
        &self,
        category: &str,
        name: &str,
        field: &str,
    ) -> Result<u32, TracefsError> {
        let path = self
            .root
            .join("events")
            .join(category)
            .join(name)
            .join("format");
        let text = fs::read_to_string(&path)
            .map_err(|source| TracefsError::ReadFormat { path, source })?;
        parse_field_offset(&text, field).ok_or_else(|| TracefsError::MissingField {
            tracepoint: format!("{category}/{name}"),
            field: field.to_owned(),
        })
    }
}

impl Drop for Tracefs {
    fn drop(&mut self) {
        if !self.mounted_by_us {
            return;
        }
        let Ok(path) = CString::new(self.root.as_os_str().as_encoded_bytes()) else {
            return;
        };
        // SAFETY: `path` is a valid NUL-terminated string; MNT_DETACH unmounts lazily even if
        // another process still has a file open in it.
        let result = unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        if result != 0 {
            let error = io::Error::last_os_error();
            tracing::warn!(path = %self.root.display(), %error, "failed to unmount the tracefs the daemon mounted");
        }
    }
}

/// Moves the calling thread, and the threads it starts later, into a new mount namespace that
/// receives the host's mount events but propagates none back.
fn enter_private_mount_namespace() -> io::Result<()> {
    // SAFETY: unshare takes only flags. It gives the calling thread a new mount namespace that
    // starts as a copy of the current mounts.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the pointers are valid NUL-terminated strings or null, as mount(2) allows for a
    // propagation change, which takes no source, file system type or data.
    let result = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        )
    };
    if result != 0 {
        // The copy still shares mount events with the host, so a mount made here would appear
        // there too. The caller therefore treats the mount as a host mount.
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn mount_tracefs(target: &Path) -> Result<(), TracefsError> {
    let to_error = |source| TracefsError::Mount {
        path: target.to_path_buf(),
        source,
    };
    let target_c = CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| to_error(io::Error::from(io::ErrorKind::InvalidInput)))?;
    let fstype = c"tracefs";
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call, and no
    // mount data is passed.
    let result = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if result != 0 {
        return Err(to_error(io::Error::last_os_error()));
    }
    Ok(())
}

/// Finds `offset:N;` on the line declaring `field` in a format file.
pub fn parse_field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let declaration = line.trim().strip_prefix("field:")?;
        let (declaration, rest) = declaration.split_once(';')?;
        let name = declaration.split_whitespace().last()?;
        // Array fields are declared as `char comm[16]`.
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        let offset = rest.trim().strip_prefix("offset:")?;
        offset.split(';').next()?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC_FORMAT: &str = "name: sched_process_exec\nID: 311\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\n\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n\tfield:char comm[16];\toffset:16;\tsize:16;\tsigned:0;\n";

    #[test]
    fn field_offsets_parse() {
        assert_eq!(parse_field_offset(EXEC_FORMAT, "filename"), Some(8));
        assert_eq!(parse_field_offset(EXEC_FORMAT, "pid"), Some(12));
        assert_eq!(parse_field_offset(EXEC_FORMAT, "comm"), Some(16));
    }

    #[test]
    fn missing_field_is_none() {
        assert_eq!(parse_field_offset(EXEC_FORMAT, "old_pid"), None);
        assert_eq!(parse_field_offset("", "pid"), None);
    }
}
