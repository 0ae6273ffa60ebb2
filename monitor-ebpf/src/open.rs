//! Credential-file opens: `syscalls:sys_enter_open{,at,at2}` and the matching exit tracepoints.
//!
//! Kernel interface: the per-syscall tracepoints (`CONFIG_FTRACE_SYSCALLS`, Linux 2.6.33+;
//! `openat2` since 5.6). Their records have the common 8-byte header, the syscall number, then
//! every argument as an 8-byte slot from offset 16; the exit record has the return value at
//! offset 16. These tracepoints were chosen over fentry on `do_sys_openat2` or an LSM
//! `file_open` hook because they load on every kernel with tracing, including ones that deny
//! fentry and LSM programs; they see the path as the process passed it, which the daemon
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
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_ktime_get_boot_ns, generated,
    },
    macros::tracepoint,
    maps::lpm_trie::Key,
    programs::TracePointContext,
};
use monitor_common::{
    catalogue::{MATCH_CANDIDATE, MatchValue, PATH_LEN, REVERSE_LEN},
    counters,
    open::{
        AT_FDCWD, OpenRecord, PATH_DEFERRED, PATH_NON_CANONICAL, PATH_RELATIVE, PATH_TRUNCATED,
        syscall,
    },
    record::kind,
};

use crate::maps::{
    DAEMON_TGID, EVENTS, FORWARD_MATCH, OPEN_SCRATCH, OpenScratch, PENDING_OPENS, REVERSE_MATCH,
    count,
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
    // openat2(dfd, filename, how, usize): the flags live in `how`, which the daemon does not
    // need, so the record carries 0.
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

fn enter(ctx: &TracePointContext, syscall: u32, dfd_at: Option<usize>, filename_at: usize) -> u32 {
    let _ = try_enter(ctx, syscall, dfd_at, filename_at);
    0
}

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
    // SAFETY: the pointer comes from a successful per-CPU array lookup; it stays valid for the
    // whole program run and no other program runs on this CPU meanwhile.
    let scratch = unsafe { &mut *scratch };

    // SAFETY: the offset lies inside the tracepoint record, whose layout the module doc states.
    let filename = unsafe { ctx.read_at::<u64>(filename_at) }.map_err(|_| ())?;
    let dfd = match dfd_at {
        // SAFETY: as above, the offset lies inside the tracepoint record.
        Some(at) => unsafe { ctx.read_at::<u64>(at) }.map_err(|_| ())? as i32,
        None => AT_FDCWD,
    };
    let record = &mut scratch.record;
    record.syscall = syscall;
    record.dfd = dfd;
    record.open_flags = open_flags(ctx, syscall, filename_at);
    // SAFETY: these helpers take no pointers and are allowed in tracepoint programs.
    record.boot_ns = unsafe { bpf_ktime_get_boot_ns() };

    match read_path(filename as *const u8, &mut record.path) {
        Ok(path_len) => {
            let Some((value, path_flags)) = match_path(scratch, path_len) else {
                return Ok(());
            };
            fill_match(&mut scratch.record, value, path_len, path_flags);
            keep_pending(pid_tgid, &scratch.record, counters::OPENS_MATCHED)
        }
        Err(()) => {
            // The string is not resident yet; the kernel faults it in while it opens the
            // file, so the exit program reads it again.
            record.result = filename as i64;
            record.path_flags = PATH_DEFERRED;
            keep_pending(pid_tgid, record, counters::PATH_READ_DEFERRED)
        }
    }
}

/// Stores the record until the exit tracepoint and counts it under `counter`.
#[inline(always)]
fn keep_pending(pid_tgid: u64, record: &OpenRecord, counter: u32) -> Result<(), ()> {
    if PENDING_OPENS.insert(pid_tgid, record, 0).is_err() {
        count(counters::PENDING_FULL);
        return Err(());
    }
    count(counter);
    Ok(())
}

/// Matches the path in `scratch.record.path` against both tries. Returns the matching value
/// and the path flags, or `None` when the open is not worth sending.
#[inline(always)]
fn match_path(scratch: &mut OpenScratch, path_len: usize) -> Option<(MatchValue, u32)> {
    let record = &mut scratch.record;
    record.lpm_prefix_bits = ((path_len + 1) * 8) as u32;
    let value = match lookup_forward(record) {
        Some(value) => value,
        None => lookup_reverse(&record.path, path_len, &mut scratch.reverse)?,
    };
    let path_flags = path_flags(&scratch.record.path, path_len);
    if value.flags & MATCH_CANDIDATE != 0 {
        // A bare name such as `token` or `credentials` only hints at a credential when the
        // path still needs resolving; an absolute canonical path was already checked in full.
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
#[inline(always)]
fn lookup_reverse(
    path: &[u8; PATH_LEN],
    path_len: usize,
    key: &mut Key<[u8; REVERSE_LEN]>,
) -> Option<MatchValue> {
    // The length is computed before the loop, not counted in it, so that the verifier sees
    // one state after the loop instead of one per possible exit iteration.
    let reversed = if path_len < REVERSE_LEN - 1 {
        path_len
    } else {
        REVERSE_LEN - 1
    };
    let mut data = [0u8; REVERSE_LEN];
    for i in 0..REVERSE_LEN - 1 {
        if i >= reversed {
            break;
        }
        data[i] = path[(path_len - 1 - i) & (PATH_LEN - 1)];
    }
    let mut used = reversed;
    if reversed == path_len && path[0] != b'/' {
        data[reversed & (REVERSE_LEN - 1)] = b'/';
        used += 1;
    }
    key.prefix_len = (used * 8) as u32;
    key.data = data;
    REVERSE_MATCH.get(&*key).copied()
}

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
fn open_flags(ctx: &TracePointContext, syscall: u32, filename_at: usize) -> u32 {
    if syscall == syscall::OPENAT2 {
        return 0;
    }
    // SAFETY: the flags slot follows the filename slot inside the tracepoint record.
    unsafe { ctx.read_at::<u64>(filename_at + ARG_SLOT) }.unwrap_or(0) as u32
}

#[inline(always)]
fn try_exit(ctx: &TracePointContext) -> Result<(), ()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let pending = PENDING_OPENS.get_ptr_mut(&pid_tgid).ok_or(())?;
    // SAFETY: the offset lies inside the `sys_exit_*` record.
    let result = unsafe { ctx.read_at::<i64>(RET) }.unwrap_or(0);
    // SAFETY: the pointer comes from a successful lookup. Only this thread writes the entry
    // for its own pid_tgid, and it is inside this system call.
    let pending = unsafe { &mut *pending };
    if pending.path_flags & PATH_DEFERRED != 0 {
        let sent = exit_deferred(pending, result);
        let _ = PENDING_OPENS.remove(&pid_tgid);
        return sent;
    }
    pending.result = result;
    let sent = EVENTS.output::<OpenRecord>(&*pending, 0);
    let _ = PENDING_OPENS.remove(&pid_tgid);
    match sent {
        Ok(()) => count(counters::RECORDS_EMITTED),
        Err(_) => count(counters::RINGBUF_FULL),
    }
    Ok(())
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
    scratch.record.result = result;
    count(counters::OPENS_MATCHED);
    match EVENTS.output::<OpenRecord>(&scratch.record, 0) {
        Ok(()) => count(counters::RECORDS_EMITTED),
        Err(_) => count(counters::RINGBUF_FULL),
    }
    Ok(())
}
