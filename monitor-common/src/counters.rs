//! Indices into the per-CPU `COUNTERS` array that the eBPF programs increment.
//!
//! The daemon sums each index over all CPUs and reports the totals in the
//! `credwatch.monitor.health` event. The numbers are part of the contract.

/// Opens seen by the enter programs, the daemon's own excluded.
pub const OPENS_SEEN: u32 = 0;
/// Opens whose path matched the catalogue maps and were kept for the exit program.
pub const OPENS_MATCHED: u32 = 1;
/// Records written to the ring buffer (opens, execs and exits).
pub const RECORDS_EMITTED: u32 = 2;
/// Ring-buffer reservations or writes that failed because the buffer was full.
pub const RINGBUF_FULL: u32 = 3;
/// Opens whose path could not be read from user memory, at entry nor at exit.
pub const PATH_READ_FAILED: u32 = 4;
/// Matched opens dropped because the map of in-flight opens was full.
pub const PENDING_FULL: u32 = 5;
/// Execs whose argument or parent data could not be read.
pub const EXEC_READ_FAILED: u32 = 6;
/// Opens sent as candidates: relative or non-canonical paths whose last component matched
/// a catalogue name, which the daemon resolves and matches again.
pub const OPENS_CANDIDATE: u32 = 7;

/// Opens whose path was not yet in memory at entry and was read again at exit, after the
/// kernel had faulted it in.
pub const PATH_READ_DEFERRED: u32 = 8;

/// Paths of 255 bytes or more that matched nothing. Their end was cut, so a suffix or
/// basename entry could not be checked.
pub const PATH_TOO_LONG: u32 = 9;

/// TCP connects seen by the connect programs, the daemon's own excluded.
pub const CONNECTS_SEEN: u32 = 10;
/// Connects not reported because their peer address or port is excluded in the configuration.
pub const CONNECTS_EXCLUDED: u32 = 11;
/// Connects not reported because the same process reported the same peer within the
/// deduplication window.
pub const CONNECTS_DEDUPLICATED: u32 = 12;
/// Connects lost because the map of in-flight connects was full (its oldest entry was evicted
/// before the outcome arrived).
pub const CONNECTS_UNFINISHED: u32 = 13;
/// Calls of TLS library functions seen by the uprobes.
pub const TLS_CALLS: u32 = 14;
/// TLS return probes that found no saved arguments (the entry was missed or evicted).
pub const TLS_RETURNS_UNMATCHED: u32 = 15;

/// Calls on server-side TLS sessions that the kernel dropped instead of sending them.
pub const TLS_SERVER_CALLS: u32 = 16;

/// Number of slots in the `COUNTERS` array.
pub const COUNT: u32 = 17;
