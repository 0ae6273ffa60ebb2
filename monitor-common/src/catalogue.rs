//! Keys and values of the catalogue maps that the open programs match paths against.
//!
//! Two longest-prefix-match tries hold the catalogue:
//! - `FORWARD_MATCH` is keyed by the path as passed to `open`. An exact entry is stored with
//!   its terminating NUL, so it only matches the whole path; a directory entry ends in `/` and
//!   matches every path below it.
//! - `REVERSE_MATCH` is keyed by the last [`REVERSE_LEN`] bytes of the path in reverse order.
//!   A suffix entry (`.pem`, `/.aws/credentials`) is stored reversed; a basename entry `id_rsa`
//!   is stored as the reversed suffix `/id_rsa`, and the program appends a `/` after a relative
//!   path so that a bare `id_rsa` matches it too.

/// Bytes of a path that the programs read and match. The kernel caps LPM-trie data at
/// 256 bytes; longer paths are truncated and flagged with [`crate::open::PATH_TRUNCATED`].
pub const PATH_LEN: usize = 256;

/// Bytes at the end of a path that the reverse trie sees. Suffix and basename entries must be
/// shorter than this.
pub const REVERSE_LEN: usize = 64;

/// Maximum number of entries in each catalogue trie.
pub const MAX_ENTRIES: u32 = 4096;

/// The entry matches the path by itself: the open is a credential access.
pub const MATCH_DEFINITE: u32 = 1 << 0;
/// The entry names a credential file by its last component only (the basename of an exact
/// or suffix entry). Sent to the daemon only for relative or non-canonical paths, which it
/// resolves and matches against the full catalogue.
pub const MATCH_CANDIDATE: u32 = 1 << 1;

/// Value stored in both catalogue tries.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchValue {
    /// Index of the entry in the daemon's catalogue.
    pub entry_index: u32,
    /// [`MATCH_DEFINITE`] or [`MATCH_CANDIDATE`].
    pub flags: u32,
}

const _: () = assert!(size_of::<MatchValue>() == 8);

#[cfg(feature = "user")]
// SAFETY: MatchValue is repr(C), made only of u32 fields and has no padding, so every byte
// pattern is a valid value.
unsafe impl aya::Pod for MatchValue {}
