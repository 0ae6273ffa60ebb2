//! Decoding the connection and TLS records, with the same rules as [`super::decode`]: every
//! field is read at its `offset_of!` position, every length and enum value is checked.

use std::{
    mem::offset_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use monitor_common::{
    network::{AF_INET, AF_INET6, CONNECT_ASYNC, CONNECT_OUTCOME_UNKNOWN, ConnectRecord, Peer},
    record::kind,
    tls::{
        SERVER_NAME_LEN, TLS_HANDSHAKE_DONE, TLS_HAS_NAME, TLS_NAME_TRUNCATED, TLS_RETURN,
        TLS_STATE_KNOWN, TlsRecord, function,
    },
};

use super::decode::{DecodeError, check_len, read_u32, read_u64};

/// An outbound TCP connection and its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectEvent {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real user id.
    pub uid: u32,
    /// The peer.
    pub peer: IpAddr,
    /// Peer port.
    pub port: u16,
    /// 0 on success or a negated errno; `-EINPROGRESS` when the outcome was lost.
    pub result: i32,
    /// The outcome came after the system call returned `EINPROGRESS`.
    pub completed_later: bool,
    /// The connect returned `EINPROGRESS` and its outcome was not seen.
    pub outcome_unknown: bool,
    /// Time of the connect call, nanoseconds since boot.
    pub boot_ns: u64,
    /// cgroup v2 id.
    pub cgroup_id: u64,
}

/// One call of a TLS library function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsCall {
    /// The function number, one of `monitor_common::tls::function`.
    pub function: u8,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real user id.
    pub uid: u32,
    /// The daemon's number for the library file.
    pub library: u32,
    /// The session object's address in the process.
    pub session: u64,
    /// Return value, for return records.
    pub result: Option<i64>,
    /// Second argument (the `gnutls_init` flags).
    pub argument: u64,
    /// Wire protocol version, when read.
    pub version: Option<u16>,
    /// Whether the session's handshake had finished successfully, when the program could read
    /// the session's state.
    pub handshake_done: Option<bool>,
    /// Server name bytes, for name records.
    pub name: Option<Vec<u8>>,
    /// The server name was cut.
    pub name_truncated: bool,
    /// The peer the thread connected to last.
    pub peer: Option<(IpAddr, u16)>,
    /// Nanoseconds since boot.
    pub boot_ns: u64,
    /// For returns, when the function was entered, nanoseconds since boot.
    pub entered_ns: Option<u64>,
    /// cgroup v2 id.
    pub cgroup_id: u64,
}

/// Decodes a [`ConnectRecord`].
pub fn decode_connect(bytes: &[u8]) -> Result<ConnectEvent, DecodeError> {
    check_len(bytes, kind::CONNECT, size_of::<ConnectRecord>())?;
    let u32_at = |offset| read_u32(bytes, offset).unwrap_or_default();
    let u64_at = |offset| read_u64(bytes, offset).unwrap_or_default();
    let family = read_u16(bytes, offset_of!(ConnectRecord, family));
    let address = address_at(bytes, offset_of!(ConnectRecord, address));
    let peer = peer_address(family, address).ok_or(DecodeError::UnknownValue {
        field: "family",
        value: u32::from(family),
    })?;
    let flags = u32_at(offset_of!(ConnectRecord, flags));
    Ok(ConnectEvent {
        pid: u32_at(offset_of!(ConnectRecord, pid)),
        tid: u32_at(offset_of!(ConnectRecord, tid)),
        uid: u32_at(offset_of!(ConnectRecord, uid)),
        peer,
        port: read_u16(bytes, offset_of!(ConnectRecord, port)),
        result: u32_at(offset_of!(ConnectRecord, result)) as i32,
        completed_later: flags & CONNECT_ASYNC != 0,
        outcome_unknown: flags & CONNECT_OUTCOME_UNKNOWN != 0,
        boot_ns: u64_at(offset_of!(ConnectRecord, boot_ns)),
        cgroup_id: u64_at(offset_of!(ConnectRecord, cgroup_id)),
    })
}

/// Decodes a [`TlsRecord`].
pub fn decode_tls(bytes: &[u8]) -> Result<TlsCall, DecodeError> {
    check_len(bytes, kind::TLS, size_of::<TlsRecord>())?;
    let u32_at = |offset| read_u32(bytes, offset).unwrap_or_default();
    let u64_at = |offset| read_u64(bytes, offset).unwrap_or_default();

    let function = bytes[offset_of!(TlsRecord, function)];
    if !(function::SSL_CTRL..=function::LAST).contains(&function) {
        return Err(DecodeError::UnknownValue {
            field: "function",
            value: u32::from(function),
        });
    }
    let flags = read_u16(bytes, offset_of!(TlsRecord, flags));
    let name = if flags & TLS_HAS_NAME != 0 {
        let len = u32_at(offset_of!(TlsRecord, name_len));
        if len as usize >= SERVER_NAME_LEN {
            return Err(DecodeError::LengthOutOfRange {
                field: "name_len",
                value: len,
                max: SERVER_NAME_LEN - 1,
            });
        }
        let start = offset_of!(TlsRecord, name);
        Some(bytes[start..start + len as usize].to_vec())
    } else {
        None
    };
    let version = u32_at(offset_of!(TlsRecord, version));
    let peer_start = offset_of!(TlsRecord, peer);
    let peer_family = read_u16(bytes, peer_start + offset_of!(Peer, family));
    let peer = peer_address(
        peer_family,
        address_at(bytes, peer_start + offset_of!(Peer, address)),
    )
    .map(|address| {
        (
            address,
            read_u16(bytes, peer_start + offset_of!(Peer, port)),
        )
    });

    Ok(TlsCall {
        function,
        pid: u32_at(offset_of!(TlsRecord, pid)),
        tid: u32_at(offset_of!(TlsRecord, tid)),
        uid: u32_at(offset_of!(TlsRecord, uid)),
        library: u32_at(offset_of!(TlsRecord, library)),
        session: u64_at(offset_of!(TlsRecord, session)),
        result: (flags & TLS_RETURN != 0).then(|| u64_at(offset_of!(TlsRecord, result)) as i64),
        argument: u64_at(offset_of!(TlsRecord, argument)),
        version: u16::try_from(version).ok().filter(|version| *version != 0),
        handshake_done: (flags & TLS_STATE_KNOWN != 0).then_some(flags & TLS_HANDSHAKE_DONE != 0),
        name,
        name_truncated: flags & TLS_NAME_TRUNCATED != 0,
        peer,
        boot_ns: u64_at(offset_of!(TlsRecord, boot_ns)),
        entered_ns: Some(u64_at(offset_of!(TlsRecord, entered_ns))).filter(|ns| *ns != 0),
        cgroup_id: u64_at(offset_of!(TlsRecord, cgroup_id)),
    })
}

fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    bytes
        .get(offset..offset + 2)
        .map(|slice| u16::from_ne_bytes([slice[0], slice[1]]))
        .unwrap_or_default()
}

fn address_at(bytes: &[u8], offset: usize) -> [u8; 16] {
    let mut address = [0u8; 16];
    if let Some(slice) = bytes.get(offset..offset + 16) {
        address.copy_from_slice(slice);
    }
    address
}

fn peer_address(family: u16, address: [u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
            address[0], address[1], address[2], address[3],
        ))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(address))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensor::decode::{Record, decode};

    fn connect_bytes(family: u16, address: &[u8], port: u16, result: i32, flags: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; size_of::<ConnectRecord>()];
        let mut put = |offset: usize, value: &[u8]| {
            bytes[offset..offset + value.len()].copy_from_slice(value)
        };
        put(
            offset_of!(ConnectRecord, kind),
            &kind::CONNECT.to_ne_bytes(),
        );
        put(offset_of!(ConnectRecord, pid), &42u32.to_ne_bytes());
        put(offset_of!(ConnectRecord, tid), &43u32.to_ne_bytes());
        put(offset_of!(ConnectRecord, flags), &flags.to_ne_bytes());
        put(offset_of!(ConnectRecord, family), &family.to_ne_bytes());
        put(offset_of!(ConnectRecord, port), &port.to_ne_bytes());
        put(offset_of!(ConnectRecord, result), &result.to_ne_bytes());
        put(offset_of!(ConnectRecord, address), address);
        bytes
    }

    #[test]
    fn ipv4_connect_decodes() {
        let bytes = connect_bytes(AF_INET, &[127, 0, 0, 1], 8443, -111, CONNECT_ASYNC);
        let Record::Connect(event) = decode(&bytes).unwrap() else {
            panic!("not a connect record");
        };
        assert_eq!(event.pid, 42);
        assert_eq!(event.tid, 43);
        assert_eq!(event.peer, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(event.port, 8443);
        assert_eq!(event.result, -111);
        assert!(event.completed_later);
        assert!(!event.outcome_unknown);
    }

    #[test]
    fn ipv6_connect_decodes() {
        let address = "::1".parse::<Ipv6Addr>().unwrap().octets();
        let bytes = connect_bytes(AF_INET6, &address, 443, 0, 0);
        let Record::Connect(event) = decode(&bytes).unwrap() else {
            panic!("not a connect record");
        };
        assert_eq!(event.peer, "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn unknown_family_is_rejected() {
        let bytes = connect_bytes(99, &[1, 2, 3, 4], 1, 0, 0);
        assert_eq!(
            decode(&bytes).unwrap_err(),
            DecodeError::UnknownValue {
                field: "family",
                value: 99
            }
        );
        assert!(matches!(
            decode(&bytes[..20]).unwrap_err(),
            DecodeError::TooShort { .. }
        ));
    }

    fn tls_bytes(function: u8, flags: u16, name: &[u8], name_len: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; size_of::<TlsRecord>()];
        let mut put = |offset: usize, value: &[u8]| {
            bytes[offset..offset + value.len()].copy_from_slice(value)
        };
        put(offset_of!(TlsRecord, kind), &kind::TLS.to_ne_bytes());
        put(offset_of!(TlsRecord, pid), &7u32.to_ne_bytes());
        put(offset_of!(TlsRecord, function), &[function]);
        put(offset_of!(TlsRecord, flags), &flags.to_ne_bytes());
        put(offset_of!(TlsRecord, name_len), &name_len.to_ne_bytes());
        put(
            offset_of!(TlsRecord, session),
            &0xdead_beefu64.to_ne_bytes(),
        );
        put(offset_of!(TlsRecord, result), &(-1i64).to_ne_bytes());
        put(offset_of!(TlsRecord, name), name);
        bytes
    }

    #[test]
    fn tls_name_record_decodes() {
        let bytes = tls_bytes(function::SSL_CTRL, TLS_HAS_NAME, b"api.example.test", 16);
        let Record::Tls(call) = decode(&bytes).unwrap() else {
            panic!("not a TLS record");
        };
        assert_eq!(call.name.as_deref(), Some(&b"api.example.test"[..]));
        assert_eq!(call.session, 0xdead_beef);
        assert_eq!(call.result, None);
        assert_eq!(call.peer, None);
    }

    #[test]
    fn tls_return_record_carries_the_result() {
        let bytes = tls_bytes(function::SSL_DO_HANDSHAKE, TLS_RETURN, b"", 0);
        let Record::Tls(call) = decode(&bytes).unwrap() else {
            panic!("not a TLS record");
        };
        assert_eq!(call.result, Some(-1));
        assert_eq!(call.name, None);
    }

    #[test]
    fn tls_bad_fields_are_rejected() {
        let bytes = tls_bytes(0, 0, b"", 0);
        assert!(matches!(
            decode(&bytes).unwrap_err(),
            DecodeError::UnknownValue {
                field: "function",
                ..
            }
        ));
        let bytes = tls_bytes(function::SSL_CTRL, TLS_HAS_NAME, b"x", 4000);
        assert!(matches!(
            decode(&bytes).unwrap_err(),
            DecodeError::LengthOutOfRange {
                field: "name_len",
                ..
            }
        ));
    }
}
