//! One finding and its `credwatch.finding` event.

use std::time::SystemTime;

use serde_json::Value;

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
    /// A credential was used again after a long time without use.
    DormantReuse,
    /// A credential whose owner (its pod or systemd unit) is gone was read.
    OrphanedUse,
    /// A consumer outside the credential's frozen baseline read it.
    NewConsumer,
    /// A process that read the credential connected to a server outside its frozen baseline.
    NewDestination,
    /// Two or more distinct workloads read one credential.
    SharedCredential,
    /// A token bound to one pod was read from another pod.
    ForeignWorkload,
    /// The policy file does not allow the consumer.
    PolicyViolation,
    /// A certificate in use expires soon.
    CertificateExpiring,
}

impl FindingType {
    /// Returns the value of `credwatch.finding.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExpiredUse => "expired_use",
            Self::InteractiveUse => "interactive_use",
            Self::CredentialSweep => "credential_sweep",
            Self::RevokedUse => "revoked_use",
            Self::DormantReuse => "dormant_reuse",
            Self::OrphanedUse => "orphaned_use",
            Self::NewConsumer => "new_consumer",
            Self::NewDestination => "new_destination",
            Self::SharedCredential => "shared_credential",
            Self::ForeignWorkload => "foreign_workload",
            Self::PolicyViolation => "policy_violation",
            Self::CertificateExpiring => "certificate_expiring",
        }
    }

    /// Returns the value of `credwatch.finding.severity`.
    pub fn severity(self) -> &'static str {
        match self {
            Self::CertificateExpiring => "low",
            Self::ExpiredUse
            | Self::InteractiveUse
            | Self::NewConsumer
            | Self::NewDestination
            | Self::SharedCredential => "medium",
            Self::CredentialSweep
            | Self::RevokedUse
            | Self::DormantReuse
            | Self::OrphanedUse
            | Self::ForeignWorkload
            | Self::PolicyViolation => "high",
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
    /// The baseline, policy or owner that the finding broke, as `credwatch.finding.*`
    /// attributes.
    pub context: Vec<(&'static str, Value)>,
    /// The consumer for deduplication when it is not the reader's workload or executable.
    pub dedup_consumer: Option<String>,
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
    "server.",
    "network.peer.",
];

impl Finding {
    /// Returns a finding without context.
    pub fn new(
        finding_type: FindingType,
        summary: String,
        credential: CredentialSummary,
        time: SystemTime,
    ) -> Self {
        Self {
            finding_type,
            summary,
            credential,
            time,
            context: Vec::new(),
            dedup_consumer: None,
        }
    }

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
        for (key, value) in &self.context {
            event.set(key, value.clone());
        }
        event
    }
}
