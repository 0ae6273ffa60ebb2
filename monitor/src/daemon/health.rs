//! `credwatch.monitor.health` events: probe states at start, drops as they happen, counters on
//! request, periodically and at stop.

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::{
    export::{Event, Severity, event::name},
    sensor::{ProbeStatus, counters::Counters},
};

/// Why a health event was written; the value of `credwatch.health.reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The daemon attached its probes.
    Start,
    /// The kernel or the daemon lost records since the last check.
    Drops,
    /// SIGUSR1 asked for a report.
    Requested,
    /// The periodic report.
    Interval,
    /// The daemon is stopping.
    Stop,
    /// Export to the collector started failing.
    Export,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Drops => "drops",
            Self::Requested => "requested",
            Self::Interval => "interval",
            Self::Stop => "stop",
            Self::Export => "export",
        }
    }
}

/// Counts kept by the daemon itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaemonStats {
    /// Records read from the ring buffer.
    pub records_received: u64,
    /// Records that failed validation.
    pub records_malformed: u64,
    /// Opens whose normalised path matched no catalogue entry.
    pub opens_not_credential: u64,
    /// Candidate opens whose relative path could not be resolved.
    pub opens_unresolved: u64,
    /// Events written.
    pub events_written: u64,
    /// Events that could not be written.
    pub events_failed: u64,
    /// TLS library files attached since start.
    pub tls_libraries_attached: u64,
    /// TLS library files released because no process used them any more.
    pub tls_libraries_released: u64,
    /// TLS probes that failed to attach.
    pub tls_attach_failures: u64,
    /// Server-side TLS sessions, which are not reported.
    pub tls_server_sessions: u64,
    /// TLS sessions dropped because the session table was full.
    pub tls_sessions_evicted: u64,
    /// Credential file versions read and identified.
    pub files_identified: u64,
    /// Reads whose file version was already identified.
    pub identify_cache_hits: u64,
    /// Credential files that could not be opened or read for identification.
    pub files_unreadable: u64,
    /// Files read through the reader's parent or cgroup after the reader exited.
    pub files_read_through_cgroup: u64,
    /// Failed updates of the state database.
    pub store_failures: u64,
    /// Exposures reported.
    pub exposures_reported: u64,
    /// Exposures inherited from the parent process, counted and not reported.
    pub exposures_inherited: u64,
    /// New processes whose environment could not be read.
    pub environments_unreadable: u64,
    /// Executable file versions hashed.
    pub executables_hashed: u64,
    /// Executables not hashed: too large, unreadable or a full queue.
    pub executables_not_hashed: u64,
    /// Cached pids that turned out to belong to a new process (an exit record was lost).
    pub pids_reused: u64,
    /// Findings written.
    pub findings_raised: u64,
    /// Findings dropped as repeats within the deduplication window.
    pub findings_deduplicated: u64,
    /// Findings dropped by the per-minute limit.
    pub findings_rate_limited: u64,
    /// Credentials with a baseline.
    pub baselines: u64,
}

impl DaemonStats {
    /// Records lost in the daemon.
    pub fn dropped(&self) -> u64 {
        self.records_malformed + self.events_failed
    }
}

/// Builds a health event.
pub fn health_event(
    reason: Reason,
    kernel: &Counters,
    daemon: &DaemonStats,
    dropped_since_last: Option<u64>,
    probes: Option<&[ProbeStatus]>,
) -> Event {
    let severity = if reason == Reason::Drops {
        Severity::Warn
    } else {
        Severity::Info
    };
    let mut event = Event::new(name::MONITOR_HEALTH, severity, SystemTime::now());
    event.set("credwatch.health.reason", reason.as_str());
    for (key, value) in kernel.fields() {
        event.set(&format!("credwatch.kernel.{key}"), value);
    }
    event
        .set("credwatch.daemon.records_received", daemon.records_received)
        .set(
            "credwatch.daemon.records_malformed",
            daemon.records_malformed,
        )
        .set(
            "credwatch.daemon.opens_not_credential",
            daemon.opens_not_credential,
        )
        .set("credwatch.daemon.opens_unresolved", daemon.opens_unresolved)
        .set("credwatch.daemon.events_written", daemon.events_written)
        .set("credwatch.daemon.events_failed", daemon.events_failed)
        .set(
            "credwatch.daemon.tls_libraries_attached",
            daemon.tls_libraries_attached,
        )
        .set(
            "credwatch.daemon.tls_libraries_released",
            daemon.tls_libraries_released,
        )
        .set(
            "credwatch.daemon.tls_attach_failures",
            daemon.tls_attach_failures,
        )
        .set(
            "credwatch.daemon.tls_server_sessions",
            daemon.tls_server_sessions,
        )
        .set(
            "credwatch.daemon.tls_sessions_evicted",
            daemon.tls_sessions_evicted,
        )
        .set("credwatch.daemon.files_identified", daemon.files_identified)
        .set(
            "credwatch.daemon.identify_cache_hits",
            daemon.identify_cache_hits,
        )
        .set("credwatch.daemon.files_unreadable", daemon.files_unreadable)
        .set(
            "credwatch.daemon.files_read_through_cgroup",
            daemon.files_read_through_cgroup,
        )
        .set("credwatch.daemon.store_failures", daemon.store_failures)
        .set(
            "credwatch.daemon.exposures_reported",
            daemon.exposures_reported,
        )
        .set(
            "credwatch.daemon.exposures_inherited",
            daemon.exposures_inherited,
        )
        .set(
            "credwatch.daemon.environments_unreadable",
            daemon.environments_unreadable,
        )
        .set(
            "credwatch.daemon.executables_hashed",
            daemon.executables_hashed,
        )
        .set(
            "credwatch.daemon.executables_not_hashed",
            daemon.executables_not_hashed,
        )
        .set("credwatch.daemon.pids_reused", daemon.pids_reused)
        .set("credwatch.daemon.findings_raised", daemon.findings_raised)
        .set(
            "credwatch.daemon.findings_deduplicated",
            daemon.findings_deduplicated,
        )
        .set("credwatch.daemon.baselines", daemon.baselines)
        .set(
            "credwatch.daemon.findings_rate_limited",
            daemon.findings_rate_limited,
        )
        .set(
            "credwatch.dropped.total",
            kernel.dropped() + daemon.dropped(),
        )
        .set_some("credwatch.dropped.since_last_report", dropped_since_last);
    if let Some(probes) = probes {
        event.set(
            "credwatch.probes",
            Value::Array(probes.iter().map(probe_json).collect()),
        );
    }
    event
}

fn probe_json(probe: &ProbeStatus) -> Value {
    let mut value = json!({
        "program": probe.program,
        "hook": probe.hook,
        "attach_point": probe.attach_point,
        "state": probe.state,
    });
    if let Some(detail) = &probe.detail {
        value["detail"] = detail.clone().into();
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_warnings_with_exact_counts() {
        let kernel = Counters {
            ringbuf_full: 5,
            pending_full: 2,
            ..Counters::default()
        };
        let daemon = DaemonStats {
            records_malformed: 1,
            ..DaemonStats::default()
        };
        let event = health_event(Reason::Drops, &kernel, &daemon, Some(3), None);
        assert_eq!(event.severity, Severity::Warn);
        assert_eq!(event.attributes["credwatch.dropped.total"], 8);
        assert_eq!(event.attributes["credwatch.dropped.since_last_report"], 3);
        assert_eq!(event.attributes["credwatch.kernel.ringbuf_full"], 5);
    }

    #[test]
    fn start_lists_probes() {
        let probe = ProbeStatus {
            program: "sys_enter_openat2".into(),
            attach_point: "syscalls/sys_enter_openat2".into(),
            hook: "tracepoint",
            state: "unavailable",
            detail: Some("the kernel has no such tracepoint".into()),
        };
        let event = health_event(
            Reason::Start,
            &Counters::default(),
            &DaemonStats::default(),
            None,
            Some(&[probe]),
        );
        let probes = event.attributes["credwatch.probes"].as_array().unwrap();
        assert_eq!(probes[0]["state"], "unavailable");
        assert_eq!(probes[0]["attach_point"], "syscalls/sys_enter_openat2");
        assert_eq!(event.attributes["credwatch.health.reason"], "start");
    }
}
