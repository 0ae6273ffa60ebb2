//! Outbound TCP connections: cgroup `connect4`/`connect6`, `syscalls:sys_exit_connect` and
//! `sock:inet_sock_set_state`.
//!
//! Kernel interface: the cgroup programs (Linux 4.17+) run in the calling task before the
//! connect, so they see the peer the process asked for. They only observe and always allow.
//! The outcome comes from two places. A blocking connect, or one that fails at once, returns
//! it from the system call. A non-blocking connect returns `EINPROGRESS`; its outcome is the
//! TCP state change from `SYN_SENT` to `ESTABLISHED` or `CLOSE` (with `sk_err`), which may come
//! before or after the system call returns. `CONNECT_SOCKETS` joins the two by socket address.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
    },
    macros::{cgroup_sock_addr, tracepoint},
    programs::{SockAddrContext, TracePointContext},
};
use monitor_common::{
    counters,
    network::{
        AF_INET, AF_INET6, CONNECT_ASYNC, CONNECT_OUTCOME_UNKNOWN, CONNECT_STATE_DONE,
        CONNECT_STATE_WAITING, ConnectRecord, IPPROTO_TCP, NETWORK_ENABLED,
        NETWORK_EXCLUDE_NETWORKS, NETWORK_EXCLUDE_PORTS, NetworkSettings, Peer, PeerKey, tcp_state,
    },
    offsets::UNKNOWN,
    record::kind,
};

use crate::maps::{
    CONNECT_PENDING, CONNECT_SOCKETS, DAEMON_TGID, EVENTS, EXCLUDED_NETWORKS, EXCLUDED_PORTS,
    LAST_PEER, NETWORK_SETTINGS, PEERS_SEEN, count,
};

/// Linux `EINPROGRESS`.
const EINPROGRESS: i32 = 115;
/// Linux `ECONNREFUSED`, reported when a failed socket carries no error.
const ECONNREFUSED: i32 = 111;
/// The value a cgroup socket-address program returns to let the call go on.
const ALLOW: i32 = 1;

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    let _ = try_connect(&ctx, AF_INET);
    ALLOW
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    let _ = try_connect(&ctx, AF_INET6);
    ALLOW
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let _ = try_exit_connect(&ctx);
    0
}

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let _ = try_set_state(&ctx);
    0
}

#[inline(always)]
fn settings() -> NetworkSettings {
    // SAFETY: NETWORK_SETTINGS is a static; the volatile read keeps the compiler from folding
    // in the default value that the loader replaces.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!(NETWORK_SETTINGS)) }
}

#[inline(always)]
fn try_connect(ctx: &SockAddrContext, family: u16) -> Result<(), ()> {
    let settings = settings();
    if settings.flags & NETWORK_ENABLED == 0 {
        return Ok(());
    }
    // SAFETY: the context pointer is the kernel's `bpf_sock_addr`, valid for this run; the
    // verifier checks each field access.
    let addr = unsafe { &*ctx.sock_addr };
    if addr.protocol != IPPROTO_TCP {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if tgid == DAEMON_TGID.load() {
        return Ok(());
    }
    let peer = read_peer(addr, family);
    remember_peer(pid_tgid, &peer);
    count(counters::CONNECTS_SEEN);

    if is_excluded(&settings, &peer) {
        count(counters::CONNECTS_EXCLUDED);
        return Ok(());
    }
    // SAFETY: the helper takes no arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if is_duplicate(&settings, tgid, &peer, now) {
        count(counters::CONNECTS_DEDUPLICATED);
        return Ok(());
    }

    let uid_gid = bpf_get_current_uid_gid();
    let record = ConnectRecord {
        kind: kind::CONNECT,
        pid: tgid,
        tid: pid_tgid as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        flags: 0,
        family,
        port: peer.port,
        result: 0,
        boot_ns: now,
        // SAFETY: the helper takes no arguments.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        sock: 0,
        address: peer.address,
    };
    CONNECT_PENDING
        .insert(&pid_tgid, &record, 0)
        .map_err(|_| ())
}

/// Keeps the thread's last peer for the TLS records. An existing entry is overwritten in
/// place, which costs less than a new element; only this thread uses its key.
#[inline(always)]
fn remember_peer(pid_tgid: u64, peer: &Peer) {
    match LAST_PEER.get_ptr_mut(&pid_tgid) {
        // SAFETY: the pointer comes from a successful lookup and stays valid for this run. Only
        // the thread that owns the key runs this program with it.
        Some(slot) => unsafe { *slot = *peer },
        None => {
            let _ = LAST_PEER.insert(&pid_tgid, peer, 0);
        }
    }
}

/// Copies the peer from the context. Ports and addresses are stored in network byte order.
#[inline(always)]
fn read_peer(addr: &aya_ebpf::bindings::bpf_sock_addr, family: u16) -> Peer {
    let mut peer = Peer {
        family,
        port: u16::from_be(addr.user_port as u16),
        reserved: 0,
        address: [0; 16],
    };
    if family == AF_INET {
        peer.address[..4].copy_from_slice(&addr.user_ip4.to_ne_bytes());
    } else {
        for (index, word) in addr.user_ip6.iter().enumerate() {
            peer.address[index * 4..index * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
    }
    peer
}

/// Returns whether the peer's port or address is excluded in the configuration.
#[inline(always)]
fn is_excluded(settings: &NetworkSettings, peer: &Peer) -> bool {
    if settings.flags & NETWORK_EXCLUDE_PORTS != 0 {
        let word_index = (peer.port as usize >> 6) & (monitor_common::network::PORT_WORDS - 1);
        // SAFETY: EXCLUDED_PORTS is a static array and the index is masked below its length.
        let word = unsafe {
            core::ptr::read_volatile(
                core::ptr::addr_of!(EXCLUDED_PORTS)
                    .cast::<u64>()
                    .add(word_index),
            )
        };
        if (word >> (peer.port & 63)) & 1 != 0 {
            return true;
        }
    }
    if settings.flags & NETWORK_EXCLUDE_NETWORKS != 0 {
        let key = aya_ebpf::maps::lpm_trie::Key::new(128, mapped_address(peer));
        if EXCLUDED_NETWORKS.get(&key).is_some() {
            return true;
        }
    }
    false
}

/// Returns the peer address as IPv6, with IPv4 mapped into `::ffff:0:0/96` as the exclusion
/// trie stores it.
#[inline(always)]
fn mapped_address(peer: &Peer) -> [u8; 16] {
    if peer.family != AF_INET {
        return peer.address;
    }
    let mut mapped = [0u8; 16];
    mapped[10] = 0xff;
    mapped[11] = 0xff;
    mapped[12..].copy_from_slice(&peer.address[..4]);
    mapped
}

/// Returns whether this process reported this peer within the window, and otherwise records
/// `now` as its last report.
#[inline(always)]
fn is_duplicate(settings: &NetworkSettings, tgid: u32, peer: &Peer, now: u64) -> bool {
    if settings.dedup_window_ns == 0 {
        return false;
    }
    let key = PeerKey {
        tgid,
        family: peer.family,
        port: peer.port,
        address: peer.address,
    };
    if let Some(last) = PEERS_SEEN.get_ptr_mut(&key) {
        // SAFETY: the pointer comes from a successful lookup of this LRU map and stays valid
        // for this program run; a racing writer on another CPU can only store another time.
        let last_ns = unsafe { *last };
        if now.wrapping_sub(last_ns) < settings.dedup_window_ns {
            return true;
        }
        // SAFETY: as above.
        unsafe { *last = now };
        return false;
    }
    let _ = PEERS_SEEN.insert(&key, &now, 0);
    false
}

#[inline(always)]
fn try_exit_connect(ctx: &TracePointContext) -> Result<(), ()> {
    let settings = settings();
    if settings.exit_ret == UNKNOWN {
        return Err(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let pending = CONNECT_PENDING.get_ptr(&pid_tgid).ok_or(())?;
    // SAFETY: the pointer comes from a successful lookup; the record is copied at once.
    let mut record = unsafe { *pending };
    let _ = CONNECT_PENDING.remove(&pid_tgid);
    // SAFETY: the offset comes from the tracepoint's format file, so it lies in the record.
    let ret = unsafe { ctx.read_at::<i64>(settings.exit_ret as usize) }.map_err(|_| ())?;

    if ret != -(EINPROGRESS as i64) || record.sock == 0 {
        record.result = ret as i32;
        if record.sock != 0 {
            let _ = CONNECT_SOCKETS.remove(&record.sock);
        }
        if ret == -(EINPROGRESS as i64) {
            record.flags |= CONNECT_OUTCOME_UNKNOWN;
        }
        emit(&record);
        return Ok(());
    }

    let Some(state) = CONNECT_SOCKETS.get_ptr_mut(&record.sock) else {
        record.result = ret as i32;
        record.flags |= CONNECT_OUTCOME_UNKNOWN;
        count(counters::CONNECTS_UNFINISHED);
        emit(&record);
        return Ok(());
    };
    // SAFETY: the pointer comes from a successful lookup and stays valid for this run.
    let state = unsafe { &mut *state };
    if state.flags & CONNECT_STATE_DONE != 0 {
        state.flags |= CONNECT_ASYNC;
        let done = *state;
        let _ = CONNECT_SOCKETS.remove(&record.sock);
        emit(&done);
    } else {
        // NOTE: a state change on another CPU between the check above and this store is not
        // seen, so the connect is never sent. The window is a few instructions wide.
        state.flags |= CONNECT_STATE_WAITING;
    }
    Ok(())
}

#[inline(always)]
fn try_set_state(ctx: &TracePointContext) -> Result<(), ()> {
    let settings = settings();
    if settings.flags & NETWORK_ENABLED == 0 || settings.state_skaddr == UNKNOWN {
        return Err(());
    }
    // SAFETY: the offsets come from the tracepoint's format file, so they lie in the record.
    let protocol =
        unsafe { ctx.read_at::<u16>(settings.state_protocol as usize) }.map_err(|_| ())?;
    if protocol as u32 != IPPROTO_TCP {
        return Ok(());
    }
    // SAFETY: as above.
    let new_state = unsafe { ctx.read_at::<i32>(settings.state_new as usize) }.map_err(|_| ())?;
    // SAFETY: as above.
    let old_state = unsafe { ctx.read_at::<i32>(settings.state_old as usize) }.map_err(|_| ())?;
    // SAFETY: as above.
    let sock = unsafe { ctx.read_at::<u64>(settings.state_skaddr as usize) }.map_err(|_| ())?;

    if new_state == tcp_state::SYN_SENT {
        return remember_socket(sock);
    }
    if old_state != tcp_state::SYN_SENT {
        return Ok(());
    }
    let result = match new_state {
        tcp_state::ESTABLISHED => 0,
        tcp_state::CLOSE => -socket_error(&settings, sock),
        _ => return Ok(()),
    };
    let state = CONNECT_SOCKETS.get_ptr_mut(&sock).ok_or(())?;
    // SAFETY: the pointer comes from a successful lookup and stays valid for this run.
    let state = unsafe { &mut *state };
    state.result = result;
    if state.flags & CONNECT_STATE_WAITING != 0 {
        state.flags |= CONNECT_ASYNC;
        let done = *state;
        let _ = CONNECT_SOCKETS.remove(&sock);
        emit(&done);
    } else {
        state.flags |= CONNECT_STATE_DONE;
    }
    Ok(())
}

/// Links a socket that enters `SYN_SENT` to the connect pending in the current thread.
#[inline(always)]
fn remember_socket(sock: u64) -> Result<(), ()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let pending = CONNECT_PENDING.get_ptr_mut(&pid_tgid).ok_or(())?;
    // SAFETY: the pointer comes from a successful lookup and stays valid for this run.
    let pending = unsafe { &mut *pending };
    pending.sock = sock;
    CONNECT_SOCKETS.insert(&sock, pending, 0).map_err(|_| ())
}

/// Reads `sk_err` of a socket that failed to connect; `ECONNREFUSED` when it is unset or
/// unreadable, because a reset is the usual cause.
#[inline(always)]
fn socket_error(settings: &NetworkSettings, sock: u64) -> i32 {
    if settings.sock_err == UNKNOWN {
        return ECONNREFUSED;
    }
    // SAFETY: bpf_probe_read_kernel checks the address and fails instead of faulting; the
    // offset comes from the running kernel's BTF.
    match unsafe {
        bpf_probe_read_kernel(
            (sock as *const u8)
                .wrapping_add(settings.sock_err as usize)
                .cast::<i32>(),
        )
    } {
        Ok(error) if error > 0 => error,
        _ => ECONNREFUSED,
    }
}

#[inline(always)]
fn emit(record: &ConnectRecord) {
    match EVENTS.output::<ConnectRecord>(record, 0) {
        Ok(()) => count(counters::RECORDS_EMITTED),
        Err(_) => count(counters::RINGBUF_FULL),
    }
}
