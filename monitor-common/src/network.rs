//! Records, keys and settings of the connection programs: cgroup `connect4`/`connect6`,
//! `syscalls:sys_exit_connect` and `sock:inet_sock_set_state`.

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// The connect returned `EINPROGRESS` and its outcome came later, from the TCP state change.
pub const CONNECT_ASYNC: u32 = 1 << 0;
/// The connect returned `EINPROGRESS` and the socket's outcome was not seen (the socket state
/// entry was evicted); `result` is `-EINPROGRESS`.
pub const CONNECT_OUTCOME_UNKNOWN: u32 = 1 << 1;
/// Kernel-internal: the TCP state change already stored the outcome in `result`.
pub const CONNECT_STATE_DONE: u32 = 1 << 8;
/// Kernel-internal: the system call returned `EINPROGRESS`; the state change sends the record.
pub const CONNECT_STATE_WAITING: u32 = 1 << 9;

/// One outbound TCP connection with its outcome.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ConnectRecord {
    /// Always [`crate::record::kind::CONNECT`].
    pub kind: u32,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// [`CONNECT_ASYNC`], [`CONNECT_OUTCOME_UNKNOWN`] and the kernel-internal state bits.
    pub flags: u32,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// Peer port in host byte order.
    pub port: u16,
    /// 0 on success, or a negated errno.
    pub result: i32,
    /// Time of the `connect` call, nanoseconds since boot.
    pub boot_ns: u64,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// Kernel address of the socket, used only to join the TCP state change; never exported.
    pub sock: u64,
    /// Peer address in network byte order; IPv4 uses the first four bytes.
    pub address: [u8; 16],
}

const _: () = assert!(size_of::<ConnectRecord>() == 72);
const _: () = assert!(align_of::<ConnectRecord>() == 8);

/// The peer a thread connected to last, which the TLS programs copy into their records.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// [`AF_INET`] or [`AF_INET6`]; 0 when unknown.
    pub family: u16,
    /// Port in host byte order.
    pub port: u16,
    /// Explicit padding; always zero.
    pub reserved: u32,
    /// Address in network byte order; IPv4 uses the first four bytes.
    pub address: [u8; 16],
}

const _: () = assert!(size_of::<Peer>() == 24);

/// Key of the deduplication map: one process and one peer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PeerKey {
    /// Process id.
    pub tgid: u32,
    /// Address family.
    pub family: u16,
    /// Port in host byte order.
    pub port: u16,
    /// Address in network byte order.
    pub address: [u8; 16],
}

const _: () = assert!(size_of::<PeerKey>() == 24);

/// Bits in the excluded-ports bitmap: one per port.
pub const PORT_WORDS: usize = 65_536 / 64;

/// Settings and tracepoint field offsets of the connection programs, set by the loader.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkSettings {
    /// A process's connects to one peer within this many nanoseconds after a reported one are
    /// counted, not sent. 0 sends every connect.
    pub dedup_window_ns: u64,
    /// [`NETWORK_ENABLED`], [`NETWORK_EXCLUDE_PORTS`], [`NETWORK_EXCLUDE_NETWORKS`].
    pub flags: u32,
    /// Offset of `ret` in `syscalls:sys_exit_connect`.
    pub exit_ret: u32,
    /// Offset of `skaddr` in `sock:inet_sock_set_state`.
    pub state_skaddr: u32,
    /// Offset of `oldstate`.
    pub state_old: u32,
    /// Offset of `newstate`.
    pub state_new: u32,
    /// Offset of `protocol` (a `u16`).
    pub state_protocol: u32,
    /// Offset of `sk_err` in `struct sock`, from BTF; [`crate::offsets::UNKNOWN`] when missing.
    pub sock_err: u32,
    /// Explicit padding; always zero.
    pub reserved: u32,
}

const _: () = assert!(size_of::<NetworkSettings>() == 40);

/// The connection programs report connects.
pub const NETWORK_ENABLED: u32 = 1 << 0;
/// The excluded-ports bitmap has at least one port set.
pub const NETWORK_EXCLUDE_PORTS: u32 = 1 << 1;
/// The excluded-networks trie has at least one entry.
pub const NETWORK_EXCLUDE_NETWORKS: u32 = 1 << 2;

impl NetworkSettings {
    /// Settings that report nothing, until the loader sets them.
    pub const fn disabled() -> Self {
        Self {
            dedup_window_ns: 0,
            flags: 0,
            exit_ret: crate::offsets::UNKNOWN,
            state_skaddr: crate::offsets::UNKNOWN,
            state_old: crate::offsets::UNKNOWN,
            state_new: crate::offsets::UNKNOWN,
            state_protocol: crate::offsets::UNKNOWN,
            sock_err: crate::offsets::UNKNOWN,
            reserved: 0,
        }
    }
}

/// TCP states of `sock:inet_sock_set_state`, as in `include/net/tcp_states.h`.
pub mod tcp_state {
    /// `TCP_ESTABLISHED`.
    pub const ESTABLISHED: i32 = 1;
    /// `TCP_SYN_SENT`.
    pub const SYN_SENT: i32 = 2;
    /// `TCP_CLOSE`.
    pub const CLOSE: i32 = 7;
}

/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u32 = 6;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is repr(C), built only from integers and byte arrays, with explicit
    // padding fields, so every byte pattern is a valid value.
    unsafe impl aya::Pod for super::NetworkSettings {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Peer {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PeerKey {}
}
