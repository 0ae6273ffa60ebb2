//! Records of the TLS library uprobes.
//!
//! Each probe is attached with a cookie that names the function it is on, which
//! library it belongs to and how to read it; see [`cookie`]. The programs only copy the
//! function's arguments or return value and never touch payload buffers. The daemon turns the
//! sequence of calls on one session (name set, handshake calls, free) into one handshake event.

use crate::network::Peer;

/// Bytes of a server name that a [`TlsRecord`] carries: a DNS name is at most 253 bytes.
pub const SERVER_NAME_LEN: usize = 256;

/// Functions the TLS programs are attached to. The numbers are part of the contract.
pub mod function {
    /// OpenSSL `SSL_ctrl(ssl, cmd, larg, parg)`; only `SSL_CTRL_SET_TLSEXT_HOSTNAME` is sent.
    pub const SSL_CTRL: u8 = 1;
    /// BoringSSL `SSL_set_tlsext_host_name(ssl, name)`.
    pub const SSL_SET_HOST_NAME: u8 = 2;
    /// `SSL_do_handshake(ssl)`: entry and return.
    pub const SSL_DO_HANDSHAKE: u8 = 3;
    /// `SSL_connect(ssl)`: entry and return.
    pub const SSL_CONNECT: u8 = 4;
    /// `SSL_set_connect_state(ssl)`: the session is a client.
    pub const SSL_SET_CONNECT_STATE: u8 = 5;
    /// `SSL_set_accept_state(ssl)`: the session is a server.
    pub const SSL_SET_ACCEPT_STATE: u8 = 6;
    /// `SSL_free(ssl)`: the session ends.
    pub const SSL_FREE: u8 = 7;
    /// GnuTLS `gnutls_server_name_set(session, type, name, len)`.
    pub const GNUTLS_SERVER_NAME_SET: u8 = 8;
    /// `gnutls_handshake(session)`: entry and return.
    pub const GNUTLS_HANDSHAKE: u8 = 9;
    /// `gnutls_init(&session, flags)`: entry and return; the record carries the new session.
    pub const GNUTLS_INIT: u8 = 10;
    /// `gnutls_deinit(session)`: the session ends.
    pub const GNUTLS_DEINIT: u8 = 11;
    /// `SSL_read`, `SSL_read_ex` or `SSL_peek` on a client session whose handshake has not
    /// finished: OpenSSL runs the handshake inside them when the program never calls
    /// `SSL_connect` or `SSL_do_handshake` (as `openssl s_client` does).
    pub const SSL_READ: u8 = 12;
    /// `SSL_write` or `SSL_write_ex` on a client session whose handshake has not finished.
    pub const SSL_WRITE: u8 = 13;
    /// The largest function number.
    pub const LAST: u8 = SSL_WRITE;
}

/// Key of the per-session maps: sessions in a handshake, server sessions, pending names.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SessionKey {
    /// Process id.
    pub tgid: u64,
    /// The `SSL *`.
    pub session: u64,
}

/// The layout of a probe's attach cookie.
pub mod cookie {
    /// Bits 0..8: the [`super::function`] number.
    pub const FUNCTION_MASK: u64 = 0xff;
    /// Read the negotiated protocol version from the first `int` of the `SSL` object after a
    /// successful handshake (OpenSSL 1.1.x, 3.0.x and 3.1.x keep `version` there).
    pub const VERSION_AT_START: u64 = 1 << 8;
    /// Bits 9..16: one more than a quarter of the offset of the `int server` field in the
    /// `SSL` object, or 0 when it is not known. The field is nonzero in a server session.
    pub const SERVER_SHIFT: u32 = 9;
    /// Mask of the `server` field after shifting.
    pub const SERVER_MASK: u64 = 0x7f;
    /// Bits 16..32: one more than the offset of `statem.in_init` in the `SSL` object, or 0
    /// when it is not known. `in_init` is 0 once a handshake has finished successfully.
    pub const IN_INIT_SHIFT: u32 = 16;
    /// Mask of the `in_init` field after shifting.
    pub const IN_INIT_MASK: u64 = 0xffff;
    /// Bits 32..64: the daemon's number for the library file.
    pub const LIBRARY_SHIFT: u32 = 32;

    /// Returns whether a cookie can carry `offset` as the `server` field: a multiple of four
    /// below 508.
    pub const fn server_offset_fits(offset: u16) -> bool {
        offset.is_multiple_of(4) && ((offset / 4) as u64) < SERVER_MASK
    }

    /// Builds a cookie; `in_init` and `server` are the offsets of `statem.in_init` and
    /// `server`, when known. A `server` offset that does not fit is left out.
    pub const fn new(
        function: u8,
        flags: u64,
        in_init: Option<u16>,
        server: Option<u16>,
        library: u32,
    ) -> u64 {
        let in_init = match in_init {
            Some(offset) if offset < u16::MAX => (offset as u64 + 1) << IN_INIT_SHIFT,
            _ => 0,
        };
        let server = match server {
            Some(offset) if server_offset_fits(offset) => ((offset / 4) as u64 + 1) << SERVER_SHIFT,
            _ => 0,
        };
        function as u64 | flags | server | in_init | ((library as u64) << LIBRARY_SHIFT)
    }
}

/// The record carries a server name in `name`.
pub const TLS_HAS_NAME: u16 = 1 << 0;
/// The record is from a function's return probe and `result` contains its return value.
pub const TLS_RETURN: u16 = 1 << 1;
/// The server name was longer than [`SERVER_NAME_LEN`] - 1 bytes and was cut.
pub const TLS_NAME_TRUNCATED: u16 = 1 << 2;
/// The program read the session's `in_init` field: [`TLS_HANDSHAKE_DONE`] is meaningful.
pub const TLS_STATE_KNOWN: u16 = 1 << 3;
/// `in_init` was 0: the session's handshake has finished successfully.
pub const TLS_HANDSHAKE_DONE: u16 = 1 << 4;

/// [`SessionState`] flag: a server session, whose calls send no record.
pub const SESSION_SERVER: u32 = 1 << 0;
/// [`SessionState`] flag: a client session.
pub const SESSION_CLIENT: u32 = 1 << 1;
/// [`SessionState`] flag: a handshake was tried and has not succeeded, so the end of the
/// session sends a record and the daemon can report the failure.
pub const SESSION_ATTEMPTED: u32 = 1 << 2;
/// [`SessionState`] flag: the handshake succeeded and was sent; later calls send nothing.
pub const SESSION_DONE: u32 = 1 << 3;

/// The kernel's state of one session between calls, from its first hooked call to its end.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SessionState {
    /// [`SESSION_SERVER`], [`SESSION_CLIENT`], [`SESSION_ATTEMPTED`].
    pub flags: u32,
    /// Explicit padding; always zero.
    pub reserved: u32,
    /// When the first handshake attempt was seen, nanoseconds since boot; 0 before that.
    pub started_ns: u64,
}

/// A server name set on a session and not yet sent. The next record of the session carries
/// it, so that a blocking client's handshake costs one record.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingName {
    /// Bytes of `name` in use.
    pub len: u32,
    /// [`TLS_NAME_TRUNCATED`] or 0.
    pub flags: u32,
    /// The name.
    pub name: [u8; SERVER_NAME_LEN],
}

/// One call of a TLS library function.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsRecord {
    /// Always [`crate::record::kind::TLS`].
    pub kind: u32,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real user id.
    pub uid: u32,
    /// The [`function`] number.
    pub function: u8,
    /// Explicit padding; always zero.
    pub reserved: u8,
    /// [`TLS_HAS_NAME`], [`TLS_RETURN`], [`TLS_NAME_TRUNCATED`], [`TLS_STATE_KNOWN`],
    /// [`TLS_HANDSHAKE_DONE`].
    pub flags: u16,
    /// Bytes of `name` in use.
    pub name_len: u32,
    /// The daemon's number for the library file, from the cookie.
    pub library: u32,
    /// Negotiated protocol version as on the wire (0x0304 is TLS 1.3), 0 when unknown.
    pub version: u32,
    /// Return value of the function, for return records.
    pub result: i64,
    /// The session: `SSL *` or `gnutls_session_t`.
    pub session: u64,
    /// A second argument: `gnutls_init` flags.
    pub argument: u64,
    /// Nanoseconds since boot.
    pub boot_ns: u64,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// For return records, the time the function was entered; for records of reads and
    /// writes, the time of the first attempt. Nanoseconds since boot, 0 when unknown.
    pub entered_ns: u64,
    /// The peer the thread connected to last, if any.
    pub peer: Peer,
    /// The server name the client asked for, when `flags` has [`TLS_HAS_NAME`].
    pub name: [u8; SERVER_NAME_LEN],
}

const _: () = assert!(size_of::<TlsRecord>() == 104 + SERVER_NAME_LEN);
const _: () = assert!(align_of::<TlsRecord>() == 8);

/// Key of the map that keeps a call's arguments from entry to return.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CallKey {
    /// Thread.
    pub pid_tgid: u64,
    /// Function number.
    pub function: u64,
}

/// Arguments kept from a function's entry for its return probe.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CallArguments {
    /// First argument.
    pub first: u64,
    /// Second argument.
    pub second: u64,
    /// Time of the entry, nanoseconds since boot; 0 once the return has used the entry.
    pub entered_ns: u64,
}
