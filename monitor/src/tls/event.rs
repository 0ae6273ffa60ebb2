//! Building the `credwatch.tls.handshake` event.

use crate::{
    daemon::access::{Context, set_process_attributes},
    export::{Event, Severity, event::name},
    process::ProcessInfo,
};

use super::{
    hooks::LibraryInfo,
    session::{Handshake, Outcome, protocol_name, version_text},
};
use monitor_common::tls::function;

/// Builds the event for one finished client handshake.
pub fn handshake_event(
    handshake: &Handshake,
    library: Option<&LibraryInfo>,
    process: &ProcessInfo,
    context: &mut Context<'_>,
) -> Event {
    let time = context.clock.to_system_time(handshake.ended_ns);
    let severity = match handshake.outcome {
        Outcome::Success | Outcome::Unknown => Severity::Info,
        Outcome::Failure(_) | Outcome::Abandoned(_) => Severity::Warn,
    };
    let mut event = Event::new(name::TLS_HANDSHAKE, severity, time);
    event
        .set_some("server.address", handshake.server_name.clone())
        .set("credwatch.tls.result", handshake.outcome.as_str());
    if handshake.server_name_truncated {
        event.set("credwatch.tls.server_name_truncated", true);
    }
    if let Some((address, port)) = handshake.peer {
        event
            .set("network.peer.address", address.to_string())
            .set("network.peer.port", u32::from(port))
            .set("server.port", u32::from(port));
    }
    if let Some(library) = library {
        event
            .set("credwatch.tls.library", library.kind.as_str())
            .set("credwatch.tls.library.path", library.path.clone());
    }
    if let Some(version) = handshake.version
        && let Some(text) = version_text(version)
    {
        event
            .set("tls.protocol.name", protocol_name(version))
            .set("tls.protocol.version", text);
    }
    match handshake.outcome {
        Outcome::Success | Outcome::Unknown => {}
        Outcome::Failure(code) => {
            event.set("credwatch.tls.return_code", code);
        }
        Outcome::Abandoned(code) => {
            event
                .set_some("credwatch.tls.return_code", code)
                .set("credwatch.tls.failure", "ended_without_success");
        }
    }
    event
        .set("credwatch.tls.function", function_name(handshake.function))
        .set(
            "credwatch.tls.duration_ms",
            (handshake.ended_ns.saturating_sub(handshake.started_ns) / 1_000_000) as i64,
        )
        .set("thread.id", handshake.tid);
    set_process_attributes(
        &mut event,
        process,
        handshake.uid,
        handshake.cgroup_id,
        context,
    );
    event
}

/// The name of the handshake function whose return decided the outcome.
fn function_name(function: u8) -> &'static str {
    match function {
        function::SSL_CONNECT => "SSL_connect",
        function::SSL_DO_HANDSHAKE => "SSL_do_handshake",
        function::GNUTLS_HANDSHAKE => "gnutls_handshake",
        function::SSL_READ => "SSL_read",
        function::SSL_WRITE => "SSL_write",
        _ => "unknown",
    }
}
