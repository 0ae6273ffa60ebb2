//! Turning the calls on one TLS session into one handshake.
//!
//! The library probes send few records: each return of a handshake function, the first read
//! or write that may run a handshake, and the end of a session whose handshake had not
//! succeeded. The server name set before travels with the next record. A non-blocking client
//! calls the handshake function many times, and OpenSSL's `-1` means "call again" as often as
//! "failed", so the outcome is decided here. A handshake succeeds at the first successful
//! return. It fails at a fatal GnuTLS code, or when the session ends (freed, or its process
//! exits) without success.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use monitor_common::tls::function;

use crate::sensor::decode_network::TlsCall;

/// Sessions kept at most; the oldest is dropped first, counted in `sessions_evicted`.
const MAX_SESSIONS: usize = 65_536;

/// GnuTLS `GNUTLS_SERVER` flag of `gnutls_init`.
const GNUTLS_SERVER: u64 = 1;
/// GnuTLS codes that mean "call again", not failure: `GNUTLS_E_AGAIN`,
/// `GNUTLS_E_INTERRUPTED`, `GNUTLS_E_WARNING_ALERT_RECEIVED`, `GNUTLS_E_GOT_APPLICATION_DATA`.
const GNUTLS_RETRY: &[i64] = &[-28, -52, -16, -38];

/// The side of the connection a session is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not known: the process never called a role function that credwatch hooks.
    Unknown,
    /// The client, which sends the server name.
    Client,
    /// The server; its handshakes are not reported.
    Server,
}

/// The end of a handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The handshake completed.
    Success,
    /// The handshake function returned a fatal error, with its return value.
    Failure(i64),
    /// The session ended (freed or its process exited) before a successful handshake, with the
    /// last return value of the handshake function.
    Abandoned(Option<i64>),
    /// The session ended after reads and writes that may have run the handshake, none of which
    /// returned data, so the outcome is not known.
    Unknown,
}

impl Outcome {
    /// Returns the value of `credwatch.tls.result`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure(_) | Self::Abandoned(_) => "failure",
            Self::Unknown => "unknown",
        }
    }
}

/// A finished client handshake, ready to be reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// Process id.
    pub pid: u32,
    /// Thread that made the last handshake call.
    pub tid: u32,
    /// Real user id.
    pub uid: u32,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// The daemon's number for the library.
    pub library: u32,
    /// The server name, if the client set one.
    pub server_name: Option<String>,
    /// The name was cut.
    pub server_name_truncated: bool,
    /// The peer of the thread's last connect.
    pub peer: Option<(IpAddr, u16)>,
    /// The end of the handshake.
    pub outcome: Outcome,
    /// Wire protocol version, when read.
    pub version: Option<u16>,
    /// The last handshake function called.
    pub function: u8,
    /// Time of the first handshake call, nanoseconds since boot.
    pub started_ns: u64,
    /// Time the outcome was known, nanoseconds since boot.
    pub ended_ns: u64,
}

#[derive(Clone, Debug)]
struct Session {
    pid: u32,
    tid: u32,
    uid: u32,
    cgroup_id: u64,
    library: u32,
    role: Role,
    server_name: Option<String>,
    server_name_truncated: bool,
    peer: Option<(IpAddr, u16)>,
    calls: u32,
    /// Calls of `SSL_do_handshake`, `SSL_connect` or `gnutls_handshake`; the rest were reads
    /// and writes that may have run the handshake inside.
    explicit_calls: u32,
    last_result: i64,
    last_function: u8,
    started_ns: u64,
    reported: bool,
}

impl Session {
    fn new(call: &TlsCall) -> Self {
        Self {
            pid: call.pid,
            tid: call.tid,
            uid: call.uid,
            cgroup_id: call.cgroup_id,
            library: call.library,
            role: Role::Unknown,
            server_name: None,
            server_name_truncated: false,
            peer: None,
            calls: 0,
            explicit_calls: 0,
            last_result: 0,
            last_function: 0,
            started_ns: call.boot_ns,
            reported: false,
        }
    }

    fn finish(
        &mut self,
        outcome: Outcome,
        version: Option<u16>,
        ended_ns: u64,
    ) -> Option<Handshake> {
        if self.reported || self.role == Role::Server {
            return None;
        }
        self.reported = true;
        Some(Handshake {
            pid: self.pid,
            tid: self.tid,
            uid: self.uid,
            cgroup_id: self.cgroup_id,
            library: self.library,
            server_name: self.server_name.clone(),
            server_name_truncated: self.server_name_truncated,
            peer: self.peer,
            outcome,
            version,
            function: self.last_function,
            started_ns: self.started_ns,
            ended_ns,
        })
    }
}

/// Counts of what the tracker did, for the health event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Server-side sessions with a handshake, not reported; counted when they end.
    pub server_handshakes: u64,
    /// Sessions dropped because the table was full.
    pub sessions_evicted: u64,
}

/// The sessions of every process, keyed by process and session address.
#[derive(Debug, Default)]
pub struct Sessions {
    sessions: HashMap<(u32, u64), Session>,
    order: VecDeque<(u32, u64)>,
    /// Counts of what the tracker did.
    pub stats: SessionStats,
}

impl Sessions {
    /// Applies one call and returns the handshake it finished, if any. A reported session
    /// leaves the table: the kernel sends nothing more for a client whose handshake succeeded.
    pub fn handle(&mut self, call: &TlsCall) -> Option<Handshake> {
        let key = (call.pid, call.session);
        if is_end(call.function) {
            let mut session = self.sessions.remove(&key)?;
            take_name(&mut session, call);
            if session.peer.is_none() {
                session.peer = call.peer;
            }
            if call.handshake_done == Some(true) && session.role != Role::Server {
                session.calls += 1;
                let version = call.version.filter(|version| is_tls_version(*version));
                return session.finish(Outcome::Success, version, call.boot_ns);
            }
            return self.end(&mut session, call.handshake_done, call.boot_ns);
        }
        if call.function == function::GNUTLS_INIT {
            // A new session, perhaps at the address of one freed without deinit.
            self.sessions.remove(&key);
            if call.result != Some(0) || call.session == 0 {
                return None;
            }
        }
        let session = self.session(key, call);
        take_name(session, call);
        let handshake = apply(session, call);
        if handshake.is_some() {
            self.sessions.remove(&key);
        }
        handshake
    }

    /// Ends every session of a process that exited; returns the handshakes it left unfinished.
    pub fn end_process(&mut self, pid: u32, now_ns: u64) -> Vec<Handshake> {
        let keys: Vec<_> = self
            .sessions
            .keys()
            .filter(|(owner, _)| *owner == pid)
            .copied()
            .collect();
        let mut finished = Vec::new();
        for key in keys {
            if let Some(mut session) = self.sessions.remove(&key)
                && let Some(handshake) = self.end(&mut session, None, now_ns)
            {
                finished.push(handshake);
            }
        }
        self.order.retain(|(owner, _)| *owner != pid);
        finished
    }

    /// Number of sessions tracked.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Returns whether no session is tracked.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Ends a session whose handshake never succeeded. It failed, unless only reads and writes
    /// were seen and the session's state could not be read (`done` is `None`): OpenSSL may have
    /// finished the handshake inside them without any call returning data.
    fn end(&mut self, session: &mut Session, done: Option<bool>, now_ns: u64) -> Option<Handshake> {
        if session.calls == 0 {
            return None;
        }
        if session.role == Role::Server {
            self.stats.server_handshakes += 1;
            return None;
        }
        let outcome = if session.explicit_calls == 0 && done.is_none() {
            Outcome::Unknown
        } else if session.explicit_calls == 0 {
            Outcome::Abandoned(None)
        } else {
            Outcome::Abandoned(Some(session.last_result))
        };
        session.finish(outcome, None, now_ns)
    }

    fn session(&mut self, key: (u32, u64), call: &TlsCall) -> &mut Session {
        if !self.sessions.contains_key(&key) {
            while self.sessions.len() >= MAX_SESSIONS {
                let Some(oldest) = self.order.pop_front() else {
                    break;
                };
                if self.sessions.remove(&oldest).is_some() {
                    self.stats.sessions_evicted += 1;
                }
            }
            self.compact_order();
            self.order.push_back(key);
        }
        self.sessions
            .entry(key)
            .or_insert_with(|| Session::new(call))
    }

    /// Drops the keys of sessions that already left the table from the eviction order, once
    /// they are the larger part of it. Most sessions leave at their first record, so the order
    /// would otherwise grow without bound.
    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.sessions.len() + 1024 {
            let sessions = &self.sessions;
            self.order.retain(|key| sessions.contains_key(key));
        }
    }
}

/// Takes the server name a record carries. The kernel keeps a name until the session's next
/// record, which may be of any function.
fn take_name(session: &mut Session, call: &TlsCall) {
    if let Some(name) = &call.name {
        session.server_name = Some(String::from_utf8_lossy(name).into_owned());
        session.server_name_truncated = call.name_truncated;
        session.reported = false;
    }
}

fn is_end(function: u8) -> bool {
    matches!(function, function::SSL_FREE | function::GNUTLS_DEINIT)
}

/// Applies a call that is neither the start nor the end of a session.
fn apply(session: &mut Session, call: &TlsCall) -> Option<Handshake> {
    match call.function {
        function::SSL_SET_CONNECT_STATE => {
            session.role = Role::Client;
            if session.peer.is_none() {
                session.peer = call.peer;
            }
            None
        }
        function::SSL_SET_ACCEPT_STATE => {
            session.role = Role::Server;
            None
        }
        function::GNUTLS_INIT => {
            session.role = if call.argument & GNUTLS_SERVER != 0 {
                Role::Server
            } else {
                Role::Client
            };
            None
        }
        function::SSL_DO_HANDSHAKE | function::SSL_CONNECT | function::GNUTLS_HANDSHAKE => {
            handshake_return(session, call)
        }
        function::SSL_READ | function::SSL_WRITE => implicit_handshake(session, call),
        _ => None,
    }
}

/// Applies the return of a read or write on a client session whose handshake is unfinished.
/// Data returned means the handshake inside finished; anything else decides nothing, because
/// OpenSSL returns -1 both while the handshake goes on and when it failed.
fn implicit_handshake(session: &mut Session, call: &TlsCall) -> Option<Handshake> {
    // An entry record whose session state shows a finished handshake counts as data.
    let result = match call.handshake_done {
        Some(true) => 1,
        Some(false) => 0,
        None => call.result?,
    };
    if session.calls == 0 {
        session.started_ns = call.entered_ns.unwrap_or(call.boot_ns);
    }
    session.calls += 1;
    session.tid = call.tid;
    session.role = Role::Client;
    if session.last_function == 0 {
        session.last_function = call.function;
    }
    if call.peer.is_some() {
        session.peer = call.peer;
    }
    if result <= 0 {
        return None;
    }
    let version = call.version.filter(|version| is_tls_version(*version));
    session.finish(Outcome::Success, version, call.boot_ns)
}

fn handshake_return(session: &mut Session, call: &TlsCall) -> Option<Handshake> {
    let result = call.result?;
    if session.calls == 0 {
        session.started_ns = call.entered_ns.unwrap_or(call.boot_ns);
    }
    session.calls += 1;
    session.explicit_calls += 1;
    session.tid = call.tid;
    session.last_result = result;
    session.last_function = call.function;
    if call.peer.is_some() {
        session.peer = call.peer;
    }
    if call.function == function::SSL_CONNECT {
        session.role = Role::Client;
    }
    let outcome = if call.function == function::GNUTLS_HANDSHAKE {
        match result {
            0 => Outcome::Success,
            code if GNUTLS_RETRY.contains(&code) => return None,
            code => Outcome::Failure(code),
        }
    } else if result == 1 {
        Outcome::Success
    } else {
        return None;
    };
    session.finish(
        outcome,
        call.version.filter(|v| is_tls_version(*v)),
        call.boot_ns,
    )
}

/// Returns whether a wire version is SSL 3.0 or TLS 1.0 to 1.3.
fn is_tls_version(version: u16) -> bool {
    (0x0300..=0x0304).contains(&version)
}

/// Returns the `tls.protocol.version` text for a wire version: `1.2` for 0x0303.
pub fn version_text(version: u16) -> Option<&'static str> {
    match version {
        0x0300 => Some("3.0"),
        0x0301 => Some("1.0"),
        0x0302 => Some("1.1"),
        0x0303 => Some("1.2"),
        0x0304 => Some("1.3"),
        _ => None,
    }
}

/// Returns the `tls.protocol.name` for a wire version.
pub fn protocol_name(version: u16) -> &'static str {
    if version == 0x0300 { "ssl" } else { "tls" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(function: u8, session: u64) -> TlsCall {
        TlsCall {
            function,
            pid: 100,
            tid: 101,
            uid: 0,
            library: 1,
            session,
            result: None,
            argument: 0,
            version: None,
            handshake_done: None,
            name: None,
            name_truncated: false,
            peer: None,
            boot_ns: 1_000,
            entered_ns: None,
            cgroup_id: 1,
        }
    }

    fn returned(function: u8, session: u64, result: i64) -> TlsCall {
        TlsCall {
            result: Some(result),
            ..call(function, session)
        }
    }

    fn named(session: u64, name: &str) -> TlsCall {
        TlsCall {
            name: Some(name.as_bytes().to_vec()),
            ..call(function::SSL_CTRL, session)
        }
    }

    /// A return record that also carries the server name set before it, as the kernel sends.
    fn returned_named(function: u8, session: u64, result: i64, name: &str) -> TlsCall {
        TlsCall {
            name: Some(name.as_bytes().to_vec()),
            ..returned(function, session, result)
        }
    }

    #[test]
    fn blocking_client_is_one_record() {
        let mut sessions = Sessions::default();
        let success = TlsCall {
            version: Some(0x0304),
            entered_ns: Some(400),
            ..returned_named(function::SSL_DO_HANDSHAKE, 7, 1, "api.example.test")
        };
        let handshake = sessions.handle(&success).expect("success is reported");
        assert_eq!(handshake.outcome, Outcome::Success);
        assert_eq!(handshake.server_name.as_deref(), Some("api.example.test"));
        assert_eq!(handshake.version, Some(0x0304));
        assert_eq!(handshake.started_ns, 400);
        // The kernel sends nothing more for the session, so it leaves the table.
        assert!(sessions.is_empty());
    }

    #[test]
    fn non_blocking_openssl_client_reports_once_on_success() {
        let mut sessions = Sessions::default();
        assert_eq!(
            sessions.handle(&returned_named(
                function::SSL_CONNECT,
                7,
                -1,
                "api.example.test"
            )),
            None
        );
        for _ in 0..2 {
            assert_eq!(
                sessions.handle(&returned(function::SSL_CONNECT, 7, -1)),
                None
            );
        }
        let peer = Some(("127.0.0.1".parse().unwrap(), 8443));
        let success = TlsCall {
            version: Some(0x0304),
            peer,
            ..returned(function::SSL_CONNECT, 7, 1)
        };
        let handshake = sessions.handle(&success).expect("success is reported");
        assert_eq!(handshake.outcome, Outcome::Success);
        assert_eq!(handshake.server_name.as_deref(), Some("api.example.test"));
        assert_eq!(handshake.version, Some(0x0304));
        assert_eq!(handshake.peer, peer);
        assert!(sessions.is_empty());
    }

    #[test]
    fn name_on_the_end_record_is_used() {
        let mut sessions = Sessions::default();
        sessions.handle(&returned(function::SSL_DO_HANDSHAKE, 21, -1));
        let free = TlsCall {
            name: Some(b"late.example.test".to_vec()),
            ..call(function::SSL_FREE, 21)
        };
        let handshake = sessions.handle(&free).unwrap();
        assert_eq!(handshake.outcome, Outcome::Abandoned(Some(-1)));
        assert_eq!(handshake.server_name.as_deref(), Some("late.example.test"));
    }

    #[test]
    fn eviction_order_stays_bounded_when_sessions_leave() {
        let mut sessions = Sessions::default();
        for session in 0..50_000 {
            let success = returned(function::SSL_DO_HANDSHAKE, session, 1);
            assert!(sessions.handle(&success).is_some());
        }
        assert!(sessions.is_empty());
        assert!(sessions.order.len() <= 1025, "{}", sessions.order.len());
        assert_eq!(sessions.stats.sessions_evicted, 0);
    }

    #[test]
    fn openssl_failure_reported_at_free() {
        let mut sessions = Sessions::default();
        sessions.handle(&call(function::SSL_SET_CONNECT_STATE, 9));
        assert_eq!(
            sessions.handle(&returned(function::SSL_DO_HANDSHAKE, 9, -1)),
            None
        );
        let handshake = sessions.handle(&call(function::SSL_FREE, 9)).unwrap();
        assert_eq!(handshake.outcome, Outcome::Abandoned(Some(-1)));
        assert_eq!(handshake.outcome.as_str(), "failure");
    }

    #[test]
    fn process_exit_finishes_open_handshakes() {
        let mut sessions = Sessions::default();
        sessions.handle(&returned(function::SSL_DO_HANDSHAKE, 1, 0));
        sessions.handle(&named(2, "no-handshake.example.test"));
        let finished = sessions.end_process(100, 5_000);
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0].outcome, Outcome::Abandoned(Some(0)));
        assert_eq!(finished[0].ended_ns, 5_000);
        assert!(sessions.is_empty());
    }

    #[test]
    fn implicit_handshake_succeeds_when_data_flows() {
        let mut sessions = Sessions::default();
        sessions.handle(&call(function::SSL_SET_CONNECT_STATE, 11));
        sessions.handle(&named(11, "s.example.test"));
        assert_eq!(
            sessions.handle(&returned(function::SSL_WRITE, 11, -1)),
            None
        );
        let read = TlsCall {
            version: Some(0x0303),
            ..returned(function::SSL_READ, 11, 120)
        };
        let handshake = sessions
            .handle(&read)
            .expect("data means the handshake finished");
        assert_eq!(handshake.outcome, Outcome::Success);
        assert_eq!(handshake.version, Some(0x0303));
        assert_eq!(handshake.function, function::SSL_WRITE);
    }

    #[test]
    fn implicit_handshake_without_data_is_unknown() {
        let mut sessions = Sessions::default();
        sessions.handle(&returned(function::SSL_WRITE, 13, -1));
        let handshake = sessions.handle(&call(function::SSL_FREE, 13)).unwrap();
        assert_eq!(handshake.outcome, Outcome::Unknown);
        assert_eq!(handshake.outcome.as_str(), "unknown");
    }

    #[test]
    fn implicit_handshake_decided_by_session_state() {
        let mut sessions = Sessions::default();
        sessions.handle(&call(function::SSL_SET_CONNECT_STATE, 16));
        let done = TlsCall {
            handshake_done: Some(true),
            version: Some(0x0304),
            ..call(function::SSL_READ, 16)
        };
        let handshake = sessions.handle(&done).unwrap();
        assert_eq!(handshake.outcome, Outcome::Success);
        assert_eq!(handshake.version, Some(0x0304));

        // Freed with a finished handshake that no read or write returned.
        sessions.handle(&call(function::SSL_SET_CONNECT_STATE, 17));
        sessions.handle(&returned(function::SSL_WRITE, 17, 0));
        let free = TlsCall {
            handshake_done: Some(true),
            ..call(function::SSL_FREE, 17)
        };
        assert_eq!(sessions.handle(&free).unwrap().outcome, Outcome::Success);

        // Freed unfinished with a readable state: a failure, not unknown.
        sessions.handle(&call(function::SSL_SET_CONNECT_STATE, 18));
        sessions.handle(&returned(function::SSL_WRITE, 18, -1));
        let free = TlsCall {
            handshake_done: Some(false),
            ..call(function::SSL_FREE, 18)
        };
        assert_eq!(
            sessions.handle(&free).unwrap().outcome,
            Outcome::Abandoned(None)
        );
    }

    #[test]
    fn duration_starts_at_the_first_entry() {
        let mut sessions = Sessions::default();
        let success = TlsCall {
            boot_ns: 505_000_000,
            entered_ns: Some(1_000_000),
            ..returned(function::SSL_DO_HANDSHAKE, 19, 1)
        };
        let handshake = sessions.handle(&success).unwrap();
        assert_eq!(handshake.started_ns, 1_000_000);
        assert_eq!(handshake.ended_ns, 505_000_000);
    }

    #[test]
    fn implicit_failure_with_state_known() {
        let mut sessions = Sessions::default();
        sessions.handle(&call(function::SSL_SET_CONNECT_STATE, 20));
        let pending = TlsCall {
            handshake_done: Some(false),
            ..call(function::SSL_WRITE, 20)
        };
        assert_eq!(sessions.handle(&pending), None);
        let free = TlsCall {
            handshake_done: Some(false),
            ..call(function::SSL_FREE, 20)
        };
        assert_eq!(
            sessions.handle(&free).unwrap().outcome,
            Outcome::Abandoned(None)
        );
    }

    #[test]
    fn explicit_failure_ignores_later_reads() {
        let mut sessions = Sessions::default();
        sessions.handle(&call(function::SSL_SET_CONNECT_STATE, 15));
        assert_eq!(
            sessions.handle(&returned(function::SSL_CONNECT, 15, -1)),
            None
        );
        assert_eq!(sessions.handle(&returned(function::SSL_READ, 15, 0)), None);
        let handshake = sessions.handle(&call(function::SSL_FREE, 15)).unwrap();
        assert_eq!(handshake.outcome, Outcome::Abandoned(Some(-1)));
        assert_eq!(handshake.function, function::SSL_CONNECT);
    }

    #[test]
    fn server_sessions_are_not_reported() {
        let mut sessions = Sessions::default();
        sessions.handle(&call(function::SSL_SET_ACCEPT_STATE, 3));
        assert_eq!(
            sessions.handle(&returned(function::SSL_DO_HANDSHAKE, 3, 1)),
            None
        );
        assert_eq!(sessions.handle(&call(function::SSL_FREE, 3)), None);
        sessions.handle(&call(function::SSL_SET_ACCEPT_STATE, 4));
        sessions.handle(&returned(function::SSL_DO_HANDSHAKE, 4, -1));
        assert_eq!(sessions.handle(&call(function::SSL_FREE, 4)), None);
        assert_eq!(sessions.stats.server_handshakes, 2);
    }

    #[test]
    fn gnutls_fatal_and_retry_codes() {
        let mut sessions = Sessions::default();
        let init = TlsCall {
            argument: 2,
            ..returned(function::GNUTLS_INIT, 5, 0)
        };
        sessions.handle(&init);
        let name = TlsCall {
            name: Some(b"files.example.test".to_vec()),
            ..call(function::GNUTLS_SERVER_NAME_SET, 5)
        };
        sessions.handle(&name);
        assert_eq!(
            sessions.handle(&returned(function::GNUTLS_HANDSHAKE, 5, -28)),
            None
        );
        let handshake = sessions
            .handle(&returned(function::GNUTLS_HANDSHAKE, 5, -15))
            .unwrap();
        assert_eq!(handshake.outcome, Outcome::Failure(-15));
        assert_eq!(handshake.server_name.as_deref(), Some("files.example.test"));
        assert_eq!(sessions.handle(&call(function::GNUTLS_DEINIT, 5)), None);
    }

    #[test]
    fn gnutls_server_sessions_are_skipped() {
        let mut sessions = Sessions::default();
        let init = TlsCall {
            argument: GNUTLS_SERVER,
            ..returned(function::GNUTLS_INIT, 6, 0)
        };
        sessions.handle(&init);
        assert_eq!(
            sessions.handle(&returned(function::GNUTLS_HANDSHAKE, 6, 0)),
            None
        );
    }

    #[test]
    fn implausible_versions_are_dropped() {
        let mut sessions = Sessions::default();
        let success = TlsCall {
            version: Some(0x7fff),
            ..returned(function::SSL_DO_HANDSHAKE, 8, 1)
        };
        assert_eq!(sessions.handle(&success).unwrap().version, None);
        assert_eq!(version_text(0x0303), Some("1.2"));
        assert_eq!(version_text(0x7fff), None);
    }

    #[test]
    fn sessions_table_is_bounded() {
        let mut sessions = Sessions::default();
        for session in 0..(MAX_SESSIONS as u64 + 10) {
            sessions.handle(&named(session, "a.example.test"));
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert_eq!(sessions.stats.sessions_evicted, 10);
    }
}
