//! Building the `credwatch.network.connect` event.

use std::net::IpAddr;

use crate::{
    daemon::access::{Context, access_result, set_process_attributes},
    export::{Event, Severity, event::name},
    process::ProcessInfo,
    sensor::decode_network::ConnectEvent,
};

/// Linux `EINPROGRESS`.
const EINPROGRESS: i32 = 115;

/// Builds the event for one connect.
pub fn connect_event(
    connect: &ConnectEvent,
    process: &ProcessInfo,
    context: &mut Context<'_>,
) -> Event {
    let time = context.clock.to_system_time(connect.boot_ns);
    let mut event = Event::new(name::NETWORK_CONNECT, Severity::Info, time);
    event
        .set("network.peer.address", connect.peer.to_string())
        .set("network.peer.port", u32::from(connect.port))
        .set("network.transport", "tcp")
        .set("network.type", network_type(connect.peer))
        .set("credwatch.connect.result", connect_result(connect));
    if connect.result < 0 && !connect.outcome_unknown {
        event.set("error.type", access_result(i64::from(connect.result)));
    }
    if connect.completed_later {
        event.set("credwatch.connect.completed_later", true);
    }
    event.set("thread.id", connect.tid);
    set_process_attributes(&mut event, process, connect.uid, connect.cgroup_id, context);
    event
}

/// `ok`, the errno name, or `in_progress` when the outcome of a non-blocking connect was lost.
fn connect_result(connect: &ConnectEvent) -> String {
    if connect.outcome_unknown || connect.result == -EINPROGRESS {
        return "in_progress".to_owned();
    }
    access_result(i64::from(connect.result))
}

/// `ipv4` or `ipv6`, as OpenTelemetry's `network.type`.
fn network_type(address: IpAddr) -> &'static str {
    match address {
        IpAddr::V4(_) => "ipv4",
        IpAddr::V6(_) => "ipv6",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(result: i32, outcome_unknown: bool) -> ConnectEvent {
        ConnectEvent {
            pid: 1,
            tid: 1,
            uid: 0,
            peer: "127.0.0.1".parse().unwrap(),
            port: 1,
            result,
            completed_later: false,
            outcome_unknown,
            boot_ns: 0,
            cgroup_id: 0,
        }
    }

    #[test]
    fn results_are_named() {
        assert_eq!(connect_result(&connect(0, false)), "ok");
        assert_eq!(connect_result(&connect(-111, false)), "ECONNREFUSED");
        assert_eq!(connect_result(&connect(-115, true)), "in_progress");
    }

    #[test]
    fn network_types() {
        assert_eq!(network_type("::1".parse().unwrap()), "ipv6");
        assert_eq!(network_type("10.0.0.1".parse().unwrap()), "ipv4");
    }
}
