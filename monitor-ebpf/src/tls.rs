//! TLS library calls: uprobes on OpenSSL, BoringSSL and GnuTLS functions.
//!
//! Kernel interface: uprobes and uretprobes (Linux 4.17+ for attaching by path through
//! perf events) with attach cookies (Linux 5.15+). The daemon attaches the same few programs
//! to many functions and libraries; the cookie names the function and library of each hit (see
//! `monitor_common::tls::cookie`). The programs copy arguments and return values only: the
//! server name string is the one user buffer they read, and no payload is touched.
//!
//! A blocking client's handshake sends one record. The session's state and server name wait
//! in `TLS_SESSIONS` and `TLS_NAMES` until the handshake function returns, and the end of a
//! session sends a record only when its handshake never succeeded. Each record costs the
//! daemon work, so calls that decide nothing stay in the kernel.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_ktime_get_boot_ns, bpf_probe_read_user, bpf_probe_read_user_buf,
        bpf_probe_read_user_str_bytes, generated::bpf_get_attach_cookie,
    },
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use monitor_common::{
    counters,
    network::Peer,
    record::kind,
    tls::{
        CallArguments, CallKey, SERVER_NAME_LEN, SESSION_ATTEMPTED, SESSION_CLIENT, SESSION_DONE,
        SESSION_SERVER, SessionKey, SessionState, TLS_HANDSHAKE_DONE, TLS_HAS_NAME,
        TLS_NAME_TRUNCATED, TLS_RETURN, TLS_STATE_KNOWN, TlsRecord, cookie, function,
    },
};

use crate::maps::{
    DAEMON_TGID, EVENTS, LAST_PEER, TLS_CALLS, TLS_NAME_SCRATCH, TLS_NAMES, TLS_SESSIONS, count,
};

/// Submit flag that leaves the daemon asleep: a wake-up per handshake kept the daemon busy.
/// The daemon drains TLS records on its next wake-up or on its 50 ms drain timer.
const NO_WAKEUP: u64 = aya_ebpf::bindings::BPF_RB_NO_WAKEUP as u64;

/// OpenSSL `SSL_CTRL_SET_TLSEXT_HOSTNAME`.
const SSL_CTRL_SET_TLSEXT_HOSTNAME: u64 = 55;
/// OpenSSL `TLSEXT_NAMETYPE_host_name`.
const TLSEXT_NAMETYPE_HOST_NAME: u64 = 0;
/// GnuTLS `GNUTLS_NAME_DNS`.
const GNUTLS_NAME_DNS: u64 = 1;
/// GnuTLS `GNUTLS_SERVER` flag of `gnutls_init`.
const GNUTLS_SERVER: u64 = 1;

/// `SSL_ctrl(ssl, cmd, larg, parg)`: keeps the server name when `cmd` sets it.
#[uprobe]
pub fn tls_name_ctrl(ctx: ProbeContext) -> u32 {
    let cmd: u64 = ctx.arg(1).unwrap_or(0);
    let name_type: u64 = ctx.arg(2).unwrap_or(u64::MAX);
    if cmd == SSL_CTRL_SET_TLSEXT_HOSTNAME && name_type == TLSEXT_NAMETYPE_HOST_NAME {
        let session: u64 = ctx.arg(0).unwrap_or(0);
        let name: u64 = ctx.arg(3).unwrap_or(0);
        keep_name(session, name, None);
    }
    0
}

/// `SSL_set_tlsext_host_name(ssl, name)` where the library exports it as a function.
#[uprobe]
pub fn tls_name_string(ctx: ProbeContext) -> u32 {
    let session: u64 = ctx.arg(0).unwrap_or(0);
    let name: u64 = ctx.arg(1).unwrap_or(0);
    keep_name(session, name, None);
    0
}

/// `gnutls_server_name_set(session, type, name, length)`.
#[uprobe]
pub fn tls_name_gnutls(ctx: ProbeContext) -> u32 {
    let name_type: u64 = ctx.arg(1).unwrap_or(0);
    if name_type == GNUTLS_NAME_DNS {
        let session: u64 = ctx.arg(0).unwrap_or(0);
        let name: u64 = ctx.arg(2).unwrap_or(0);
        let length: u64 = ctx.arg(3).unwrap_or(0);
        keep_name(session, name, Some(length));
    }
    0
}

/// Entry of a function whose return matters: keeps its first two arguments for the return.
#[uprobe]
pub fn tls_call(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_daemon(pid_tgid) {
        return 0;
    }
    save_arguments(&ctx, pid_tgid);
    0
}

/// Entry of `SSL_read` or `SSL_write`. These functions run for every record of every session,
/// so a session that is not a client in its handshake costs one map lookup. When the daemon
/// found the offset of the session's `in_init` field, the program reads it. A finished
/// handshake is reported at once, without any return probe. An unfinished one sends a record
/// at its first attempt only, so that the daemon tracks the session if its process exits
/// without freeing it. Without the offset the program keeps the arguments for `tls_return`,
/// which the daemon then attaches to these functions.
#[uprobe]
pub fn tls_io_call(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let session: u64 = ctx.arg(0).unwrap_or(0);
    let key = session_key(pid_tgid, session);
    let Some(state) = live_session(&key) else {
        first_attempt(&ctx, pid_tgid, &key);
        return 0;
    };
    if state.flags & (SESSION_CLIENT | SESSION_DONE) != SESSION_CLIENT {
        return 0;
    }
    let cookie = cookie_of(&ctx);
    let Some(done) = handshake_done(cookie, session) else {
        save_arguments(&ctx, pid_tgid);
        return 0;
    };
    let started_ns = if done {
        state.flags |= SESSION_DONE;
        state.started_ns
    } else if state.flags & SESSION_ATTEMPTED == 0 {
        // SAFETY: the helper takes no arguments.
        let now = unsafe { bpf_ktime_get_boot_ns() };
        state.flags |= SESSION_ATTEMPTED;
        state.started_ns = now;
        now
    } else {
        return 0;
    };
    let Some(mut entry) = EVENTS.reserve::<TlsRecord>(0) else {
        count(counters::RINGBUF_FULL);
        return 0;
    };
    // SAFETY: as in tls_mark.
    let record = unsafe { &mut *entry.as_mut_ptr() };
    fill(record, pid_tgid, cookie, session);
    record.flags |= TLS_STATE_KNOWN;
    record.entered_ns = started_ns;
    if done {
        record.flags |= TLS_HANDSHAKE_DONE;
        record.version = read_version(cookie, session);
    }
    take_name(record, &key);
    copy_last_peer(record, pid_tgid);
    entry.submit(NO_WAKEUP);
    count(counters::RECORDS_EMITTED);
    0
}

/// Starts tracking a session at its first read or write when it is a client in a handshake,
/// with a record for the attempt. This needs the offsets of `in_init` and `server` in the
/// cookie (the role functions have no probe then). An established session costs one field
/// read.
#[inline(always)]
fn first_attempt(ctx: &ProbeContext, pid_tgid: u64, key: &SessionKey) {
    let cookie = cookie_of(ctx);
    if (cookie >> cookie::SERVER_SHIFT) & cookie::SERVER_MASK == 0 {
        return;
    }
    if handshake_done(cookie, key.session) != Some(false) {
        return;
    }
    match is_server_session(cookie, key.session) {
        Some(false) => {}
        Some(true) => {
            count(counters::TLS_SERVER_CALLS);
            return;
        }
        None => return,
    }
    // SAFETY: the helper takes no arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    store_state(key, client_state(SESSION_ATTEMPTED, now));
    let Some(mut entry) = EVENTS.reserve::<TlsRecord>(0) else {
        count(counters::RINGBUF_FULL);
        return;
    };
    // SAFETY: as in tls_mark.
    let record = unsafe { &mut *entry.as_mut_ptr() };
    fill(record, pid_tgid, cookie, key.session);
    record.flags |= TLS_STATE_KNOWN;
    record.entered_ns = now;
    take_name(record, key);
    copy_last_peer(record, pid_tgid);
    entry.submit(NO_WAKEUP);
    count(counters::RECORDS_EMITTED);
}

/// Reads the session's `server` field when the cookie carries its offset: `Some(true)` for a
/// server session, `None` when the offset or the read is missing.
#[inline(always)]
fn is_server_session(cookie: u64, session: u64) -> Option<bool> {
    let field = (cookie >> cookie::SERVER_SHIFT) & cookie::SERVER_MASK;
    if field == 0 {
        return None;
    }
    let address = session.wrapping_add((field - 1) * 4);
    // SAFETY: bpf_probe_read_user checks the user address and fails instead of faulting.
    let server = unsafe { bpf_probe_read_user(address as *const i32) }.ok()?;
    Some(server != 0)
}

/// Reads the session's `in_init` field when the cookie carries its offset: `Some(true)` once
/// a handshake has finished successfully, `None` when the offset or the read is missing.
#[inline(always)]
fn handshake_done(cookie: u64, session: u64) -> Option<bool> {
    let field = (cookie >> cookie::IN_INIT_SHIFT) & cookie::IN_INIT_MASK;
    if field == 0 {
        return None;
    }
    let address = session.wrapping_add(field - 1);
    // SAFETY: bpf_probe_read_user checks the user address and fails instead of faulting.
    let in_init = unsafe { bpf_probe_read_user(address as *const i32) }.ok()?;
    Some(in_init == 0)
}

/// Reads the protocol version from the start of the `SSL` object when the cookie marks the
/// library as keeping it there; 0 otherwise.
#[inline(always)]
fn read_version(cookie: u64, session: u64) -> u32 {
    if cookie & cookie::VERSION_AT_START == 0 {
        return 0;
    }
    // SAFETY: bpf_probe_read_user checks the user address and fails instead of faulting.
    unsafe { bpf_probe_read_user(session as *const i32) }.unwrap_or(0) as u32
}

/// Keeps the first two arguments and the time of a call for its return probe. The entry of
/// a thread and function is overwritten in place, which costs less than a new element.
#[inline(always)]
fn save_arguments(ctx: &ProbeContext, pid_tgid: u64) {
    let key = CallKey {
        pid_tgid,
        function: cookie_of(ctx) & cookie::FUNCTION_MASK,
    };
    let arguments = CallArguments {
        first: ctx.arg(0).unwrap_or(0),
        second: ctx.arg(1).unwrap_or(0),
        // SAFETY: the helper takes no arguments.
        entered_ns: unsafe { bpf_ktime_get_boot_ns() },
    };
    match TLS_CALLS.get_ptr_mut(&key) {
        // SAFETY: the pointer comes from a successful lookup, and only this thread uses the
        // key.
        Some(slot) => unsafe { *slot = arguments },
        None => {
            let _ = TLS_CALLS.insert(&key, &arguments, 0);
        }
    }
}

/// Return of a function whose entry `tls_call` saw: sends the return value.
#[uretprobe]
pub fn tls_return(ctx: RetProbeContext) -> u32 {
    let _ = try_return(&ctx);
    0
}

/// A function whose call alone matters: the role (`SSL_set_connect_state`,
/// `SSL_set_accept_state`) or the end of the session (`SSL_free`, `gnutls_deinit`).
#[uprobe]
pub fn tls_mark(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_daemon(pid_tgid) {
        return 0;
    }
    let cookie = cookie_of(&ctx);
    let session: u64 = ctx.arg(0).unwrap_or(0);
    let key = session_key(pid_tgid, session);
    match (cookie & cookie::FUNCTION_MASK) as u8 {
        function::SSL_SET_CONNECT_STATE => {
            // Replaces whatever a freed object at the same address left.
            store_state(&key, client_state(0, 0));
        }
        function::SSL_SET_ACCEPT_STATE => mark_server(&key),
        function::SSL_FREE | function::GNUTLS_DEINIT => end_session(pid_tgid, cookie, &key),
        _ => {}
    }
    0
}

/// Clears the entry of a session that ended, and sends a record when a handshake was tried and
/// had not succeeded, so that the daemon reports the failure.
#[inline(always)]
fn end_session(pid_tgid: u64, cookie: u64, key: &SessionKey) {
    let Some(entry) = live_session(key) else {
        let _ = TLS_NAMES.remove(key);
        return;
    };
    let state = *entry;
    // The entry stays, cleared: the next session at this address, which allocators hand out
    // again at once, then overwrites it in place instead of adding an element.
    entry.flags = 0;
    if state.flags & (SESSION_ATTEMPTED | SESSION_DONE | SESSION_SERVER) != SESSION_ATTEMPTED {
        let _ = TLS_NAMES.remove(key);
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<TlsRecord>(0) else {
        count(counters::RINGBUF_FULL);
        return;
    };
    // SAFETY: the reservation is size_of::<TlsRecord>() bytes, 8-byte aligned, and owned by
    // this program until it is submitted.
    let record = unsafe { &mut *entry.as_mut_ptr() };
    fill(record, pid_tgid, cookie, key.session);
    record.entered_ns = state.started_ns;
    if let Some(done) = handshake_done(cookie, key.session) {
        record.flags |= TLS_STATE_KNOWN;
        if done {
            record.flags |= TLS_HANDSHAKE_DONE;
            record.version = read_version(cookie, key.session);
        }
    }
    take_name(record, key);
    copy_last_peer(record, pid_tgid);
    entry.submit(NO_WAKEUP);
    count(counters::RECORDS_EMITTED);
}

/// Marks a server session and counts the call as dropped. An existing entry (a client object
/// at a reused address) becomes a server.
#[inline(always)]
fn mark_server(key: &SessionKey) {
    let state = SessionState {
        flags: SESSION_SERVER,
        reserved: 0,
        started_ns: 0,
    };
    count(counters::TLS_SERVER_CALLS);
    store_state(key, state);
}

/// Returns the session's entry unless it is missing or cleared (flags 0, left by the end of
/// an earlier session at the same address).
#[inline(always)]
fn live_session(key: &SessionKey) -> Option<&'static mut SessionState> {
    let state = TLS_SESSIONS.get_ptr_mut(key)?;
    // SAFETY: the pointer comes from a successful lookup and stays valid for this program run.
    // Only threads of this process use the key, and the fields are plain integers.
    let state = unsafe { &mut *state };
    (state.flags != 0).then_some(state)
}

/// Stores a session's state, in place when the map has an entry for it (a cleared one, most
/// of the time), which costs less than a new element.
#[inline(always)]
fn store_state(key: &SessionKey, state: SessionState) {
    match TLS_SESSIONS.get_ptr_mut(key) {
        // SAFETY: the pointer comes from a successful lookup; only threads of this process use
        // the key.
        Some(existing) => unsafe { *existing = state },
        None => {
            let _ = TLS_SESSIONS.insert(key, &state, 0);
        }
    }
}

#[inline(always)]
fn client_state(flags: u32, started_ns: u64) -> SessionState {
    SessionState {
        flags: SESSION_CLIENT | flags,
        reserved: 0,
        started_ns,
    }
}

#[inline(always)]
fn session_key(pid_tgid: u64, session: u64) -> SessionKey {
    SessionKey {
        tgid: pid_tgid >> 32,
        session,
    }
}

#[inline(always)]
fn try_return(ctx: &RetProbeContext) -> Result<(), ()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_daemon(pid_tgid) {
        return Ok(());
    }
    let cookie = cookie_of(ctx);
    let function = (cookie & cookie::FUNCTION_MASK) as u8;
    let call_key = CallKey {
        pid_tgid,
        function: function as u64,
    };
    let arguments = match TLS_CALLS.get_ptr_mut(&call_key) {
        // SAFETY: the pointer comes from a successful lookup, and only this thread uses the
        // key; the value is copied, then marked as used.
        Some(saved) if unsafe { (*saved).entered_ns } != 0 => unsafe {
            let arguments = *saved;
            (*saved).entered_ns = 0;
            arguments
        },
        _ => {
            // Reads and writes on established sessions have no saved entry by design.
            if !matches!(function, function::SSL_READ | function::SSL_WRITE) {
                count(counters::TLS_RETURNS_UNMATCHED);
            }
            return Err(());
        }
    };
    // Every hooked function returns a C `int`; the upper half of the register is undefined.
    let result = ctx.ret::<u64>() as u32 as i32 as i64;

    if function == function::GNUTLS_INIT {
        start_gnutls_session(pid_tgid, &arguments, result);
        return Ok(());
    }
    let session = arguments.first;
    if is_server_session(cookie, session) == Some(true) {
        count(counters::TLS_SERVER_CALLS);
        return Ok(());
    }
    let key = session_key(pid_tgid, session);
    if !track_outcome(&key, function, result, arguments.entered_ns) {
        return Ok(());
    }
    let Some(mut entry) = EVENTS.reserve::<TlsRecord>(0) else {
        count(counters::RINGBUF_FULL);
        return Err(());
    };
    // SAFETY: as in tls_mark.
    let record = unsafe { &mut *entry.as_mut_ptr() };
    fill(record, pid_tgid, cookie, session);
    record.flags |= TLS_RETURN;
    record.result = result;
    record.argument = arguments.second;
    record.entered_ns = arguments.entered_ns;
    if result > 0 {
        // Only after a successful handshake is the version the negotiated one: OpenSSL
        // stores its highest version there when it sends the ClientHello.
        record.version = read_version(cookie, session);
    }
    take_name(record, &key);
    copy_last_peer(record, pid_tgid);
    entry.submit(NO_WAKEUP);
    count(counters::RECORDS_EMITTED);
    Ok(())
}

/// `gnutls_init(gnutls_session_t *session, flags)` stores the new session through its first
/// argument. A client session enters `TLS_SESSIONS`, replacing whatever a session at the same
/// address left; a server session is marked. Neither sends a record.
#[inline(always)]
fn start_gnutls_session(pid_tgid: u64, arguments: &CallArguments, result: i64) {
    if result != 0 {
        return;
    }
    // SAFETY: bpf_probe_read_user checks the user address and fails instead of faulting.
    let session = unsafe { bpf_probe_read_user(arguments.first as *const u64) }.unwrap_or(0);
    if session == 0 {
        return;
    }
    let key = session_key(pid_tgid, session);
    if arguments.second & GNUTLS_SERVER != 0 {
        mark_server(&key);
    } else {
        store_state(&key, client_state(0, 0));
    }
}

/// Updates the session after a handshake function returned and returns whether the return
/// sends a record: not on a server session, nor once a success was sent (`SSL_connect` returns
/// after the `SSL_do_handshake` it called). A failure marks the session as tried, so that its
/// end sends a record.
#[inline(always)]
fn track_outcome(key: &SessionKey, function: u8, result: i64, entered_ns: u64) -> bool {
    let success = if function == function::GNUTLS_HANDSHAKE {
        result == 0
    } else {
        result > 0
    };
    let outcome = if success {
        SESSION_DONE
    } else {
        SESSION_ATTEMPTED
    };
    let Some(state) = live_session(key) else {
        store_state(key, client_state(outcome, entered_ns));
        return true;
    };
    if state.flags & SESSION_SERVER != 0 {
        count(counters::TLS_SERVER_CALLS);
        return false;
    }
    if state.flags & SESSION_DONE != 0 {
        return false;
    }
    if state.flags & SESSION_ATTEMPTED == 0 {
        state.started_ns = entered_ns;
    }
    state.flags |= outcome;
    true
}

/// Keeps the server name at `name` for the session's next record: a NUL-terminated string, or
/// `length` bytes when the function takes a length.
#[inline(always)]
fn keep_name(session: u64, name: u64, length: Option<u64>) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_daemon(pid_tgid) || name == 0 {
        return;
    }
    let Some(pending) = TLS_NAME_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the pointer comes from a successful per-CPU array lookup, and programs do not
    // preempt each other on one CPU.
    let pending = unsafe { &mut *pending };
    let mut flags = 0;
    let read = match length {
        Some(length) => read_counted(&mut pending.name, name, length, &mut flags),
        None => read_terminated(&mut pending.name, name, &mut flags),
    };
    let Some(len) = read else {
        return;
    };
    pending.len = len;
    pending.flags = u32::from(flags);
    let _ = TLS_NAMES.insert(&session_key(pid_tgid, session), pending, 0);
}

/// Moves the session's pending server name, if any, into the record.
#[inline(always)]
fn take_name(record: &mut TlsRecord, key: &SessionKey) {
    let Some(pending) = TLS_NAMES.get_ptr(key) else {
        return;
    };
    // SAFETY: the pointer comes from a successful lookup; the name is copied before the
    // entry is removed.
    let pending = unsafe { &*pending };
    record.name = pending.name;
    record.name_len = pending.len;
    record.flags |= TLS_HAS_NAME | (pending.flags as u16 & TLS_NAME_TRUNCATED);
    let _ = TLS_NAMES.remove(key);
}

/// Reads a NUL-terminated name and returns its length without the NUL.
#[inline(always)]
fn read_terminated(buffer: &mut [u8; SERVER_NAME_LEN], name: u64, flags: &mut u16) -> Option<u32> {
    // SAFETY: the helper checks the user address and writes at most the buffer's length.
    let read = unsafe { bpf_probe_read_user_str_bytes(name as *const u8, buffer) }.ok()?;
    let len = read.len();
    if len >= SERVER_NAME_LEN - 1 {
        *flags |= TLS_NAME_TRUNCATED;
    }
    Some(len as u32)
}

/// Reads a name of `length` bytes, cut to the buffer.
#[inline(always)]
fn read_counted(
    buffer: &mut [u8; SERVER_NAME_LEN],
    name: u64,
    length: u64,
    flags: &mut u16,
) -> Option<u32> {
    let mut len = length as usize;
    if len >= SERVER_NAME_LEN {
        *flags |= TLS_NAME_TRUNCATED;
        len = SERVER_NAME_LEN - 1;
    }
    // Keeps the bound visible to the verifier after the compiler's rewrites.
    let len = core::hint::black_box(len) & (SERVER_NAME_LEN - 1);
    if len == 0 {
        return None;
    }
    // SAFETY: the helper checks the user address; the slice is at most the buffer's length.
    unsafe { bpf_probe_read_user_buf(name as *const u8, &mut buffer[..len]) }.ok()?;
    Some(len as u32)
}

/// Copies the peer the thread connected to last into the record.
#[inline(always)]
fn copy_last_peer(record: &mut TlsRecord, pid_tgid: u64) {
    if let Some(peer) = LAST_PEER.get_ptr(&pid_tgid) {
        // SAFETY: the pointer comes from a successful lookup; the value is copied at once.
        record.peer = unsafe { *peer };
    }
}

/// Sets the fields every TLS record has and clears the rest.
#[inline(always)]
fn fill(record: &mut TlsRecord, pid_tgid: u64, cookie: u64, session: u64) {
    let uid_gid = bpf_get_current_uid_gid();
    record.kind = kind::TLS;
    record.pid = (pid_tgid >> 32) as u32;
    record.tid = pid_tgid as u32;
    record.uid = uid_gid as u32;
    record.function = (cookie & cookie::FUNCTION_MASK) as u8;
    record.reserved = 0;
    record.flags = 0;
    record.name_len = 0;
    record.library = (cookie >> cookie::LIBRARY_SHIFT) as u32;
    record.version = 0;
    record.result = 0;
    record.session = session;
    record.argument = 0;
    // SAFETY: these helpers take no pointers.
    record.boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    // SAFETY: as above.
    record.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    record.entered_ns = 0;
    record.peer = Peer::default();
    count(counters::TLS_CALLS);
}

#[inline(always)]
fn cookie_of<C: EbpfContext>(ctx: &C) -> u64 {
    // SAFETY: the helper only reads the cookie of the running program's attachment.
    unsafe { bpf_get_attach_cookie(ctx.as_ptr()) }
}

#[inline(always)]
fn is_daemon(pid_tgid: u64) -> bool {
    (pid_tgid >> 32) as u32 == DAEMON_TGID.load()
}
