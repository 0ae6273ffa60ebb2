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

/// Bytes at the end of a path that the reverse trie matches. Suffix and basename entries must be
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

/// The entry names a TLS library file (`libssl.so.3`), not a credential. The daemon inspects
/// the library and attaches the TLS probes to it; the open is not a credential access.
pub const MATCH_LIBRARY: u32 = 1 << 2;

/// `entry_index` of every [`MATCH_LIBRARY`] entry.
pub const LIBRARY_ENTRY: u32 = u32::MAX;

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

/// Bytes at the start of a path that the prefix filter hashes.
pub const PREFIX_FILTER_LEN: usize = 8;
/// Bytes at the end of a path that the suffix filter hashes.
pub const SUFFIX_FILTER_LEN: usize = 4;
/// 64-bit words in each filter: 4,096 bits.
pub const FILTER_WORDS: usize = 64;
/// The prefix filter is in use; without it every path is looked up in the forward trie.
pub const FILTER_PREFIX: u32 = 1 << 0;
/// The suffix filter is in use; without it every path is looked up in the reverse trie.
pub const FILTER_SUFFIX: u32 = 1 << 1;

/// Bitmaps that let the open programs skip a trie lookup that cannot match.
///
/// The prefix filter has a bit set for the first [`PREFIX_FILTER_LEN`] bytes of every forward
/// trie key, the suffix filter for the first [`SUFFIX_FILTER_LEN`] bytes of every reverse trie
/// key (the path's last bytes, reversed). A path whose bit is clear matches no key, so the
/// lookup is skipped; a set bit may be a collision and only means "look it up". A filter is in
/// use only when every key of its trie is at least as long as the bytes it hashes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchFilter {
    /// [`FILTER_PREFIX`] and [`FILTER_SUFFIX`].
    pub flags: u32,
    /// Explicit padding; always zero.
    pub reserved: u32,
    /// Prefix bitmap.
    pub prefix: [u64; FILTER_WORDS],
    /// Suffix bitmap.
    pub suffix: [u64; FILTER_WORDS],
}

const _: () = assert!(size_of::<MatchFilter>() == 8 + 2 * 8 * FILTER_WORDS);

impl MatchFilter {
    /// A filter that lets every path through to both lookups.
    pub const fn pass_all() -> Self {
        Self {
            flags: 0,
            reserved: 0,
            prefix: [0; FILTER_WORDS],
            suffix: [0; FILTER_WORDS],
        }
    }
}

/// Bit index of a filter value: the top 12 bits of a multiplicative (Fibonacci) hash.
#[inline(always)]
pub const fn filter_bit(value: u64) -> usize {
    (value.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize
}

/// Whether the bit of `value` is set in `words`.
#[inline(always)]
pub fn filter_contains(words: &[u64; FILTER_WORDS], value: u64) -> bool {
    let bit = filter_bit(value);
    (words[(bit >> 6) & (FILTER_WORDS - 1)] >> (bit & 63)) & 1 != 0
}

/// Sets the bit of `value` in `words`.
pub fn filter_insert(words: &mut [u64; FILTER_WORDS], value: u64) {
    let bit = filter_bit(value);
    words[(bit >> 6) & (FILTER_WORDS - 1)] |= 1 << (bit & 63);
}

#[cfg(feature = "user")]
// SAFETY: MatchFilter is repr(C), made of u32 and u64 fields with explicit padding, so every
// byte pattern is a valid value.
unsafe impl aya::Pod for MatchFilter {}
