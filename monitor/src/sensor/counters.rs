//! Reading the per-CPU counters the programs keep.

use aya::maps::{MapData, PerCpuArray};
use monitor_common::counters as index;

/// Totals over all CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Opens seen (the daemon's own excluded).
    pub opens_seen: u64,
    /// Opens that matched the catalogue maps.
    pub opens_matched: u64,
    /// Opens sent as candidates for resolution in the daemon.
    pub opens_candidate: u64,
    /// Records written to the ring buffer.
    pub records_emitted: u64,
    /// Records lost because the ring buffer was full.
    pub ringbuf_full: u64,
    /// Opens whose path could not be read at entry nor at exit.
    pub path_read_failed: u64,
    /// Opens whose path was read at exit because it was not resident at entry.
    pub path_read_deferred: u64,
    /// Paths of 255 bytes or more that matched nothing.
    pub path_too_long: u64,
    /// Matched opens lost because the in-flight map was full.
    pub pending_full: u64,
    /// Execs whose arguments or parent could not be read.
    pub exec_read_failed: u64,
    /// TCP connects seen.
    pub connects_seen: u64,
    /// Connects not reported because their peer is excluded.
    pub connects_excluded: u64,
    /// Connects not reported because of the deduplication window.
    pub connects_deduplicated: u64,
    /// Non-blocking connects whose outcome was lost.
    pub connects_unfinished: u64,
    /// Calls of TLS library functions seen.
    pub tls_calls: u64,
    /// TLS return probes without a matching entry.
    pub tls_returns_unmatched: u64,
    /// Calls on server-side TLS sessions, dropped in the kernel.
    pub tls_server_calls: u64,
}

impl Counters {
    /// Reads and sums every counter. A counter that cannot be read counts as 0 and is logged.
    pub fn read(map: &PerCpuArray<MapData, u64>) -> Self {
        let sum = |slot: u32| match map.get(&slot, 0) {
            Ok(values) => values.iter().sum(),
            Err(error) => {
                tracing::warn!(slot, %error, "failed to read an eBPF counter");
                0
            }
        };
        Self {
            opens_seen: sum(index::OPENS_SEEN),
            opens_matched: sum(index::OPENS_MATCHED),
            opens_candidate: sum(index::OPENS_CANDIDATE),
            records_emitted: sum(index::RECORDS_EMITTED),
            ringbuf_full: sum(index::RINGBUF_FULL),
            path_read_failed: sum(index::PATH_READ_FAILED),
            path_read_deferred: sum(index::PATH_READ_DEFERRED),
            path_too_long: sum(index::PATH_TOO_LONG),
            pending_full: sum(index::PENDING_FULL),
            exec_read_failed: sum(index::EXEC_READ_FAILED),
            connects_seen: sum(index::CONNECTS_SEEN),
            connects_excluded: sum(index::CONNECTS_EXCLUDED),
            connects_deduplicated: sum(index::CONNECTS_DEDUPLICATED),
            connects_unfinished: sum(index::CONNECTS_UNFINISHED),
            tls_calls: sum(index::TLS_CALLS),
            tls_returns_unmatched: sum(index::TLS_RETURNS_UNMATCHED),
            tls_server_calls: sum(index::TLS_SERVER_CALLS),
        }
    }

    /// Records lost in the kernel for any reason.
    pub fn dropped(&self) -> u64 {
        self.ringbuf_full + self.pending_full
    }

    /// Name and value of every counter, in a stable order, for the health event.
    pub fn fields(&self) -> [(&'static str, u64); 17] {
        [
            ("opens_seen", self.opens_seen),
            ("opens_matched", self.opens_matched),
            ("opens_candidate", self.opens_candidate),
            ("records_emitted", self.records_emitted),
            ("ringbuf_full", self.ringbuf_full),
            ("path_read_failed", self.path_read_failed),
            ("path_read_deferred", self.path_read_deferred),
            ("path_too_long", self.path_too_long),
            ("pending_full", self.pending_full),
            ("exec_read_failed", self.exec_read_failed),
            ("connects_seen", self.connects_seen),
            ("connects_excluded", self.connects_excluded),
            ("connects_deduplicated", self.connects_deduplicated),
            ("connects_unfinished", self.connects_unfinished),
            ("tls_calls", self.tls_calls),
            ("tls_returns_unmatched", self.tls_returns_unmatched),
            ("tls_server_calls", self.tls_server_calls),
        ]
    }
}
