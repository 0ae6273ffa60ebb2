//! Finding events in a daemon's output.

use serde_json::Value;

use crate::Daemon;

/// Event name of findings.
pub const FINDING: &str = "credwatch.finding";

/// Returns every finding the daemon wrote, oldest first.
pub fn findings(daemon: &Daemon) -> Vec<Value> {
    daemon
        .events()
        .into_iter()
        .filter(|event| event["event_name"] == FINDING)
        .collect()
}

/// Returns the findings of one type, oldest first.
pub fn findings_of(daemon: &Daemon, finding_type: &str) -> Vec<Value> {
    findings(daemon)
        .into_iter()
        .filter(|event| event["attributes"]["credwatch.finding.type"] == finding_type)
        .collect()
}

/// Waits for the finding of `finding_type` that the read of process `pid` raised.
pub fn wait_for_finding(daemon: &Daemon, finding_type: &str, pid: u32) -> Value {
    daemon.wait_for(
        &format!("a {finding_type} finding for pid {pid}"),
        |event| {
            event["event_name"] == FINDING
                && event["attributes"]["credwatch.finding.type"] == finding_type
                && event["attributes"]["process.pid"] == pid
        },
    )
}
