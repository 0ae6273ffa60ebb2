//! Maps and load-time globals shared by the programs.

use aya_ebpf::{
    Global,
    macros::map,
    maps::{LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use monitor_common::{
    catalogue::{MAX_ENTRIES, MatchValue, PATH_LEN, REVERSE_LEN},
    counters,
    offsets::KernelOffsets,
    open::OpenRecord,
    process::ExecRecord,
    record::RING_BUFFER_BYTES,
};

/// Process id of the daemon, whose own opens are not reported. Set by the loader.
#[unsafe(no_mangle)]
pub static DAEMON_TGID: Global<u32> = Global::new(0);

/// Kernel struct and tracepoint field offsets, resolved by the daemon. Set by the loader.
#[unsafe(no_mangle)]
pub static KERNEL_OFFSETS: Global<KernelOffsets> = Global::new(KernelOffsets::unknown());

/// Records for the daemon.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BUFFER_BYTES, 0);

/// Per-CPU counters, indexed by the constants in `monitor_common::counters`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counters::COUNT, 0);

/// Exact paths (stored with their NUL) and directory prefixes (ending in `/`).
#[map]
pub static FORWARD_MATCH: LpmTrie<[u8; PATH_LEN], MatchValue> =
    LpmTrie::with_max_entries(MAX_ENTRIES, 0);

/// Reversed suffixes and basenames (stored as reversed `/name`).
#[map]
pub static REVERSE_MATCH: LpmTrie<[u8; REVERSE_LEN], MatchValue> =
    LpmTrie::with_max_entries(MAX_ENTRIES, 0);

/// Matched opens between the enter and exit tracepoints, keyed by `pid_tgid`. LRU, so an entry
/// whose exit never fired cannot fill the map for good.
#[map]
pub static PENDING_OPENS: LruHashMap<u64, OpenRecord> = LruHashMap::with_max_entries(8192, 0);

/// Per-CPU working memory for the open programs: too large for the 512-byte eBPF stack.
#[map]
pub static OPEN_SCRATCH: PerCpuArray<OpenScratch> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU working memory for the exec program.
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecRecord> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU working memory of an open: the record under construction and the reverse-trie key.
#[repr(C)]
pub struct OpenScratch {
    pub record: OpenRecord,
    pub reverse: aya_ebpf::maps::lpm_trie::Key<[u8; REVERSE_LEN]>,
}

/// Adds one to a per-CPU counter.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: the pointer comes from a successful per-CPU array lookup, so it is valid and
        // only this CPU writes it; programs do not preempt each other on one CPU.
        unsafe { *slot += 1 };
    }
}
