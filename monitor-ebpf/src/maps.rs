//! Maps and load-time globals shared by the programs.

use crate::directory::DirectoryScratch;
use aya_ebpf::{
    Global,
    macros::map,
    maps::{Array, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, RingBuf, lpm_trie::Key},
};
use monitor_common::{
    catalogue::{
        FILTER_PREFIX, FILTER_SUFFIX, FILTER_WORDS, MAX_ENTRIES, MatchFilter, MatchValue, PATH_LEN,
        REVERSE_LEN, filter_bit,
    },
    counters,
    network::{ConnectRecord, NetworkSettings, PORT_WORDS, Peer, PeerKey},
    offsets::KernelOffsets,
    open::OpenRecord,
    process::ExecRecord,
    record::RING_BUFFER_BYTES,
    tls::{CallArguments, CallKey, PendingName, SessionKey, SessionState},
};

/// Process id of the daemon, whose own opens are not reported. Set by the loader.
#[unsafe(no_mangle)]
pub static DAEMON_TGID: Global<u32> = Global::new(0);

/// Kernel struct and tracepoint field offsets, resolved by the daemon. Set by the loader.
#[unsafe(no_mangle)]
pub static KERNEL_OFFSETS: Global<KernelOffsets> = Global::new(KernelOffsets::unknown());

/// Filters that let the open programs skip trie lookups, set by the loader. A plain static,
/// not a `Global`, because `Global::load` would copy all 1,032 bytes onto the stack; it is
/// read one word at a time with volatile loads so the compiler cannot fold the default in.
#[unsafe(no_mangle)]
pub static MATCH_FILTER: MatchFilter = MatchFilter::pass_all();

/// Returns whether the prefix filter lets `value` through to the forward lookup.
#[inline(always)]
pub fn prefix_may_match(value: u64) -> bool {
    filter_word_bit(
        core::ptr::addr_of!(MATCH_FILTER.prefix),
        FILTER_PREFIX,
        value,
    )
}

/// Returns whether the suffix filter lets `value` through to the reverse lookup.
#[inline(always)]
pub fn suffix_may_match(value: u64) -> bool {
    filter_word_bit(
        core::ptr::addr_of!(MATCH_FILTER.suffix),
        FILTER_SUFFIX,
        value,
    )
}

#[inline(always)]
fn filter_word_bit(words: *const [u64; FILTER_WORDS], enabled_flag: u32, value: u64) -> bool {
    // SAFETY: MATCH_FILTER is a static, so the pointers are valid; the word index is masked
    // below FILTER_WORDS.
    let flags = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(MATCH_FILTER.flags)) };
    if flags & enabled_flag == 0 {
        return true;
    }
    let bit = filter_bit(value);
    // SAFETY: as above.
    let word = unsafe {
        core::ptr::read_volatile(words.cast::<u64>().add((bit >> 6) & (FILTER_WORDS - 1)))
    };
    (word >> (bit & 63)) & 1 != 0
}

/// Settings and tracepoint offsets of the connection programs. A plain static read with
/// volatile loads, like `MATCH_FILTER`, because the loader replaces it.
#[unsafe(no_mangle)]
pub static NETWORK_SETTINGS: NetworkSettings = NetworkSettings::disabled();

/// One bit per excluded peer port, set by the loader.
#[unsafe(no_mangle)]
pub static EXCLUDED_PORTS: [u64; PORT_WORDS] = [0; PORT_WORDS];

/// Excluded peer networks, IPv4 mapped into `::ffff:0:0/96`.
#[map]
pub static EXCLUDED_NETWORKS: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(1024, 0);

/// Connects between the cgroup program and the end of the system call, keyed by `pid_tgid`.
#[map]
pub static CONNECT_PENDING: LruHashMap<u64, ConnectRecord> = LruHashMap::with_max_entries(8192, 0);

/// Connects that reached `SYN_SENT`, keyed by socket address, until their outcome is sent.
#[map]
pub static CONNECT_SOCKETS: LruHashMap<u64, ConnectRecord> = LruHashMap::with_max_entries(16384, 0);

/// Time of the last reported connect of each process to each peer, for deduplication.
#[map]
pub static PEERS_SEEN: LruHashMap<PeerKey, u64> = LruHashMap::with_max_entries(65536, 0);

/// The peer each thread connected to last, copied into TLS records.
#[map]
pub static LAST_PEER: LruHashMap<u64, Peer> = LruHashMap::with_max_entries(16384, 0);

/// Arguments of TLS calls between entry and return.
#[map]
pub static TLS_CALLS: LruHashMap<CallKey, CallArguments> = LruHashMap::with_max_entries(16384, 0);

/// Sessions the TLS programs track, from their first hooked call until they are freed, when
/// the entry is cleared (flags 0) for the next session at the same address. The read and
/// write probes look further only at clients whose handshake has not succeeded. Calls on server
/// sessions send no record: only client handshakes are reported, and a busy server would
/// otherwise fill the ring buffer with records the daemon throws away.
#[map]
pub static TLS_SESSIONS: LruHashMap<SessionKey, SessionState> =
    LruHashMap::with_max_entries(65536, 0);

/// Server names set on sessions and not yet sent. A name lives from the call that sets it to
/// the session's next record, a few milliseconds for most clients.
#[map]
pub static TLS_NAMES: LruHashMap<SessionKey, PendingName> = LruHashMap::with_max_entries(8192, 0);

/// Scratch space for reading a server name before it enters `TLS_NAMES`: too large for the
/// stack of a program.
#[map]
pub static TLS_NAME_SCRATCH: PerCpuArray<PendingName> = PerCpuArray::with_max_entries(1, 0);

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

/// Number of entries in `PENDING_OPENS`, shared by all CPUs. The exit programs skip the hash
/// lookup while it is zero, which is the common case: matched opens are rare. An entry the LRU
/// evicts is never subtracted, which only makes the exit programs look up more often.
#[map]
pub static PENDING_COUNT: Array<u64> = Array::with_max_entries(1, 0);

/// Per-CPU working memory for the open programs: too large for the 512-byte eBPF stack.
#[map]
pub static OPEN_SCRATCH: PerCpuArray<OpenScratch> = PerCpuArray::with_max_entries(1, 0);

/// Programs the open programs tail-call: the directory walk at `directory::DIRECTORY_WALK`.
#[map]
pub static TAIL_CALLS: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Per-CPU working memory for the directory walk of relative opens.
#[map]
pub static DIRECTORY_SCRATCH: PerCpuArray<DirectoryScratch> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU working memory for the exec program.
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecRecord> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU working memory of an open: the record under construction and the reverse-trie key.
#[repr(C)]
pub struct OpenScratch {
    pub record: OpenRecord,
    pub reverse: ReverseKey,
}

/// The reverse-trie key, laid out so that its data is 8-byte aligned: `prefix_bits` and `data`
/// together form the trie's `Key<[u8; REVERSE_LEN]>` (a `u32` and the bytes, packed), and the
/// padding in front aligns `data`.
#[repr(C, align(8))]
pub struct ReverseKey {
    _padding: u32,
    pub prefix_bits: u32,
    pub data: [u64; REVERSE_LEN / 8],
}

impl ReverseKey {
    /// Returns `prefix_bits` and `data` viewed as the trie key.
    #[inline(always)]
    pub fn as_lpm_key(&self) -> &Key<[u8; REVERSE_LEN]> {
        // SAFETY: `prefix_bits` is directly followed by REVERSE_LEN bytes of `data` (repr(C),
        // a u32 at offset 4 and the array at offset 8), which is the layout of the packed
        // `Key`, and a packed type has alignment 1.
        unsafe { &*core::ptr::from_ref(&self.prefix_bits).cast::<Key<[u8; REVERSE_LEN]>>() }
    }

    /// Sets one byte of the data.
    #[inline(always)]
    pub fn set_byte(&mut self, index: usize, value: u8) {
        let bytes = self.data.as_mut_ptr().cast::<u8>();
        // SAFETY: the index is masked below REVERSE_LEN, the size of `data` in bytes.
        unsafe { *bytes.add(index & (REVERSE_LEN - 1)) = value };
    }
}

const _: () = assert!(core::mem::offset_of!(ReverseKey, data) == 8);
const _: () = assert!(core::mem::offset_of!(ReverseKey, prefix_bits) == 4);

/// Adds `delta` to the shared count of pending opens.
#[inline(always)]
pub fn add_pending(delta: i64) {
    if let Some(slot) = PENDING_COUNT.get_ptr_mut(0) {
        // SAFETY: the pointer comes from a successful array lookup and stays valid; other CPUs
        // update the same slot, so it is changed only with an atomic add (BPF_ATOMIC). The BPF
        // target has no compare-and-swap, so core's atomic types lack fetch_add; the intrinsic
        // lowers to the plain atomic add instruction.
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                slot,
                delta as u64,
            );
        }
    }
}

/// Returns whether any open is pending.
#[inline(always)]
pub fn any_pending() -> bool {
    match PENDING_COUNT.get_ptr(0) {
        // SAFETY: as in add_pending; a plain read of an aligned u64 cannot tear on 64-bit
        // targets, and a stale value only delays or adds one lookup.
        Some(slot) => (unsafe { core::ptr::read_volatile(slot) }) != 0,
        None => true,
    }
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
