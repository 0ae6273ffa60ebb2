//! Findings: rules over credential reads that point a security team at unusual use.
//!
//! The daemon hands every identified read to [`Detector::read`], which applies the rules,
//! drops repeats of a finding within the deduplication window and caps the findings per
//! minute. Time comes from a [`Clock`], so the rules can be tested by moving time forward.

mod baseline;
mod finding;
mod policy;
mod revocations;
mod rules;

pub use baseline::{Baselines, unix_ms};
pub use finding::{Finding, FindingType};
pub use policy::{Policy, PolicySubject, Violation};
pub use revocations::Revocations;
pub use rules::{Detector, DetectorStats, Read};

use std::time::SystemTime;

/// The source of the current time for the rules.
pub trait Clock {
    /// Returns the current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
