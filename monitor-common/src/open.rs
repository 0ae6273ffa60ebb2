//! The record the open programs send for a matched `open`, `openat` or `openat2`.

use crate::catalogue::PATH_LEN;

/// Which system call opened the file.
pub mod syscall {
    /// `open(2)`.
    pub const OPEN: u32 = 0;
    /// `openat(2)`.
    pub const OPENAT: u32 = 1;
    /// `openat2(2)`.
    pub const OPENAT2: u32 = 2;
}

/// `dfd` value meaning "relative to the working directory", from `<fcntl.h>`.
pub const AT_FDCWD: i32 = -100;

/// The path did not fit in [`PATH_LEN`] bytes and was cut.
pub const PATH_TRUNCATED: u32 = 1 << 0;
/// The path does not start with `/`.
pub const PATH_RELATIVE: u32 = 1 << 1;
/// The path contains `//`, `/./` or `/..` (including kubelet `..data` segments).
pub const PATH_NON_CANONICAL: u32 = 1 << 2;
/// Kernel-internal: the entry program could not read the path, so the in-flight entry holds
/// the user pointer in `result` and the exit program reads the path instead. Never set in a
/// record the daemon receives.
pub const PATH_DEFERRED: u32 = 1 << 31;

/// A matched open and its result, written by the exit program.
///
/// `lpm_prefix_bits` sits right before `path` so that the two together form the key of the
/// forward catalogue trie (`u32` prefix length in bits, then the data), which lets the enter
/// program look the path up without copying it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OpenRecord {
    /// Always [`crate::record::kind::OPEN`].
    pub kind: u32,
    /// One of the [`syscall`] constants.
    pub syscall: u32,
    /// Thread-group id (the process id).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// `MatchValue::entry_index` of the matching catalogue entry.
    pub entry_index: u32,
    /// `MatchValue::flags` of the matching catalogue entry.
    pub match_flags: u32,
    /// Directory file descriptor passed to `openat`/`openat2`, or [`AT_FDCWD`].
    pub dfd: i32,
    /// Open flags (`O_RDONLY`, `O_CREAT`, ...), truncated to 32 bits.
    pub open_flags: u32,
    /// Return value of the system call: a file descriptor, or a negated errno.
    pub result: i64,
    /// Time of the system call entry, nanoseconds since boot (`bpf_ktime_get_boot_ns`).
    pub boot_ns: u64,
    /// cgroup v2 id of the calling task.
    pub cgroup_id: u64,
    /// Bytes of `path` that hold the path, without the terminating NUL.
    pub path_len: u32,
    /// [`PATH_TRUNCATED`], [`PATH_RELATIVE`], [`PATH_NON_CANONICAL`].
    pub path_flags: u32,
    /// Explicit padding; always zero.
    pub reserved: u32,
    /// Prefix length in bits of the forward-trie lookup; the daemon ignores it.
    pub lpm_prefix_bits: u32,
    /// The path as the process passed it. Bytes past `path_len` are undefined.
    pub path: [u8; PATH_LEN],
}

const _: () = assert!(size_of::<OpenRecord>() == 80 + PATH_LEN);
const _: () = assert!(align_of::<OpenRecord>() == 8);
const _: () = assert!(core::mem::offset_of!(OpenRecord, path) == 80);
const _: () = assert!(
    core::mem::offset_of!(OpenRecord, lpm_prefix_bits) + 4
        == core::mem::offset_of!(OpenRecord, path)
);
