//! One finding and its `credwatch.finding` event.

use std::time::SystemTime;

use crate::{
    daemon::identity::{CredentialSummary, rfc3339_seconds},
    export::event::{Event, Severity, name},
};

/// The rule that raised a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FindingType {
    /// A credential was read after its expiry.
    ExpiredUse,
    /// A process with a controlling terminal, or one started from a terminal, read a credential.
    InteractiveUse,
    /// One process read many distinct credentials in a short time.
    CredentialSweep,
    /// A credential on the revocation list was read.
    RevokedUse,
}

impl FindingType {
    /// Returns the value of `credwatch.finding.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExpiredUse => "expired_use",
            Self::InteractiveUse => "interactive_use",
            Self::CredentialSweep => "credential_sweep",
            Self::RevokedUse => "revoked_use",
        }
    }

    /// Returns the value of `credwatch.finding.severity`.
    pub fn severity(self) -> &'static str {
        match self {
            Self::ExpiredUse | Self::InteractiveUse => "medium",
            Self::CredentialSweep | Self::RevokedUse => "high",
        }
    }
}

/// A finding, ready to be written.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// The rule.
    pub finding_type: FindingType,
    /// One sentence in plain words.
    pub summary: String,
    /// The credential concerned.
    pub credential: CredentialSummary,
    /// When the triggering read happened.
    pub time: SystemTime,
}

/// Attribute prefixes of the triggering event that describe the actor and the evidence; they
/// are copied into the finding.
const COPIED_PREFIXES: &[&str] = &[
    "process.",
    "credwatch.process.",
    "container.",
    "credwatch.container.",
    "k8s.",
    "credwatch.k8s.",
    "credwatch.workload.",
    "credwatch.systemd.",
    "file.",
    "credwatch.token.",
];

impl Finding {
    /// Builds the `credwatch.finding` event, with the actor and evidence of `trigger` (the
    /// access event that raised it).
    pub fn to_event(&self, trigger: &Event) -> Event {
        let mut event = Event::new(name::FINDING, Severity::Warn, self.time);
        for (key, value) in &trigger.attributes {
            if COPIED_PREFIXES.iter().any(|prefix| key.starts_with(prefix)) {
                event.attributes.insert(key.clone(), value.clone());
            }
        }
        event
            .set("credwatch.finding.type", self.finding_type.as_str())
            .set("credwatch.finding.severity", self.finding_type.severity())
            .set("credwatch.finding.summary", self.summary.as_str())
            .set("credwatch.finding.trigger", trigger.name)
            .set(
                "credwatch.finding.credential.id",
                self.credential.id.as_str(),
            )
            .set(
                "credwatch.finding.credential.type",
                self.credential.credential_type.as_str(),
            )
            .set_some(
                "credwatch.finding.credential.native_id",
                self.credential.native_id.as_deref(),
            )
            .set_some(
                "credwatch.finding.credential.expires_at",
                self.credential.expires_at.and_then(rfc3339_seconds),
            );
        event
    }
}
