//! Credential-file opens: `syscalls:sys_enter_open{,at,at2}` and the matching exit tracepoints.
//!
//! Kernel interface: the per-syscall tracepoints (`CONFIG_FTRACE_SYSCALLS`, Linux 2.6.33+;
//! `openat2` since 5.6). Their records have the common 8-byte header, the syscall number, then
//! every argument as an 8-byte slot from offset 16; the exit record has the return value at
//! offset 16. These tracepoints were chosen over fentry on `do_sys_openat2` or an LSM
//! `file_open` hook because they load on every kernel with tracing, including ones that deny
//! fentry and LSM programs. They carry the path as the process passed it, which the daemon
//! resolves and normalises.
//!
//! The enter program reads the path and matches it against the catalogue tries. An open that
//! matches nothing costs that read and the lookups, and sends nothing. A match is kept in
//! `PENDING_OPENS` until the exit program adds the result and sends the record.
//!
//! `bpf_probe_read_user_str` cannot fault pages in, so a path string that is not resident yet
//! (a freshly mapped page) cannot be read at entry. The kernel faults it in while it copies the
//! path, so for those opens the entry program keeps the user pointer and the exit program reads
//! and matches the path instead.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_ktime_get_boot_ns, generated,
    },
    macros::tracepoint,
    maps::lpm_trie::Key,
    programs::TracePointContext,
};
use monitor_common::{
    catalogue::{
        FILTER_PREFIX, MATCH_CANDIDATE, MatchValue, PATH_LEN, PREFIX_FILTER_LEN, REVERSE_LEN,
        SUFFIX_FILTER_LEN,
    },
    counters,
    open::{
        AT_FDCWD, OpenRecord, PATH_DEFERRED, PATH_NON_CANONICAL, PATH_RELATIVE, PATH_TRUNCATED,
        syscall,
    },
    record::kind,
};

use crate::{
    directory::walk_directory,
    maps::{
        DAEMON_TGID, EVENTS, FORWARD_MATCH, OPEN_SCRATCH, OpenScratch, PENDING_OPENS,
        REVERSE_MATCH, ReverseKey, add_pending, any_pending, count, prefix_may_match,
        suffix_may_match,
    },
};

/// Offset of the first syscall argument in a `sys_enter_*` record.
const ARG0: usize = 16;
/// Offset of the return value in a `sys_exit_*` record.
const RET: usize = 16;
/// Size of one argument slot.
const ARG_SLOT: usize = 8;

#[tracepoint]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    // open(filename, flags, mode)
    enter(&ctx, syscall::OPEN, None, ARG0)
}

#[tracepoint]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    // openat(dfd, filename, flags, mode)
    enter(&ctx, syscall::OPENAT, Some(ARG0), ARG0 + ARG_SLOT)
}

#[tracepoint]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    // openat2(dfd, filename, how, usize)
    enter(&ctx, syscall::OPENAT2, Some(ARG0), ARG0 + ARG_SLOT)
}

#[tracepoint]
pub fn sys_exit_open(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}

#[tracepoint]
pub fn sys_exit_openat(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}

#[tracepoint]
pub fn sys_exit_openat2(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}

// Inlined into each program, because the verifier only allows context reads at constant
// offsets, and the offsets are arguments here.
#[inline(always)]
fn enter(ctx: &TracePointContext, syscall: u32, dfd_at: Option<usize>, filename_at: usize) -> u32 {
    let _ = try_enter(ctx, syscall, dfd_at, filename_at);
    0
}

#[inline(always)]
fn exit(ctx: &TracePointContext) -> u32 {
    let _ = try_exit(ctx);
    0
}

#[inline(always)]
fn try_enter(
    ctx: &TracePointContext,
    syscall: u32,
    dfd_at: Option<usize>,
    filename_at: usize,
) -> Result<(), ()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if tgid == DAEMON_TGID.load() {
        return Ok(());
    }
    count(counters::OPENS_SEEN);

    let scratch = OPEN_SCRATCH.get_ptr_mut(0).ok_or(())?;
    // SAFETY: the pointer comes from a successful per-CPU array lookup, so it stays valid for
    // the whole program run. No other program runs on this CPU meanwhile.
    let scratch = unsafe { &mut *scratch };
    let filename = read_arg(ctx, filename_at);

    // Everything up to the match runs for every open; the rest only for matches.
    let Ok(path_len) = read_path(filename as *const u8, &mut scratch.record.path) else {
        // The string is not resident yet; the kernel faults it in while it opens the file,
        // so the exit program reads it again.
        let record = &mut scratch.record;
        fill_arguments(ctx, record, syscall, dfd_at, filename_at);
        record.result = filename as i64;
        record.path_flags = PATH_DEFERRED;
        return keep_pending(pid_tgid, record, counters::PATH_READ_DEFERRED);
    };
    let Some((value, path_flags)) = match_path(scratch, path_len) else {
        // NOTE: the end of a path longer than PATH_LEN is never read, so suffix and basename
        // entries cannot match it; such opens are only counted.
        if path_len >= PATH_LEN - 1 {
            count(counters::PATH_TOO_LONG);
        }
        return Ok(());
    };
    let record = &mut scratch.record;
    fill_arguments(ctx, record, syscall, dfd_at, filename_at);
    fill_match(record, value, path_len, path_flags);
    let dfd = record.dfd;
    keep_pending(pid_tgid, record, counters::OPENS_MATCHED)?;
    if path_flags & PATH_RELATIVE != 0 {
        walk_directory(ctx, pid_tgid, dfd);
    }
    Ok(())
}

/// Reads one 8-byte argument slot of a `sys_enter_*` record.
#[inline(always)]
fn read_arg(ctx: &TracePointContext, offset: usize) -> u64 {
    // SAFETY: tracepoint programs may read their context directly at constant offsets, and
    // every offset used here lies inside the record layout the module doc states.
    unsafe { core::ptr::read(ctx.as_ptr().cast::<u8>().add(offset).cast::<u64>()) }
}

/// Fills the syscall, directory descriptor, flags and time of a record.
#[inline(always)]
fn fill_arguments(
    ctx: &TracePointContext,
    record: &mut OpenRecord,
    syscall: u32,
    dfd_at: Option<usize>,
    filename_at: usize,
) {
    record.syscall = syscall;
    record.dfd = match dfd_at {
        Some(at) => read_arg(ctx, at) as i32,
        None => AT_FDCWD,
    };
    // openat2 keeps its flags in `struct open_how`, which the daemon does not need.
    record.open_flags = if syscall == syscall::OPENAT2 {
        0
    } else {
        read_arg(ctx, filename_at + ARG_SLOT) as u32
    };
    // SAFETY: the helper takes no pointers and is allowed in tracepoint programs.
    record.boot_ns = unsafe { bpf_ktime_get_boot_ns() };
}

/// Stores the record until the exit tracepoint and counts it under `counter`.
#[inline(always)]
fn keep_pending(pid_tgid: u64, record: &OpenRecord, counter: u32) -> Result<(), ()> {
    if PENDING_OPENS.insert(pid_tgid, record, 0).is_err() {
        count(counters::PENDING_FULL);
        return Err(());
    }
    add_pending(1);
    count(counter);
    Ok(())
}

/// Matches the path in `scratch.record.path` against both tries. Returns the matching value
/// and the path flags, or `None` when the open is not worth sending.
#[inline(always)]
fn match_path(scratch: &mut OpenScratch, path_len: usize) -> Option<(MatchValue, u32)> {
    let record = &mut scratch.record;
    record.lpm_prefix_bits = ((path_len + 1) * 8) as u32;
    let forward = if may_match_forward(record, path_len) {
        lookup_forward(record)
    } else {
        None
    };
    let value = match forward {
        Some(value) => value,
        None => lookup_reverse(record, path_len, &mut scratch.reverse)?,
    };
    let path_flags = path_flags(&scratch.record.path, path_len);
    if value.flags & MATCH_CANDIDATE != 0 {
        // A bare name such as `token` or `credentials` only hints at a credential when the
        // path still needs resolving, because an absolute canonical path was checked in full.
        let needs_resolving = path_flags & (PATH_RELATIVE | PATH_NON_CANONICAL) != 0;
        if !needs_resolving {
            return None;
        }
        count(counters::OPENS_CANDIDATE);
    }
    Some((value, path_flags))
}

/// Fills the identity and match fields of a record whose path matched.
#[inline(always)]
fn fill_match(record: &mut OpenRecord, value: MatchValue, path_len: usize, path_flags: u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    record.kind = kind::OPEN;
    record.pid = (pid_tgid >> 32) as u32;
    record.tid = pid_tgid as u32;
    record.uid = uid_gid as u32;
    record.gid = (uid_gid >> 32) as u32;
    record.entry_index = value.entry_index;
    record.match_flags = value.flags;
    record.result = 0;
    // SAFETY: the helper takes no pointers and is allowed in tracepoint programs.
    record.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    record.path_len = path_len as u32;
    record.path_flags = path_flags;
    record.reserved = 0;
}

/// Reads the NUL-terminated user path into `buffer` and returns its length without the NUL.
#[inline(always)]
fn read_path(filename: *const u8, buffer: &mut [u8; PATH_LEN]) -> Result<usize, ()> {
    // SAFETY: the helper writes at most PATH_LEN bytes into the buffer and NUL-terminates it;
    // a bad user pointer makes it return an error, never fault.
    let read = unsafe {
        generated::bpf_probe_read_user_str(
            buffer.as_mut_ptr().cast(),
            PATH_LEN as u32,
            filename.cast(),
        )
    };
    if read <= 0 || read > PATH_LEN as i64 {
        return Err(());
    }
    // `read` counts the NUL, so this is the string length; at most PATH_LEN - 1.
    Ok((read - 1) as usize)
}

/// Returns whether the first bytes of the path pass the prefix filter. Every forward key is at
/// least PREFIX_FILTER_LEN bytes long when the filter is in use, so a shorter path (string and
/// NUL) cannot match. Its later bytes are stale from an earlier open, so it is not hashed.
#[inline(always)]
fn may_match_forward(record: &OpenRecord, path_len: usize) -> bool {
    if path_len + 1 < PREFIX_FILTER_LEN {
        return !filter_in_use(FILTER_PREFIX);
    }
    // SAFETY: `path` is 8-byte aligned (asserted below) and at least 8 bytes long.
    let first = unsafe { core::ptr::from_ref(&record.path).cast::<u64>().read() };
    prefix_may_match(first)
}

#[inline(always)]
fn filter_in_use(flag: u32) -> bool {
    // SAFETY: MATCH_FILTER is a static; the volatile read keeps the loader's value.
    let flags =
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!(crate::maps::MATCH_FILTER.flags)) };
    flags & flag != 0
}

#[inline(always)]
fn lookup_forward(record: &OpenRecord) -> Option<MatchValue> {
    let key_ptr = core::ptr::from_ref(&record.lpm_prefix_bits).cast::<Key<[u8; PATH_LEN]>>();
    // SAFETY: `lpm_prefix_bits` is directly followed by `path` (checked by a const assertion
    // in monitor-common), so the pointer covers a valid `Key` of 4 + PATH_LEN bytes; `Key` is
    // packed, so any address is aligned for it.
    let key = unsafe { &*key_ptr };
    FORWARD_MATCH.get(key).copied()
}

/// Looks up the reversed end of the path, with a `/` after a relative path so that a bare
/// name matches basename entries.
///
/// The path is reversed eight bytes at a time with aligned loads, because the BPF back end
/// splits unaligned loads into single bytes. Each step loads the two aligned words around
/// the eight bytes it needs, shifts them together and byte-swaps the result. For paths
/// shorter than 64 bytes the first steps read before `path`, in the record's header, which is
/// still inside the map value; those bytes lie past the key's prefix length, so the trie
/// never compares them.
#[inline(always)]
fn lookup_reverse(
    record: &OpenRecord,
    path_len: usize,
    key: &mut ReverseKey,
) -> Option<MatchValue> {
    let path_len = path_len & (PATH_LEN - 1);
    let reversed = if path_len < REVERSE_LEN - 1 {
        path_len
    } else {
        REVERSE_LEN - 1
    };
    // Words are counted from REVERSE_LEN bytes before `path`, so every index is positive.
    let words = core::ptr::from_ref(&record.path)
        .cast::<u8>()
        .wrapping_sub(REVERSE_LEN)
        .cast::<u64>();
    let first_word = path_len / 8;
    let low_shift = ((path_len % 8) * 8) as u32;
    let last_bytes = reversed_chunk(words, first_word + REVERSE_LEN / 8 - 1, low_shift);
    // A path of fewer than SUFFIX_FILTER_LEN bytes would hash bytes from before it.
    let filtered = path_len >= SUFFIX_FILTER_LEN;
    if filtered && !suffix_may_match(last_bytes & 0xffff_ffff) {
        return None;
    }
    for chunk in 0..REVERSE_LEN / 8 {
        // The eight bytes that end `chunk * 8` bytes before the end of the path start at byte
        // `path_len + REVERSE_LEN - 8 * (chunk + 1)` from `words`, inside word `index`. The
        // index is written as the word of `path_len` plus a constant so that every address is
        // at or above `words`, which the verifier needs to see.
        let index = first_word + (REVERSE_LEN / 8 - 1 - chunk);
        key.data[chunk] = reversed_chunk(words, index, low_shift);
    }
    let mut used = reversed;
    if reversed == path_len && record.path[0] != b'/' {
        key.set_byte(reversed, b'/');
        used += 1;
    }
    key.prefix_bits = (used * 8) as u32;
    REVERSE_MATCH.get(key.as_lpm_key()).copied()
}

/// Returns the eight bytes starting `low_shift / 8` bytes into word `index`, in reverse order.
#[inline(always)]
fn reversed_chunk(words: *const u64, index: usize, low_shift: u32) -> u64 {
    // SAFETY: callers pass an `index` of at most 31 + 7, so the words at `index` and
    // `index + 1` lie between REVERSE_LEN bytes before `path` and the end of the record;
    // `path` starts at byte 80 and fills the record to its end (asserted below and in
    // monitor-common), and `words` is 8-byte aligned because `path` is.
    let (low, high) = unsafe { (words.add(index).read(), words.add(index + 1).read()) };
    // `high << 1 << (63 - low_shift)` is `high << (64 - low_shift)`, and 0 when low_shift is
    // 0, without an undefined 64-bit shift.
    let bytes = (low >> low_shift) | ((high << 1) << (63 - low_shift));
    bytes.swap_bytes()
}

const _: () = assert!(REVERSE_LEN % 8 == 0);
const _: () = assert!(core::mem::offset_of!(OpenRecord, path) >= REVERSE_LEN);
const _: () = assert!(core::mem::offset_of!(OpenRecord, path) % 8 == 0);
const _: () =
    assert!(core::mem::offset_of!(OpenRecord, path) + PATH_LEN == size_of::<OpenRecord>());

/// `//`, `/./` and `/..` (which includes `/..data`) as big-endian byte windows.
const SLASH_SLASH: u32 = 0x2f2f;
const SLASH_DOT_SLASH: u32 = 0x2f2e2f;
const SLASH_DOT_END: u32 = 0x2f2e00;
const SLASH_DOT_DOT: u32 = 0x2f2e2e;

/// Classifies the path as relative or non-canonical. Runs only for matched opens.
#[inline(always)]
fn path_flags(path: &[u8; PATH_LEN], path_len: usize) -> u32 {
    let mut flags = 0;
    if path_len >= PATH_LEN - 1 {
        flags |= PATH_TRUNCATED;
    }
    if path[0] != b'/' {
        flags |= PATH_RELATIVE;
    }
    // Slide a three-byte window over the path and its terminating NUL. Every comparison either
    // ends the loop or leaves nothing the verifier could track, which keeps its state count flat.
    let mut window = 0u32;
    for i in 0..PATH_LEN {
        if i > path_len {
            break;
        }
        window = ((window << 8) | u32::from(path[i])) & 0xff_ffff;
        let non_canonical = window & 0xffff == SLASH_SLASH
            || window == SLASH_DOT_SLASH
            || window == SLASH_DOT_END
            || window == SLASH_DOT_DOT;
        if non_canonical {
            flags |= PATH_NON_CANONICAL;
            break;
        }
    }
    flags
}

#[inline(always)]
fn try_exit(ctx: &TracePointContext) -> Result<(), ()> {
    if !any_pending() {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let pending = PENDING_OPENS.get_ptr_mut(&pid_tgid).ok_or(())?;
    let result = read_arg(ctx, RET) as i64;
    // SAFETY: the pointer comes from a successful lookup. Only this thread writes the entry
    // for its own pid_tgid, and it is inside this system call.
    let pending = unsafe { &mut *pending };
    if pending.path_flags & PATH_DEFERRED != 0 {
        let sent = exit_deferred(pending, result);
        forget_pending(pid_tgid);
        return sent;
    }
    pending.result = result;
    let sent = EVENTS.output::<OpenRecord>(&*pending, 0);
    forget_pending(pid_tgid);
    match sent {
        Ok(()) => count(counters::RECORDS_EMITTED),
        Err(_) => count(counters::RINGBUF_FULL),
    }
    Ok(())
}

#[inline(always)]
fn forget_pending(pid_tgid: u64) {
    if PENDING_OPENS.remove(&pid_tgid).is_ok() {
        add_pending(-1);
    }
}

/// Reads and matches a path the entry program could not read, and sends the record when it
/// matches.
#[inline(always)]
fn exit_deferred(pending: &OpenRecord, result: i64) -> Result<(), ()> {
    let scratch = OPEN_SCRATCH.get_ptr_mut(0).ok_or(())?;
    // SAFETY: as in try_enter, a per-CPU scratch value used by this program run alone.
    let scratch = unsafe { &mut *scratch };
    let filename = pending.result as u64 as *const u8;
    scratch.record.syscall = pending.syscall;
    scratch.record.dfd = pending.dfd;
    scratch.record.open_flags = pending.open_flags;
    scratch.record.boot_ns = pending.boot_ns;

    let Ok(path_len) = read_path(filename, &mut scratch.record.path) else {
        count(counters::PATH_READ_FAILED);
        return Err(());
    };
    let (value, path_flags) = match_path(scratch, path_len).ok_or(())?;
    fill_match(&mut scratch.record, value, path_len, path_flags);
    // NOTE: a relative path read only at exit gets no directory record, because the walk is
    // a tail call that would end this program before it sends the open record; the daemon
    // resolves it from /proc instead.
    scratch.record.result = result;
    count(counters::OPENS_MATCHED);
    match EVENTS.output::<OpenRecord>(&scratch.record, 0) {
        Ok(()) => count(counters::RECORDS_EMITTED),
        Err(_) => count(counters::RINGBUF_FULL),
    }
    Ok(())
}
