//! Decoding ring-buffer records into typed events.
//!
//! Kernel bytes are never transmuted: each field is read at its `offset_of!` position with
//! `from_ne_bytes`, every length is checked against its buffer, and every enum value against
//! the known ones. A record that fails a check is reported as a [`DecodeError`] and counted;
//! it never panics the daemon.

use std::mem::offset_of;

use monitor_common::{
    catalogue::PATH_LEN,
    directory::{
        DIRECTORY_FAILED, DIRECTORY_FROM_FD, DIRECTORY_MAX_COMPONENTS, DIRECTORY_SLOT_LEN,
        DIRECTORY_TRUNCATED, DirectoryRecord,
    },
    open::{OpenRecord, syscall},
    process::{
        EXEC_ARGS_LEN, EXEC_ARGS_TRUNCATED, EXEC_FILENAME_LEN, EXEC_TASK_MISSING, ExecRecord,
        ExitRecord,
    },
    record::kind,
};
use thiserror::Error;

/// The system call behind an open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenSyscall {
    /// `open(2)`.
    Open,
    /// `openat(2)`.
    Openat,
    /// `openat2(2)`.
    Openat2,
}

impl OpenSyscall {
    /// Returns the system call name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Openat => "openat",
            Self::Openat2 => "openat2",
        }
    }
}

/// A matched open with its result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenEvent {
    /// The system call.
    pub syscall: OpenSyscall,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Catalogue entry the kernel matched.
    pub entry_index: u32,
    /// `MATCH_DEFINITE` or `MATCH_CANDIDATE`.
    pub match_flags: u32,
    /// Directory descriptor, or `AT_FDCWD`.
    pub dfd: i32,
    /// Open flags.
    pub open_flags: u32,
    /// File descriptor, or a negated errno.
    pub result: i64,
    /// Nanoseconds since boot.
    pub boot_ns: u64,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// `PATH_TRUNCATED`, `PATH_RELATIVE`, `PATH_NON_CANONICAL`.
    pub path_flags: u32,
    /// The path as passed to the system call.
    pub path: Vec<u8>,
}

/// A successful exec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    /// Process id.
    pub pid: u32,
    /// Parent process id, when the kernel could read it.
    pub ppid: Option<u32>,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Whether the argument bytes were cut.
    pub args_truncated: bool,
    /// Process start time, nanoseconds since boot, when the kernel could read it.
    pub start_boot_ns: Option<u64>,
    /// Time of the exec, nanoseconds since boot.
    pub boot_ns: u64,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// File name as executed.
    pub filename: Vec<u8>,
    /// NUL-separated arguments; empty when the kernel could not read them.
    pub args: Vec<u8>,
}

/// A process exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitEvent {
    /// Process id.
    pub pid: u32,
    /// Nanoseconds since boot.
    pub boot_ns: u64,
}

/// The directory of a relative open, walked in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryEvent {
    /// Process id.
    pub pid: u32,
    /// Thread id of the open that follows.
    pub tid: u32,
    /// Whether the directory is that of an `openat` descriptor.
    pub from_fd: bool,
    /// The absolute directory, or `None` when the walk failed or was cut short.
    pub path: Option<Vec<u8>>,
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The directory of the next relative open of a thread.
    Directory(DirectoryEvent),
    /// A matched open.
    Open(OpenEvent),
    /// An exec.
    Exec(ExecEvent),
    /// An exit.
    Exit(ExitEvent),
    /// An outbound TCP connection.
    Connect(super::decode_network::ConnectEvent),
    /// A call of a TLS library function.
    Tls(super::decode_network::TlsCall),
}

/// A record that failed validation.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than its kind requires.
    #[error("record of kind {kind} is {len} bytes, expected at least {expected}")]
    TooShort {
        /// Record kind.
        kind: u32,
        /// Bytes received.
        len: usize,
        /// Bytes required.
        expected: usize,
    },
    /// Kind not known to this daemon.
    #[error("record kind {0} is unknown")]
    UnknownKind(u32),
    /// An enum field has an unknown value.
    #[error("record field {field} has unknown value {value}")]
    UnknownValue {
        /// Field name.
        field: &'static str,
        /// Value found.
        value: u32,
    },
    /// A length field exceeds its buffer.
    #[error("record field {field} is {value}, above the maximum {max}")]
    LengthOutOfRange {
        /// Field name.
        field: &'static str,
        /// Value found.
        value: u32,
        /// Largest valid value.
        max: usize,
    },
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let kind = read_u32(bytes, 0).ok_or(DecodeError::TooShort {
        kind: 0,
        len: bytes.len(),
        expected: 4,
    })?;
    match kind {
        kind::OPEN => decode_open(bytes).map(Record::Open),
        kind::EXEC => decode_exec(bytes).map(Record::Exec),
        kind::EXIT => decode_exit(bytes).map(Record::Exit),
        kind::DIRECTORY => decode_directory(bytes).map(Record::Directory),
        kind::CONNECT => super::decode_network::decode_connect(bytes).map(Record::Connect),
        kind::TLS => super::decode_network::decode_tls(bytes).map(Record::Tls),
        other => Err(DecodeError::UnknownKind(other)),
    }
}

fn decode_open(bytes: &[u8]) -> Result<OpenEvent, DecodeError> {
    check_len(bytes, kind::OPEN, size_of::<OpenRecord>())?;
    let u32_at = |offset| read_u32(bytes, offset).unwrap_or_default();
    let u64_at = |offset| read_u64(bytes, offset).unwrap_or_default();

    let syscall = match u32_at(offset_of!(OpenRecord, syscall)) {
        syscall::OPEN => OpenSyscall::Open,
        syscall::OPENAT => OpenSyscall::Openat,
        syscall::OPENAT2 => OpenSyscall::Openat2,
        value => {
            return Err(DecodeError::UnknownValue {
                field: "syscall",
                value,
            });
        }
    };
    let path_len = u32_at(offset_of!(OpenRecord, path_len));
    if path_len as usize >= PATH_LEN {
        return Err(DecodeError::LengthOutOfRange {
            field: "path_len",
            value: path_len,
            max: PATH_LEN - 1,
        });
    }
    let path_start = offset_of!(OpenRecord, path);
    let path = bytes[path_start..path_start + path_len as usize].to_vec();

    Ok(OpenEvent {
        syscall,
        pid: u32_at(offset_of!(OpenRecord, pid)),
        tid: u32_at(offset_of!(OpenRecord, tid)),
        uid: u32_at(offset_of!(OpenRecord, uid)),
        gid: u32_at(offset_of!(OpenRecord, gid)),
        entry_index: u32_at(offset_of!(OpenRecord, entry_index)),
        match_flags: u32_at(offset_of!(OpenRecord, match_flags)),
        dfd: u32_at(offset_of!(OpenRecord, dfd)) as i32,
        open_flags: u32_at(offset_of!(OpenRecord, open_flags)),
        result: u64_at(offset_of!(OpenRecord, result)) as i64,
        boot_ns: u64_at(offset_of!(OpenRecord, boot_ns)),
        cgroup_id: u64_at(offset_of!(OpenRecord, cgroup_id)),
        path_flags: u32_at(offset_of!(OpenRecord, path_flags)),
        path,
    })
}

fn decode_exec(bytes: &[u8]) -> Result<ExecEvent, DecodeError> {
    check_len(bytes, kind::EXEC, size_of::<ExecRecord>())?;
    let u32_at = |offset| read_u32(bytes, offset).unwrap_or_default();
    let u64_at = |offset| read_u64(bytes, offset).unwrap_or_default();

    let filename_len = u32_at(offset_of!(ExecRecord, filename_len));
    if filename_len as usize >= EXEC_FILENAME_LEN {
        return Err(DecodeError::LengthOutOfRange {
            field: "filename_len",
            value: filename_len,
            max: EXEC_FILENAME_LEN - 1,
        });
    }
    let args_len = u32_at(offset_of!(ExecRecord, args_len));
    if args_len as usize >= EXEC_ARGS_LEN {
        return Err(DecodeError::LengthOutOfRange {
            field: "args_len",
            value: args_len,
            max: EXEC_ARGS_LEN - 1,
        });
    }
    let filename_start = offset_of!(ExecRecord, filename);
    let args_start = offset_of!(ExecRecord, args);
    let flags = u32_at(offset_of!(ExecRecord, flags));
    let task_missing = flags & EXEC_TASK_MISSING != 0;

    Ok(ExecEvent {
        pid: u32_at(offset_of!(ExecRecord, pid)),
        ppid: (!task_missing).then(|| u32_at(offset_of!(ExecRecord, ppid))),
        uid: u32_at(offset_of!(ExecRecord, uid)),
        gid: u32_at(offset_of!(ExecRecord, gid)),
        args_truncated: flags & EXEC_ARGS_TRUNCATED != 0,
        start_boot_ns: (!task_missing).then(|| u64_at(offset_of!(ExecRecord, start_boot_ns))),
        boot_ns: u64_at(offset_of!(ExecRecord, boot_ns)),
        cgroup_id: u64_at(offset_of!(ExecRecord, cgroup_id)),
        filename: bytes[filename_start..filename_start + filename_len as usize].to_vec(),
        args: bytes[args_start..args_start + args_len as usize].to_vec(),
    })
}

fn decode_exit(bytes: &[u8]) -> Result<ExitEvent, DecodeError> {
    check_len(bytes, kind::EXIT, size_of::<ExitRecord>())?;
    Ok(ExitEvent {
        pid: read_u32(bytes, offset_of!(ExitRecord, pid)).unwrap_or_default(),
        boot_ns: read_u64(bytes, offset_of!(ExitRecord, boot_ns)).unwrap_or_default(),
    })
}

fn decode_directory(bytes: &[u8]) -> Result<DirectoryEvent, DecodeError> {
    check_len(bytes, kind::DIRECTORY, size_of::<DirectoryRecord>())?;
    let u32_at = |offset| read_u32(bytes, offset).unwrap_or_default();
    let components = u32_at(offset_of!(DirectoryRecord, components));
    if components as usize > DIRECTORY_MAX_COMPONENTS {
        return Err(DecodeError::LengthOutOfRange {
            field: "components",
            value: components,
            max: DIRECTORY_MAX_COMPONENTS,
        });
    }
    let flags = u32_at(offset_of!(DirectoryRecord, flags));
    let usable = flags & (DIRECTORY_FAILED | DIRECTORY_TRUNCATED) == 0;
    let path = if usable {
        Some(directory_path(bytes, components as usize)?)
    } else {
        None
    };
    Ok(DirectoryEvent {
        pid: u32_at(offset_of!(DirectoryRecord, pid)),
        tid: u32_at(offset_of!(DirectoryRecord, tid)),
        from_fd: flags & DIRECTORY_FROM_FD != 0,
        path,
    })
}

/// Joins the slots, outermost first, into an absolute path.
fn directory_path(bytes: &[u8], components: usize) -> Result<Vec<u8>, DecodeError> {
    let lengths = offset_of!(DirectoryRecord, lengths);
    let names = offset_of!(DirectoryRecord, names);
    let mut path = Vec::new();
    for slot in (0..components).rev() {
        let length = bytes[lengths + slot];
        if usize::from(length) >= DIRECTORY_SLOT_LEN {
            return Err(DecodeError::LengthOutOfRange {
                field: "lengths",
                value: u32::from(length),
                max: DIRECTORY_SLOT_LEN - 1,
            });
        }
        let start = names + slot * DIRECTORY_SLOT_LEN;
        path.push(b'/');
        path.extend_from_slice(&bytes[start..start + usize::from(length)]);
    }
    if path.is_empty() {
        path.push(b'/');
    }
    Ok(path)
}

pub(super) fn check_len(bytes: &[u8], kind: u32, expected: usize) -> Result<(), DecodeError> {
    if bytes.len() < expected {
        return Err(DecodeError::TooShort {
            kind,
            len: bytes.len(),
            expected,
        });
    }
    Ok(())
}

pub(super) fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let field = bytes.get(offset..offset + 4)?;
    Some(u32::from_ne_bytes(field.try_into().ok()?))
}

pub(super) fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let field = bytes.get(offset..offset + 8)?;
    Some(u64::from_ne_bytes(field.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use monitor_common::open::AT_FDCWD;

    use super::*;

    fn put_u32(bytes: &mut [u8], offset: usize, value: u32) {
        bytes[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
    }

    fn put_u64(bytes: &mut [u8], offset: usize, value: u64) {
        bytes[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
    }

    fn open_bytes(path: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; size_of::<OpenRecord>()];
        put_u32(&mut bytes, 0, kind::OPEN);
        put_u32(&mut bytes, offset_of!(OpenRecord, syscall), syscall::OPENAT);
        put_u32(&mut bytes, offset_of!(OpenRecord, pid), 42);
        put_u32(&mut bytes, offset_of!(OpenRecord, dfd), AT_FDCWD as u32);
        put_u64(&mut bytes, offset_of!(OpenRecord, result), (-2i64) as u64);
        put_u32(
            &mut bytes,
            offset_of!(OpenRecord, path_len),
            path.len() as u32,
        );
        let start = offset_of!(OpenRecord, path);
        bytes[start..start + path.len()].copy_from_slice(path);
        bytes
    }

    #[test]
    fn open_record_decodes() {
        let Record::Open(open) = decode(&open_bytes(b"/root/.aws/credentials")).unwrap() else {
            panic!("expected an open record");
        };
        assert_eq!(open.pid, 42);
        assert_eq!(open.syscall, OpenSyscall::Openat);
        assert_eq!(open.dfd, AT_FDCWD);
        assert_eq!(open.result, -2);
        assert_eq!(open.path, b"/root/.aws/credentials");
    }

    #[test]
    fn short_record_is_rejected() {
        let bytes = open_bytes(b"/x");
        let error = decode(&bytes[..100]).unwrap_err();
        assert!(
            matches!(
                error,
                DecodeError::TooShort {
                    kind: kind::OPEN,
                    len: 100,
                    ..
                }
            ),
            "{error}"
        );
        assert!(matches!(decode(&[1, 0]), Err(DecodeError::TooShort { .. })));
    }

    #[test]
    fn unknown_kind_is_rejected() {
        let mut bytes = open_bytes(b"/x");
        put_u32(&mut bytes, 0, 99);
        assert_eq!(decode(&bytes), Err(DecodeError::UnknownKind(99)));
    }

    #[test]
    fn unknown_syscall_is_rejected() {
        let mut bytes = open_bytes(b"/x");
        put_u32(&mut bytes, offset_of!(OpenRecord, syscall), 7);
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::UnknownValue {
                field: "syscall",
                value: 7
            })
        );
    }

    #[test]
    fn oversized_path_len_is_rejected() {
        let mut bytes = open_bytes(b"/x");
        put_u32(
            &mut bytes,
            offset_of!(OpenRecord, path_len),
            PATH_LEN as u32,
        );
        assert!(matches!(
            decode(&bytes),
            Err(DecodeError::LengthOutOfRange {
                field: "path_len",
                ..
            })
        ));
    }

    #[test]
    fn exec_record_decodes_and_checks_lengths() {
        let mut bytes = vec![0u8; size_of::<ExecRecord>()];
        put_u32(&mut bytes, 0, kind::EXEC);
        put_u32(&mut bytes, offset_of!(ExecRecord, pid), 7);
        put_u32(&mut bytes, offset_of!(ExecRecord, ppid), 1);
        put_u32(&mut bytes, offset_of!(ExecRecord, filename_len), 3);
        let start = offset_of!(ExecRecord, filename);
        bytes[start..start + 3].copy_from_slice(b"/sh");
        let Record::Exec(exec) = decode(&bytes).unwrap() else {
            panic!("expected exec")
        };
        assert_eq!(exec.filename, b"/sh");
        assert_eq!(exec.ppid, Some(1));
        assert!(exec.args.is_empty());

        put_u32(&mut bytes, offset_of!(ExecRecord, flags), EXEC_TASK_MISSING);
        let Record::Exec(exec) = decode(&bytes).unwrap() else {
            panic!("expected exec")
        };
        assert_eq!(exec.ppid, None);

        put_u32(
            &mut bytes,
            offset_of!(ExecRecord, args_len),
            EXEC_ARGS_LEN as u32,
        );
        assert!(matches!(
            decode(&bytes),
            Err(DecodeError::LengthOutOfRange {
                field: "args_len",
                ..
            })
        ));
    }

    /// Builds a directory record with `names` given innermost first.
    fn directory_bytes(names: &[&[u8]], flags: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; size_of::<DirectoryRecord>()];
        put_u32(&mut bytes, 0, kind::DIRECTORY);
        put_u32(&mut bytes, offset_of!(DirectoryRecord, tid), 77);
        put_u32(&mut bytes, offset_of!(DirectoryRecord, flags), flags);
        put_u32(
            &mut bytes,
            offset_of!(DirectoryRecord, components),
            names.len() as u32,
        );
        for (slot, name) in names.iter().enumerate() {
            bytes[offset_of!(DirectoryRecord, lengths) + slot] = name.len() as u8;
            let start = offset_of!(DirectoryRecord, names) + slot * DIRECTORY_SLOT_LEN;
            bytes[start..start + name.len()].copy_from_slice(name);
        }
        bytes
    }

    #[test]
    fn directory_record_joins_names_outermost_first() {
        let bytes = directory_bytes(&[b".aws", b"alice", b"home"], 0);
        let Record::Directory(directory) = decode(&bytes).unwrap() else {
            panic!("expected a directory record");
        };
        assert_eq!(directory.tid, 77);
        assert_eq!(directory.path.as_deref(), Some(&b"/home/alice/.aws"[..]));
        assert!(!directory.from_fd);
    }

    #[test]
    fn directory_without_components_is_root() {
        let Record::Directory(directory) = decode(&directory_bytes(&[], 0)).unwrap() else {
            panic!("expected a directory record");
        };
        assert_eq!(directory.path.as_deref(), Some(&b"/"[..]));
    }

    #[test]
    fn truncated_or_failed_directory_has_no_path() {
        for flags in [DIRECTORY_TRUNCATED, DIRECTORY_FAILED] {
            let Record::Directory(directory) = decode(&directory_bytes(&[b"tail"], flags)).unwrap()
            else {
                panic!("expected a directory record");
            };
            assert_eq!(directory.path, None);
        }
    }

    #[test]
    fn directory_counts_out_of_range_are_rejected() {
        let mut bytes = directory_bytes(&[b"x"], 0);
        put_u32(
            &mut bytes,
            offset_of!(DirectoryRecord, components),
            DIRECTORY_MAX_COMPONENTS as u32 + 1,
        );
        assert!(matches!(
            decode(&bytes),
            Err(DecodeError::LengthOutOfRange {
                field: "components",
                ..
            })
        ));
        let mut bytes = directory_bytes(&[b"x"], 0);
        bytes[offset_of!(DirectoryRecord, lengths)] = DIRECTORY_SLOT_LEN as u8;
        assert!(matches!(
            decode(&bytes),
            Err(DecodeError::LengthOutOfRange {
                field: "lengths",
                ..
            })
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in [0usize, 3, 4, 16, 100, 336, 1048, 1400] {
            for _ in 0..200 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    })
                    .collect();
                let _ = decode(&bytes);
            }
        }
    }
}
