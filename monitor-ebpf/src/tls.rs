//! TLS library calls: uprobes on OpenSSL, BoringSSL and GnuTLS functions.
//!
//! Kernel interface: uprobes and uretprobes (Linux 4.17+ for attaching by path through
//! perf events) with attach cookies (Linux 5.15+). The daemon attaches the same few programs
//! to many functions and libraries; the cookie names the function and library of each hit (see
//! `monitor_common::tls::cookie`). The programs copy arguments and return values only: the
//! server name string is the one user buffer they read, and no payload is touched.

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
        CallArguments, CallKey, SERVER_NAME_LEN, SessionKey, TLS_HANDSHAKE_DONE, TLS_HAS_NAME,
        TLS_NAME_TRUNCATED, TLS_RETURN, TLS_STATE_KNOWN, TlsRecord, cookie, function,
    },
};

use crate::maps::{DAEMON_TGID, EVENTS, LAST_PEER, TLS_CALLS, TLS_HANDSHAKING, TLS_SERVERS, count};

/// Submit flag that leaves the daemon asleep. A handshake sends several TLS records, and a
/// wake-up for each kept the daemon busy. The daemon drains them on its next wake-up or on its
/// 50 ms drain timer.
const NO_WAKEUP: u64 = aya_ebpf::bindings::BPF_RB_NO_WAKEUP as u64;

/// OpenSSL `SSL_CTRL_SET_TLSEXT_HOSTNAME`.
const SSL_CTRL_SET_TLSEXT_HOSTNAME: u64 = 55;
/// OpenSSL `TLSEXT_NAMETYPE_host_name`.
const TLSEXT_NAMETYPE_HOST_NAME: u64 = 0;
/// GnuTLS `GNUTLS_NAME_DNS`.
const GNUTLS_NAME_DNS: u64 = 1;
/// GnuTLS `GNUTLS_SERVER` flag of `gnutls_init`.
const GNUTLS_SERVER: u64 = 1;

/// `SSL_ctrl(ssl, cmd, larg, parg)`: sends the server name when `cmd` sets it.
#[uprobe]
pub fn tls_name_ctrl(ctx: ProbeContext) -> u32 {
    let cmd: u64 = ctx.arg(1).unwrap_or(0);
    let name_type: u64 = ctx.arg(2).unwrap_or(u64::MAX);
    if cmd == SSL_CTRL_SET_TLSEXT_HOSTNAME && name_type == TLSEXT_NAMETYPE_HOST_NAME {
        let session: u64 = ctx.arg(0).unwrap_or(0);
        let name: u64 = ctx.arg(3).unwrap_or(0);
        send_name(&ctx, session, name, None);
    }
    0
}

/// `SSL_set_tlsext_host_name(ssl, name)` where the library exports it as a function.
#[uprobe]
pub fn tls_name_string(ctx: ProbeContext) -> u32 {
    let session: u64 = ctx.arg(0).unwrap_or(0);
    let name: u64 = ctx.arg(1).unwrap_or(0);
    send_name(&ctx, session, name, None);
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
        send_name(&ctx, session, name, Some(length));
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

/// Entry of `SSL_read` or `SSL_write` on a client session whose handshake has not finished.
/// These functions run for every record of every session, so an established session costs a
/// map lookup. When the daemon found the offset of the session's `in_init` field, the program
/// reads it: 0 means an earlier call finished the handshake, which is reported without any
/// return probe. Otherwise it keeps the arguments for `tls_return`, which the daemon then
/// attaches to these functions.
#[uprobe]
pub fn tls_io_call(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let session: u64 = ctx.arg(0).unwrap_or(0);
    let key = SessionKey {
        tgid: pid_tgid >> 32,
        session,
    };
    // SAFETY: the value is only tested for presence.
    if unsafe { TLS_HANDSHAKING.get(&key) }.is_none() {
        return 0;
    }
    let cookie = cookie_of(&ctx);
    let Some(done) = handshake_done(cookie, session) else {
        save_arguments(&ctx, pid_tgid);
        return 0;
    };
    if done {
        let _ = TLS_HANDSHAKING.remove(&key);
    }
    // A record also while the handshake goes on, so that a session freed before it finished
    // is known to have tried one.
    let Some(mut entry) = EVENTS.reserve::<TlsRecord>(0) else {
        count(counters::RINGBUF_FULL);
        return 0;
    };
    // SAFETY: as in tls_mark.
    let record = unsafe { &mut *entry.as_mut_ptr() };
    fill(record, pid_tgid, cookie, session);
    record.flags |= TLS_STATE_KNOWN;
    if done {
        record.flags |= TLS_HANDSHAKE_DONE;
        record.version = read_version(cookie, session);
    }
    copy_last_peer(record, pid_tgid);
    entry.submit(NO_WAKEUP);
    count(counters::RECORDS_EMITTED);
    0
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
    let _ = TLS_CALLS.insert(&key, &arguments, 0);
}

/// Return of a function whose entry `tls_call` saw: sends the return value.
#[uretprobe]
pub fn tls_return(ctx: RetProbeContext) -> u32 {
    let _ = try_return(&ctx);
    0
}

/// A function whose call alone matters (role, free): sends its first argument.
#[uprobe]
pub fn tls_mark(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_daemon(pid_tgid) {
        return 0;
    }
    let cookie = cookie_of(&ctx);
    let session: u64 = ctx.arg(0).unwrap_or(0);
    let function = (cookie & cookie::FUNCTION_MASK) as u8;
    track_handshake(pid_tgid, function, session);
    if track_server(pid_tgid, function, session) {
        return 0;
    }
    let Some(mut entry) = EVENTS.reserve::<TlsRecord>(0) else {
        count(counters::RINGBUF_FULL);
        return 0;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: the reservation is size_of::<TlsRecord>() bytes, 8-byte aligned, and owned by
    // this program until it is submitted.
    let record = unsafe { &mut *record };
    fill(record, pid_tgid, cookie, session);
    copy_last_peer(record, pid_tgid);
    if (cookie & cookie::FUNCTION_MASK) as u8 == function::SSL_FREE
        && let Some(done) = handshake_done(cookie, session)
    {
        record.flags |= TLS_STATE_KNOWN;
        if done {
            record.flags |= TLS_HANDSHAKE_DONE;
            record.version = read_version(cookie, session);
        }
    }
    entry.submit(NO_WAKEUP);
    count(counters::RECORDS_EMITTED);
    0
}

/// Keeps `TLS_SERVERS` up to date and returns whether the call belongs to a server session,
/// which sends no record. A session that becomes a client leaves the map, in case a program
/// reuses an object.
#[inline(always)]
fn track_server(pid_tgid: u64, function: u8, session: u64) -> bool {
    let key = SessionKey {
        tgid: pid_tgid >> 32,
        session,
    };
    match function {
        function::SSL_SET_ACCEPT_STATE => {
            mark_server(&key);
            true
        }
        function::SSL_SET_CONNECT_STATE => {
            let _ = TLS_SERVERS.remove(&key);
            false
        }
        function::SSL_FREE | function::GNUTLS_DEINIT => TLS_SERVERS.remove(&key).is_ok(),
        _ => false,
    }
}

/// Adds a server session, counting it once.
#[inline(always)]
fn mark_server(key: &SessionKey) {
    // SAFETY: the value is only tested for presence.
    if unsafe { TLS_SERVERS.get(key) }.is_none() {
        count(counters::TLS_SERVER_SESSIONS);
    }
    let _ = TLS_SERVERS.insert(key, &1, 0);
}

/// Returns whether a session is a server session.
#[inline(always)]
fn is_server(pid_tgid: u64, session: u64) -> bool {
    let key = SessionKey {
        tgid: pid_tgid >> 32,
        session,
    };
    // SAFETY: the value is only tested for presence.
    unsafe { TLS_SERVERS.get(&key) }.is_some()
}

/// Keeps `TLS_HANDSHAKING` up to date: a session enters it when it becomes a client and
/// leaves it when freed or when a handshake or I/O function succeeds on it.
#[inline(always)]
fn track_handshake(pid_tgid: u64, function: u8, session: u64) {
    let key = SessionKey {
        tgid: pid_tgid >> 32,
        session,
    };
    match function {
        function::SSL_SET_CONNECT_STATE => {
            let _ = TLS_HANDSHAKING.insert(&key, &1, 0);
        }
        function::SSL_FREE | function::SSL_SET_ACCEPT_STATE => {
            let _ = TLS_HANDSHAKING.remove(&key);
        }
        _ => {}
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
    let key = CallKey {
        pid_tgid,
        function: function as u64,
    };
    let Some(saved) = TLS_CALLS.get_ptr(&key) else {
        // Reads and writes on established sessions have no saved entry by design.
        if !matches!(function, function::SSL_READ | function::SSL_WRITE) {
            count(counters::TLS_RETURNS_UNMATCHED);
        }
        return Err(());
    };
    // SAFETY: the pointer comes from a successful lookup; the value is copied at once.
    let arguments = unsafe { *saved };
    let _ = TLS_CALLS.remove(&key);
    // Every hooked function returns a C `int`; the upper half of the register is undefined.
    let result = ctx.ret::<u64>() as u32 as i32 as i64;

    let session = if function == function::GNUTLS_INIT {
        // gnutls_init(gnutls_session_t *session, flags) stores the new session through its
        // first argument.
        // SAFETY: bpf_probe_read_user checks the user address and fails instead of faulting.
        unsafe { bpf_probe_read_user(arguments.first as *const u64) }.unwrap_or(0)
    } else {
        arguments.first
    };
    if function == function::GNUTLS_INIT && arguments.second & GNUTLS_SERVER != 0 {
        mark_server(&SessionKey {
            tgid: pid_tgid >> 32,
            session,
        });
        return Ok(());
    }
    if is_server(pid_tgid, session) {
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
    if result > 0 && is_openssl_handshake(function) {
        let _ = TLS_HANDSHAKING.remove(&SessionKey {
            tgid: pid_tgid >> 32,
            session,
        });
    }
    if result > 0 {
        // Only after a successful handshake is the version the negotiated one: OpenSSL
        // stores its highest version there when it sends the ClientHello.
        record.version = read_version(cookie, session);
    }
    copy_last_peer(record, pid_tgid);
    entry.submit(NO_WAKEUP);
    count(counters::RECORDS_EMITTED);
    Ok(())
}

/// Returns whether a function can finish an OpenSSL client handshake.
#[inline(always)]
fn is_openssl_handshake(function: u8) -> bool {
    matches!(
        function,
        function::SSL_DO_HANDSHAKE
            | function::SSL_CONNECT
            | function::SSL_READ
            | function::SSL_WRITE
    )
}

/// Sends a record with the server name at `name`: a NUL-terminated string, or `length` bytes
/// when the function takes a length.
#[inline(always)]
fn send_name(ctx: &ProbeContext, session: u64, name: u64, length: Option<u64>) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_daemon(pid_tgid) || name == 0 {
        return;
    }
    let cookie = cookie_of(ctx);
    let Some(mut entry) = EVENTS.reserve::<TlsRecord>(0) else {
        count(counters::RINGBUF_FULL);
        return;
    };
    // SAFETY: as in tls_mark.
    let record = unsafe { &mut *entry.as_mut_ptr() };
    fill(record, pid_tgid, cookie, session);
    let read = match length {
        Some(length) => read_counted(&mut record.name, name, length, &mut record.flags),
        None => read_terminated(&mut record.name, name, &mut record.flags),
    };
    match read {
        Some(len) => {
            record.name_len = len;
            record.flags |= TLS_HAS_NAME;
            entry.submit(NO_WAKEUP);
            count(counters::RECORDS_EMITTED);
        }
        None => entry.discard(0),
    }
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
