//! The record that carries the directory a relative open is resolved against.
//!
//! For a relative path the open programs walk the dentries of the working directory (or of
//! the `openat` directory descriptor) in the kernel, at the time of the open, and send the
//! result just before the open record of the same thread. Reading `/proc/PID/cwd` later would
//! race with a process that exits or changes directory at once.
//!
//! The walk runs in its own program, reached by a tail call from the open program, so that
//! the verifier checks it once instead of once per path through the matching code. It
//! stores one component per fixed slot, from the innermost directory outwards, so that the
//! verifier tracks a small slot counter instead of a byte position.

/// Maximum number of components in a record.
pub const DIRECTORY_MAX_COMPONENTS: usize = 16;
/// Bytes of a slot; longer names make the record unusable.
pub const DIRECTORY_SLOT_LEN: usize = 64;
/// Steps the walk takes at most: one per component and one per mount crossed.
pub const DIRECTORY_MAX_STEPS: usize = 24;

/// The walk stopped before reaching the root, or a name did not fit its slot.
pub const DIRECTORY_TRUNCATED: u32 = 1 << 0;
/// The directory could not be read (unknown offsets, a closed descriptor, a failed read).
pub const DIRECTORY_FAILED: u32 = 1 << 1;
/// The directory is that of an `openat` descriptor, not the working directory.
pub const DIRECTORY_FROM_FD: u32 = 1 << 2;

/// The directory of a relative open, sent just before its open record.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DirectoryRecord {
    /// Always [`crate::record::kind::DIRECTORY`].
    pub kind: u32,
    /// Process id.
    pub pid: u32,
    /// Thread id; the open record with the same thread id follows.
    pub tid: u32,
    /// [`DIRECTORY_TRUNCATED`], [`DIRECTORY_FAILED`], [`DIRECTORY_FROM_FD`].
    pub flags: u32,
    /// Slots in use; 0 is the root directory.
    pub components: u32,
    /// Directory descriptor of the open, or `AT_FDCWD` for the working directory.
    pub dfd: i32,
    /// Length of the name in each slot.
    pub lengths: [u8; DIRECTORY_MAX_COMPONENTS],
    /// Names, innermost first: slot 0 is the directory itself, the last slot is just below `/`.
    pub names: [[u8; DIRECTORY_SLOT_LEN]; DIRECTORY_MAX_COMPONENTS],
}

const _: () = assert!(
    size_of::<DirectoryRecord>() == 24 + DIRECTORY_MAX_COMPONENTS * (1 + DIRECTORY_SLOT_LEN)
);
