//! The rules, and the deduplication and rate limit every finding passes.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::{
    Clock, Finding, FindingType, Policy, PolicySubject, Revocations,
    baseline::{Baselines, from_unix_ms, unix_ms},
};
use crate::{
    config::DetectionConfig,
    daemon::identity::{CredentialSummary, rfc3339_seconds},
    store::{BaselineConsumer, BaselineDestination, BaselineRecord, Store},
};

/// Deduplication entries kept before expired ones are swept out.
const MAX_RAISED: usize = 65_536;

/// One identified read, as the rules see it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Read<'a> {
    /// Process id.
    pub pid: u32,
    /// Parent process id, when known.
    pub ppid: Option<u32>,
    /// Executable path, or empty when unknown.
    pub executable: &'a str,
    /// `credwatch.workload.id`, when known.
    pub workload_id: Option<&'a str>,
    /// Kubernetes namespace of the reader, when it runs in a pod.
    pub namespace: Option<&'a str>,
    /// Path of the file read, when the credentials came from a file.
    pub path: Option<&'a str>,
    /// Catalogue type of the file read, such as `aws_credentials`.
    pub file_type: Option<&'a str>,
    /// Whether the process or an ancestor has a controlling terminal.
    pub interactive: Option<bool>,
    /// The credentials in the file.
    pub credentials: &'a [CredentialSummary],
    /// For each credential, its previous use or, when never used, its first sighting, in Unix
    /// milliseconds. Empty when unknown.
    pub last_used: &'a [Option<i64>],
    /// Whether the file is a token bound to another pod than the reader's.
    pub foreign_pod: bool,
    /// The owner of the file when it is gone, in words: a deleted pod or a stopped unit.
    pub gone_owner: Option<&'a str>,
}

impl Read<'_> {
    /// Returns who used the credential, for deduplication: the workload, or the executable.
    fn consumer(&self) -> &str {
        self.workload_id.unwrap_or(self.executable)
    }

    /// Returns the reader in words: `/usr/bin/cat (pid 42)`.
    fn actor(&self) -> String {
        let executable = if self.executable.is_empty() {
            "an unknown program"
        } else {
            self.executable
        };
        format!("{executable} (pid {})", self.pid)
    }

    /// Returns the reader as a baseline consumer, with a container's workload id cut to its
    /// runtime: a container gets a new id each time it is recreated, so its full id would make
    /// every deployment a new consumer.
    fn baseline_consumer(&self) -> BaselineConsumer {
        BaselineConsumer {
            workload: stable_workload(self.workload_id.unwrap_or_default()).to_owned(),
            executable: self.executable.to_owned(),
        }
    }
}

/// Counts of what the detector did, for the health event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectorStats {
    /// Findings written.
    pub raised: u64,
    /// Findings dropped as repeats within the deduplication window.
    pub deduplicated: u64,
    /// Findings dropped because the per-minute limit was reached.
    pub rate_limited: u64,
}

/// Whose reads a sweep counts: one process, or the children of one parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum SweepScope {
    Process(u32),
    Children(u32),
}

/// Applies the rules to reads.
#[derive(Debug)]
pub struct Detector<C: Clock> {
    clock: C,
    settings: DetectionConfig,
    /// When each (type, credential id, consumer) was last raised.
    raised: HashMap<(FindingType, String, String), SystemTime>,
    /// The credentials each process, and the children of each parent, read within the sweep
    /// window, oldest first.
    recent: HashMap<SweepScope, VecDeque<(SystemTime, String)>>,
    /// Start of the current minute of the rate limit, and the findings raised in it.
    minute: (SystemTime, u32),
    /// The revocation list, when configured and readable.
    revocations: Option<Revocations>,
    /// The policy file, when configured and readable.
    policy: Option<Policy>,
    /// Learnt baselines.
    baselines: Baselines,
    /// Counts of what the detector did.
    pub stats: DetectorStats,
}

impl<C: Clock> Detector<C> {
    /// Creates a detector with the `detection` settings and baselines kept in memory. A
    /// revocation or policy file that cannot be read (the configuration check read it moments
    /// earlier) is logged, and its rule stays off.
    pub fn new(settings: DetectionConfig, clock: C) -> Self {
        let revocations = settings.revocation_file.as_deref().and_then(|path| {
            Revocations::load(path)
                .inspect(|list| tracing::info!(path = %list.path().display(), "read the revocation list"))
                .inspect_err(|error| tracing::error!(%error, "revoked_use is off"))
                .ok()
        });
        let policy = settings.policy_file.as_deref().and_then(|path| {
            Policy::load(path)
                .inspect(|policy| tracing::info!(path = %path.display(), policies = policy.len(), "read the policy file"))
                .inspect_err(|error| tracing::error!(%error, "policy_violation is off"))
                .ok()
        });
        Self {
            clock,
            settings,
            raised: HashMap::new(),
            recent: HashMap::new(),
            minute: (UNIX_EPOCH, 0),
            revocations,
            policy,
            baselines: Baselines::in_memory(),
            stats: DetectorStats::default(),
        }
    }

    /// Keeps baselines in `store`, loading those it has.
    pub fn with_store(mut self, store: Store) -> Self {
        self.baselines = Baselines::persisted(store);
        self
    }

    /// Loads imported baselines when an import changed them, so that an idle host applies an
    /// import too. Reads and connections do the same before the rules run.
    pub fn refresh_baselines(&mut self) {
        let now = self.clock.now();
        self.baselines.refresh(now);
    }

    /// Returns the baselines.
    pub fn baselines(&self) -> &Baselines {
        &self.baselines
    }

    /// Applies the rules to one read and returns the findings to write.
    pub fn read(&mut self, read: &Read<'_>) -> Vec<Finding> {
        if !self.settings.enabled || read.credentials.is_empty() {
            return Vec::new();
        }
        let now = self.clock.now();
        self.baselines.refresh(now);
        let mut findings = Vec::new();
        for (index, credential) in read.credentials.iter().enumerate() {
            let last_used = read.last_used.get(index).copied().flatten();
            findings.extend(self.expired_use(read, credential, now));
            findings.extend(self.certificate_expiring(read, credential, now));
            findings.extend(self.interactive_use(read, credential, now));
            findings.extend(self.revoked_use(read, credential, now));
            findings.extend(self.dormant_reuse(read, credential, last_used, now));
            findings.extend(self.orphaned_use(read, credential, now));
            findings.extend(self.foreign_workload(read, credential, now));
            findings.extend(self.policy_violation(read, credential, now));
            findings.extend(self.baseline_rules(read, credential, now));
        }
        findings.extend(self.credential_sweep(read, now));
        findings
            .into_iter()
            .filter(|finding| {
                let consumer = finding.dedup_consumer.as_deref().unwrap_or(read.consumer());
                let consumer = consumer.to_owned();
                self.admit(finding, &consumer, now)
            })
            .collect()
    }

    /// Applies `new_destination` to a connection to `server:port` by a process that read the
    /// credentials `credential_ids`, and returns the findings to write.
    pub fn destination(
        &mut self,
        reader: &Read<'_>,
        credential_ids: &[String],
        server: &str,
        port: u16,
    ) -> Vec<Finding> {
        if !self.settings.enabled {
            return Vec::new();
        }
        let now = self.clock.now();
        self.baselines.refresh(now);
        let destination = BaselineDestination {
            server: server.to_owned(),
            port,
        };
        let mut findings = Vec::new();
        for id in credential_ids {
            let outside = self.baselines.destination(id, destination.clone(), now);
            if !outside || !self.settings.new_destination {
                continue;
            }
            let Some(record) = self.baselines.get(id) else {
                continue;
            };
            let credential = summary_of(record);
            let known: Vec<String> = record
                .destinations
                .iter()
                .map(|known| format!("{}:{}", known.server, known.port))
                .collect();
            let mut finding = Finding::new(
                FindingType::NewDestination,
                format!(
                    "{} connected to {server}:{port} after reading {}, outside the {} learnt for it.",
                    reader.actor(),
                    describe(&credential),
                    counted(known.len(), "destination")
                ),
                credential,
                now,
            );
            finding.dedup_consumer = Some(format!("{} -> {server}:{port}", reader.consumer()));
            finding.context = vec![
                (
                    "credwatch.finding.destination",
                    format!("{server}:{port}").into(),
                ),
                ("credwatch.finding.baseline.destinations", known.into()),
                ("credwatch.finding.baseline.pinned", record.pinned.into()),
            ];
            findings.push(finding);
        }
        findings
            .into_iter()
            .filter(|finding| {
                let consumer = finding.dedup_consumer.clone().unwrap_or_default();
                self.admit(finding, &consumer, now)
            })
            .collect()
    }

    /// Forgets what a process read, once it exited.
    pub fn process_exited(&mut self, pid: u32) {
        self.recent.remove(&SweepScope::Process(pid));
        self.recent.remove(&SweepScope::Children(pid));
    }

    fn expired_use(
        &self,
        read: &Read<'_>,
        credential: &CredentialSummary,
        now: SystemTime,
    ) -> Option<Finding> {
        if !self.settings.expired_use {
            return None;
        }
        let expires_at = credential.expires_at?;
        let expiry = unix_time(expires_at)?;
        let late = now.duration_since(expiry).ok()?;
        if late <= self.settings.expired_grace {
            return None;
        }
        Some(Finding::new(
            FindingType::ExpiredUse,
            format!(
                "{} read {} that expired {} ago.",
                read.actor(),
                describe(credential),
                words(late)
            ),
            credential.clone(),
            now,
        ))
    }

    fn interactive_use(
        &self,
        read: &Read<'_>,
        credential: &CredentialSummary,
        now: SystemTime,
    ) -> Option<Finding> {
        if !self.settings.interactive_use || read.interactive != Some(true) {
            return None;
        }
        Some(Finding::new(
            FindingType::InteractiveUse,
            format!(
                "{}, run from a terminal, read {}.",
                read.actor(),
                describe(credential)
            ),
            credential.clone(),
            now,
        ))
    }

    fn revoked_use(
        &mut self,
        read: &Read<'_>,
        credential: &CredentialSummary,
        now: SystemTime,
    ) -> Option<Finding> {
        let revocations = self.revocations.as_mut()?;
        let revoked = revocations.contains(&credential.id)
            || credential
                .native_id
                .as_deref()
                .is_some_and(|native| revocations.contains(native));
        if !revoked {
            return None;
        }
        Some(Finding::new(
            FindingType::RevokedUse,
            format!(
                "{} read {}, which is on the revocation list {}.",
                read.actor(),
                describe(credential),
                revocations.path().display()
            ),
            credential.clone(),
            now,
        ))
    }

    fn certificate_expiring(
        &self,
        read: &Read<'_>,
        credential: &CredentialSummary,
        now: SystemTime,
    ) -> Option<Finding> {
        let warning = self.settings.certificate_warning;
        if warning.is_zero() || !is_certificate(&credential.credential_type) {
            return None;
        }
        let expiry = unix_time(credential.expires_at?)?;
        let left = expiry.duration_since(now).ok()?;
        if left > warning {
            return None;
        }
        let mut finding = Finding::new(
            FindingType::CertificateExpiring,
            format!(
                "{} read {}, which expires in {}.",
                read.actor(),
                describe(credential),
                words(left)
            ),
            credential.clone(),
            now,
        );
        finding.context = vec![(
            "credwatch.finding.expires_in_days",
            (left.as_secs() / 86_400).into(),
        )];
        Some(finding)
    }

    /// Raises `dormant_reuse` when the credential's previous use (or, never used, its first
    /// sighting) is older than `dormant_after`.
    fn dormant_reuse(
        &self,
        read: &Read<'_>,
        credential: &CredentialSummary,
        last_used: Option<i64>,
        now: SystemTime,
    ) -> Option<Finding> {
        let dormant_after = self.settings.dormant_after;
        if dormant_after.is_zero() {
            return None;
        }
        let last = from_unix_ms(last_used?);
        let idle = now.duration_since(last).ok()?;
        if idle < dormant_after {
            return None;
        }
        let mut finding = Finding::new(
            FindingType::DormantReuse,
            format!(
                "{} read {}, unused for {}.",
                read.actor(),
                describe(credential),
                words(idle)
            ),
            credential.clone(),
            now,
        );
        finding.context = vec![
            (
                "credwatch.finding.last_used",
                rfc3339_seconds(unix_ms(last) / 1_000).into(),
            ),
            (
                "credwatch.finding.dormant_days",
                (idle.as_secs() / 86_400).into(),
            ),
        ];
        Some(finding)
    }

    fn orphaned_use(
        &self,
        read: &Read<'_>,
        credential: &CredentialSummary,
        now: SystemTime,
    ) -> Option<Finding> {
        if !self.settings.orphaned_use {
            return None;
        }
        let owner = read.gone_owner?;
        let mut finding = Finding::new(
            FindingType::OrphanedUse,
            format!(
                "{} read {}, whose owner {owner} no longer exists.",
                read.actor(),
                describe(credential)
            ),
            credential.clone(),
            now,
        );
        finding.context = vec![("credwatch.finding.owner", owner.into())];
        Some(finding)
    }

    fn foreign_workload(
        &self,
        read: &Read<'_>,
        credential: &CredentialSummary,
        now: SystemTime,
    ) -> Option<Finding> {
        if !self.settings.foreign_workload || !read.foreign_pod {
            return None;
        }
        let (uid, name) = credential.bound_pod.as_ref()?;
        let pod = name.as_deref().unwrap_or(uid);
        Some(Finding::new(
            FindingType::ForeignWorkload,
            format!(
                "{} read {}, which is bound to pod {pod}, from another pod.",
                read.actor(),
                describe(credential)
            ),
            credential.clone(),
            now,
        ))
    }

    fn policy_violation(
        &mut self,
        read: &Read<'_>,
        credential: &CredentialSummary,
        now: SystemTime,
    ) -> Option<Finding> {
        let policy = self.policy.as_mut()?;
        let subject = PolicySubject {
            credential_type: &credential.credential_type,
            file_type: read.file_type,
            native_id: credential.native_id.as_deref(),
            path: read.path,
            workload_id: read.workload_id,
            namespace: read.namespace,
            executable: read.executable,
        };
        let violation = policy.check(&subject)?;
        let mut finding = Finding::new(
            FindingType::PolicyViolation,
            format!(
                "{} read {}, which policy {} allows only to {}.",
                read.actor(),
                describe(credential),
                violation.policy,
                violation.allowed
            ),
            credential.clone(),
            now,
        );
        finding.context = vec![
            ("credwatch.finding.policy.name", violation.policy.into()),
            ("credwatch.finding.policy.allowed", violation.allowed.into()),
            (
                "credwatch.finding.policy.file",
                policy.path().display().to_string().into(),
            ),
        ];
        Some(finding)
    }

    /// Learns the consumer into the credential's baseline, or raises `new_consumer` when the
    /// baseline is frozen without it and `shared_credential` when the workloads reach the
    /// threshold.
    fn baseline_rules(
        &mut self,
        read: &Read<'_>,
        credential: &CredentialSummary,
        now: SystemTime,
    ) -> Vec<Finding> {
        let observation = self.baselines.consumer(
            &self.settings,
            credential,
            read.file_type,
            read.baseline_consumer(),
            now,
        );
        let Some(record) = self.baselines.get(&credential.id) else {
            return Vec::new();
        };
        let mut findings = Vec::new();
        if observation.outside && self.settings.new_consumer {
            let known: Vec<String> = record.consumers.iter().map(consumer_words).collect();
            let consumer = read.baseline_consumer();
            let mut finding = Finding::new(
                FindingType::NewConsumer,
                format!(
                    "{} read {}, outside the {} learnt for it.",
                    read.actor(),
                    describe(credential),
                    counted(known.len(), "consumer")
                ),
                credential.clone(),
                now,
            );
            finding.dedup_consumer = Some(consumer_words(&consumer));
            finding.context = vec![
                ("credwatch.finding.baseline.consumers", known.into()),
                (
                    "credwatch.finding.baseline.learning_until",
                    rfc3339_seconds(record.learning_until_ms / 1_000).into(),
                ),
                ("credwatch.finding.baseline.pinned", record.pinned.into()),
            ];
            findings.push(finding);
        }
        let threshold = self.settings.shared_workloads as usize;
        if let Some(count) = observation.new_workload_count
            && threshold > 0
            && count >= threshold
        {
            let mut finding = Finding::new(
                FindingType::SharedCredential,
                format!(
                    "{} read {}, now used by {count} distinct workloads.",
                    read.actor(),
                    describe(credential)
                ),
                credential.clone(),
                now,
            );
            finding.context = vec![(
                "credwatch.finding.workloads",
                record.workloads.clone().into(),
            )];
            findings.push(finding);
        }
        findings
    }

    /// Raises a finding when the distinct credentials that the process, or the children of its
    /// parent, read within the window reach the threshold. The children's count catches a
    /// shell loop that starts one reader per file.
    fn credential_sweep(&mut self, read: &Read<'_>, now: SystemTime) -> Option<Finding> {
        let threshold = self.settings.sweep_distinct;
        if threshold == 0 {
            return None;
        }
        let mut scopes = vec![SweepScope::Process(read.pid)];
        if let Some(ppid) = read.ppid.filter(|ppid| *ppid > 1) {
            scopes.push(SweepScope::Children(ppid));
        }
        let mut swept = None;
        for scope in scopes {
            let count = self.remember_reads(scope, read, now);
            if count >= threshold as usize && swept.is_none() {
                swept = Some((scope, count));
            }
        }
        let (scope, count) = swept?;
        let last = read.credentials.last()?;
        let (who, scope_name) = match scope {
            SweepScope::Process(_) => (read.actor(), "process"),
            SweepScope::Children(ppid) => (format!("processes started by pid {ppid}"), "children"),
        };
        let mut finding = Finding::new(
            FindingType::CredentialSweep,
            format!(
                "{who} read {count} distinct credentials within {}.",
                words(self.settings.sweep_window)
            ),
            last.clone(),
            now,
        );
        finding.context = vec![
            ("credwatch.finding.sweep.count", count.into()),
            ("credwatch.finding.sweep.scope", scope_name.into()),
        ];
        Some(finding)
    }

    /// Adds the read's credentials to the scope's recent reads, drops those older than the
    /// window, and returns how many distinct credentials remain.
    fn remember_reads(&mut self, scope: SweepScope, read: &Read<'_>, now: SystemTime) -> usize {
        let window = self.settings.sweep_window;
        let limit = 4 * self.settings.sweep_distinct as usize;
        let recent = self.recent.entry(scope).or_default();
        for credential in read.credentials {
            recent.push_back((now, credential.id.clone()));
        }
        while let Some((time, _)) = recent.front() {
            if !now.duration_since(*time).is_ok_and(|age| age > window) {
                break;
            }
            recent.pop_front();
        }
        let distinct = recent
            .iter()
            .map(|(_, id)| id.as_str())
            .collect::<HashSet<_>>()
            .len();
        // Once the threshold is reached, older reads add nothing, so the list stays short.
        while recent.len() > limit {
            recent.pop_front();
        }
        distinct
    }

    /// Applies the deduplication window and the per-minute limit.
    fn admit(&mut self, finding: &Finding, consumer: &str, now: SystemTime) -> bool {
        // A sweep is one finding per consumer, whatever credential crossed the threshold.
        let credential = match finding.finding_type {
            FindingType::CredentialSweep => String::new(),
            _ => finding.credential.id.clone(),
        };
        let key = (finding.finding_type, credential, consumer.to_owned());
        if self.is_repeat(&key, now) {
            self.stats.deduplicated += 1;
            return false;
        }
        if !self.take_from_minute(now) {
            self.stats.rate_limited += 1;
            return false;
        }
        self.remember_raised(key, now);
        self.stats.raised += 1;
        true
    }

    fn is_repeat(&self, key: &(FindingType, String, String), now: SystemTime) -> bool {
        self.raised.get(key).is_some_and(|last| {
            now.duration_since(*last)
                .map_or(true, |age| age < self.settings.dedup_window)
        })
    }

    /// Counts a finding against the current minute and returns whether the limit allows it.
    fn take_from_minute(&mut self, now: SystemTime) -> bool {
        if now
            .duration_since(self.minute.0)
            .map_or(true, |age| age >= MINUTE)
        {
            self.minute = (now, 0);
        }
        if self.minute.1 >= self.settings.max_findings_per_minute {
            return false;
        }
        self.minute.1 += 1;
        true
    }

    fn remember_raised(&mut self, key: (FindingType, String, String), now: SystemTime) {
        let window = self.settings.dedup_window;
        if self.raised.len() >= MAX_RAISED {
            self.raised
                .retain(|_, last| now.duration_since(*last).is_ok_and(|age| age < window));
        }
        self.raised.insert(key, now);
    }
}

const MINUTE: Duration = Duration::from_secs(60);

fn unix_time(seconds: i64) -> Option<SystemTime> {
    let seconds = u64::try_from(seconds).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// Returns the part of a workload id that survives a restart of the workload: a container id
/// (`container://docker/4f3e...`) is cut to its runtime (`container://docker`).
fn stable_workload(workload: &str) -> &str {
    let Some(rest) = workload.strip_prefix("container://") else {
        return workload;
    };
    match rest.find('/') {
        Some(slash) => &workload[.."container://".len() + slash],
        None => workload,
    }
}

/// Returns whether a credential type is a certificate, whose expiry `certificate_expiring`
/// watches.
fn is_certificate(credential_type: &str) -> bool {
    credential_type.ends_with("certificate")
}

/// Returns a credential's summary from its baseline, for findings on connections.
fn summary_of(record: &BaselineRecord) -> CredentialSummary {
    CredentialSummary {
        id: record.credential_id.clone(),
        credential_type: record.credential_type.clone(),
        native_id: record.native_id.clone(),
        label: record.label.clone(),
        expires_at: None,
        bound_pod: None,
    }
}

/// Writes a consumer as `workload (executable)`, or the one that is known.
fn consumer_words(consumer: &BaselineConsumer) -> String {
    match (consumer.workload.is_empty(), consumer.executable.is_empty()) {
        (false, false) => format!("{} ({})", consumer.workload, consumer.executable),
        (false, true) => consumer.workload.clone(),
        _ => consumer.executable.clone(),
    }
}

/// Names a credential without its secret: its type, its label and its native id, such as
/// `the aws_access_key credential default (AKIAMADEUPEXAMPLE234)`.
fn describe(credential: &CredentialSummary) -> String {
    let kind = &credential.credential_type;
    match (credential.label.as_deref(), credential.native_id.as_deref()) {
        (Some(label), Some(native)) if label != native => {
            format!("the {kind} credential {label} ({native})")
        }
        (Some(name), _) | (None, Some(name)) => format!("the {kind} credential {name}"),
        (None, None) => format!("a {kind} credential"),
    }
}

/// Writes a count with its noun: `1 consumer`, `2 consumers`.
fn counted(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// Writes a duration in the largest whole unit: `3 days`, `2 hours`, `45 seconds`.
fn words(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (count, unit) = match seconds {
        0..=119 => (seconds, "second"),
        120..=7_199 => (seconds / 60, "minute"),
        7_200..=172_799 => (seconds / 3_600, "hour"),
        _ => (seconds / 86_400, "day"),
    };
    if count == 1 {
        format!("1 {unit}")
    } else {
        format!("{count} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A clock the test moves by hand.
    #[derive(Debug)]
    struct ManualClock(Cell<SystemTime>);

    impl ManualClock {
        fn at(seconds: u64) -> Self {
            Self(Cell::new(UNIX_EPOCH + Duration::from_secs(seconds)))
        }
    }

    impl Clock for &ManualClock {
        fn now(&self) -> SystemTime {
            self.0.get()
        }
    }

    fn advance(clock: &ManualClock, seconds: u64) {
        clock.0.set(clock.0.get() + Duration::from_secs(seconds));
    }

    fn credential(id: &str, expires_at: Option<i64>) -> CredentialSummary {
        CredentialSummary {
            id: id.to_owned(),
            credential_type: "kubernetes_service_account_token".to_owned(),
            native_id: Some("system:serviceaccount:shop:cart".to_owned()),
            label: None,
            expires_at,
            bound_pod: None,
        }
    }

    fn read<'a>(pid: u32, credentials: &'a [CredentialSummary]) -> Read<'a> {
        Read {
            pid,
            executable: "/usr/bin/cart",
            workload_id: Some("spiffe://cluster.local/ns/shop/sa/cart"),
            interactive: Some(false),
            credentials,
            ..Read::default()
        }
    }

    fn types(findings: &[Finding]) -> Vec<&'static str> {
        findings
            .iter()
            .map(|finding| finding.finding_type.as_str())
            .collect()
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn expired_credential_is_found_after_grace() {
        let clock = ManualClock::at(NOW);
        let mut detector = Detector::new(DetectionConfig::default(), &clock);
        let fresh = [credential("cw1:a", Some(NOW as i64 + 3_600))];
        let just_expired = [credential("cw1:b", Some(NOW as i64 - 30))];
        let expired = [credential("cw1:c", Some(NOW as i64 - 3 * 86_400))];

        assert!(detector.read(&read(1, &fresh)).is_empty());
        assert!(detector.read(&read(1, &just_expired)).is_empty());
        let findings = detector.read(&read(1, &expired));

        assert_eq!(types(&findings), ["expired_use"]);
        assert!(
            findings[0].summary.contains("expired 3 days ago"),
            "{findings:?}"
        );
        assert!(
            findings[0]
                .summary
                .contains("system:serviceaccount:shop:cart")
        );
    }

    #[test]
    fn repeats_are_dropped_within_the_window() {
        let clock = ManualClock::at(NOW);
        let mut detector = Detector::new(DetectionConfig::default(), &clock);
        let expired = [credential("cw1:c", Some(NOW as i64 - 86_400))];

        assert_eq!(detector.read(&read(1, &expired)).len(), 1);
        advance(&clock, 60);
        assert!(detector.read(&read(2, &expired)).is_empty());
        advance(&clock, 3_600);
        assert_eq!(detector.read(&read(3, &expired)).len(), 1);
        assert_eq!(detector.stats.deduplicated, 1);
        assert_eq!(detector.stats.raised, 2);
    }

    #[test]
    fn terminal_reader_is_interactive_use() {
        let clock = ManualClock::at(NOW);
        let mut detector = Detector::new(DetectionConfig::default(), &clock);
        let token = [credential("cw1:a", None)];
        let shell = Read {
            executable: "/usr/bin/cat",
            workload_id: None,
            interactive: Some(true),
            ..read(7, &token)
        };

        assert!(detector.read(&read(6, &token)).is_empty());
        let findings = detector.read(&shell);

        assert_eq!(types(&findings), ["interactive_use"]);
        assert!(
            findings[0]
                .summary
                .starts_with("/usr/bin/cat (pid 7), run from a terminal")
        );
    }

    #[test]
    fn many_distinct_credentials_are_a_sweep() {
        let clock = ManualClock::at(NOW);
        let mut detector = Detector::new(DetectionConfig::default(), &clock);
        let files: Vec<[CredentialSummary; 1]> = (0..12)
            .map(|index| [credential(&format!("cw1:{index}"), None)])
            .collect();

        // The same credential again and again is no sweep.
        for _ in 0..20 {
            assert!(detector.read(&read(9, &files[0])).is_empty());
        }
        let mut found = Vec::new();
        for file in &files[1..] {
            found.extend(detector.read(&read(9, file)));
        }

        assert_eq!(types(&found), ["credential_sweep"]);
        assert!(
            found[0]
                .summary
                .contains("read 10 distinct credentials within 60 seconds")
        );
    }

    #[test]
    fn sweep_ignores_slow_reads() {
        let clock = ManualClock::at(NOW);
        let mut detector = Detector::new(DetectionConfig::default(), &clock);
        for index in 0..30 {
            let file = [credential(&format!("cw1:{index}"), None)];
            assert!(detector.read(&read(9, &file)).is_empty());
            advance(&clock, 10);
        }
        detector.process_exited(9);
        assert!(detector.recent.is_empty());
    }

    #[test]
    fn findings_per_minute_are_capped() {
        let clock = ManualClock::at(NOW);
        let settings = DetectionConfig {
            max_findings_per_minute: 2,
            ..DetectionConfig::default()
        };
        let mut detector = Detector::new(settings, &clock);
        let mut raised = 0;
        for index in 0..5 {
            let expired = [credential(
                &format!("cw1:{index}"),
                Some(NOW as i64 - 86_400),
            )];
            raised += detector.read(&read(1, &expired)).len();
        }
        assert_eq!(raised, 2);
        assert_eq!(detector.stats.rate_limited, 3);
        advance(&clock, 61);
        let expired = [credential("cw1:late", Some(NOW as i64 - 86_400))];
        assert_eq!(detector.read(&read(1, &expired)).len(), 1);
    }

    #[test]
    fn disabled_detection_finds_nothing() {
        let clock = ManualClock::at(NOW);
        let settings = DetectionConfig {
            enabled: false,
            ..DetectionConfig::default()
        };
        let mut detector = Detector::new(settings, &clock);
        let expired = [credential("cw1:c", Some(NOW as i64 - 86_400))];
        assert!(detector.read(&read(1, &expired)).is_empty());
    }

    #[test]
    fn revoked_ids_and_native_ids_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("revoked.txt");
        std::fs::write(&list, "cw1:gone\nsystem:serviceaccount:ops:old\n").unwrap();
        let clock = ManualClock::at(NOW);
        let settings = DetectionConfig {
            revocation_file: Some(list),
            ..DetectionConfig::default()
        };
        let mut detector = Detector::new(settings, &clock);
        let by_id = [credential("cw1:gone", None)];
        let mut by_native = credential("cw1:other", None);
        by_native.native_id = Some("system:serviceaccount:ops:old".into());
        let not_revoked = [credential("cw1:kept", None)];

        assert_eq!(types(&detector.read(&read(1, &by_id))), ["revoked_use"]);
        assert_eq!(
            types(&detector.read(&read(1, &[by_native]))),
            ["revoked_use"]
        );
        assert!(detector.read(&read(1, &not_revoked)).is_empty());
    }

    fn service_read<'a>(pid: u32, credentials: &'a [CredentialSummary]) -> Read<'a> {
        Read {
            executable: "/usr/bin/cart",
            workload_id: Some("systemd://cart.service"),
            ..read(pid, credentials)
        }
    }

    fn cat_read<'a>(pid: u32, credentials: &'a [CredentialSummary]) -> Read<'a> {
        Read {
            executable: "/usr/bin/cat",
            workload_id: Some("exe:///usr/bin/cat"),
            ..read(pid, credentials)
        }
    }

    fn learning(seconds: u64) -> DetectionConfig {
        DetectionConfig {
            learning_window: Duration::from_secs(seconds),
            ..DetectionConfig::default()
        }
    }

    #[test]
    fn new_consumer_after_learning() {
        let clock = ManualClock::at(NOW);
        let mut detector = Detector::new(learning(60), &clock);
        let token = [credential("cw1:a", None)];

        for _ in 0..5 {
            assert!(detector.read(&service_read(10, &token)).is_empty());
            advance(&clock, 10);
        }
        advance(&clock, 60);
        let benign = detector.read(&service_read(11, &token));
        let findings = detector.read(&cat_read(12, &token));

        assert!(benign.is_empty(), "{benign:?}");
        assert_eq!(types(&findings), ["new_consumer"]);
        assert!(
            findings[0]
                .summary
                .contains("outside the 1 consumer learnt")
        );
        let consumers = &findings[0].context[0];
        assert_eq!(consumers.0, "credwatch.finding.baseline.consumers");
        assert_eq!(
            consumers.1,
            serde_json::json!(["systemd://cart.service (/usr/bin/cart)"])
        );
    }

    #[test]
    fn learning_window_per_type() {
        let clock = ManualClock::at(NOW);
        let mut settings = learning(3_600);
        settings.learning_windows.insert(
            "kubernetes_service_account_token".into(),
            Duration::from_secs(10),
        );
        let mut detector = Detector::new(settings, &clock);
        let token = [credential("cw1:a", None)];

        assert!(detector.read(&service_read(10, &token)).is_empty());
        advance(&clock, 11);

        assert_eq!(
            types(&detector.read(&cat_read(12, &token))),
            ["new_consumer"]
        );
    }

    #[test]
    fn baselines_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(NOW);
        let token = [credential("cw1:a", None)];
        {
            let store = Store::open(dir.path()).unwrap();
            let mut detector = Detector::new(learning(60), &clock).with_store(store);
            assert!(detector.read(&service_read(10, &token)).is_empty());
        }
        advance(&clock, 61);

        let store = Store::open(dir.path()).unwrap();
        let mut detector = Detector::new(learning(60), &clock).with_store(store);

        assert_eq!(detector.baselines().len(), 1);
        assert!(detector.read(&service_read(20, &token)).is_empty());
        assert_eq!(
            types(&detector.read(&cat_read(21, &token))),
            ["new_consumer"]
        );
    }

    #[test]
    fn learning_continues_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(NOW);
        let token = [credential("cw1:a", None)];
        {
            let store = Store::open(dir.path()).unwrap();
            let mut detector = Detector::new(learning(60), &clock).with_store(store);
            assert!(detector.read(&service_read(10, &token)).is_empty());
        }
        advance(&clock, 30);
        {
            // Still learning: the restart must not have frozen the baseline early.
            let store = Store::open(dir.path()).unwrap();
            let mut detector = Detector::new(learning(60), &clock).with_store(store);
            assert!(detector.read(&cat_read(11, &token)).is_empty());
        }
        advance(&clock, 31);

        let store = Store::open(dir.path()).unwrap();
        let mut detector = Detector::new(learning(60), &clock).with_store(store);

        assert!(detector.read(&cat_read(12, &token)).is_empty());
    }

    #[test]
    fn dormant_credential_used_again() {
        let clock = ManualClock::at(NOW);
        let mut detector = Detector::new(DetectionConfig::default(), &clock);
        let token = [credential("cw1:a", None)];
        let recent = [Some((NOW as i64 - 86_400) * 1_000)];
        let old = [Some((NOW as i64 - 45 * 86_400) * 1_000)];

        let fresh = detector.read(&Read {
            last_used: &recent,
            ..service_read(10, &token)
        });
        let findings = detector.read(&Read {
            last_used: &old,
            ..service_read(11, &token)
        });

        assert!(fresh.is_empty());
        assert_eq!(types(&findings), ["dormant_reuse"]);
        assert!(findings[0].summary.contains("unused for 45 days"));
    }

    #[test]
    fn certificate_expiring_within_warning() {
        let clock = ManualClock::at(NOW);
        let mut detector = Detector::new(DetectionConfig::default(), &clock);
        let mut soon = credential("cw1:soon", Some(NOW as i64 + 5 * 86_400));
        soon.credential_type = "x509_certificate".into();
        let mut later = credential("cw1:later", Some(NOW as i64 + 90 * 86_400));
        later.credential_type = "x509_certificate".into();

        assert!(detector.read(&service_read(10, &[later])).is_empty());
        let findings = detector.read(&service_read(10, &[soon]));

        assert_eq!(types(&findings), ["certificate_expiring"]);
        assert!(findings[0].summary.contains("expires in 5 days"));
    }

    #[test]
    fn second_workload_is_shared_use() {
        let clock = ManualClock::at(NOW);
        let mut detector = Detector::new(DetectionConfig::default(), &clock);
        let token = [credential("cw1:a", None)];
        let other = Read {
            workload_id: Some("systemd://billing.service"),
            ..service_read(11, &token)
        };

        assert!(detector.read(&service_read(10, &token)).is_empty());
        // Programs named only by their executable are not workloads.
        assert!(detector.read(&cat_read(12, &token)).is_empty());
        let findings = detector.read(&other);

        assert_eq!(types(&findings), ["shared_credential"]);
        assert!(findings[0].summary.contains("2 distinct workloads"));
    }

    #[test]
    fn new_destination_after_learning() {
        let clock = ManualClock::at(NOW);
        let mut detector = Detector::new(learning(60), &clock);
        let token = [credential("cw1:a", None)];
        let ids = ["cw1:a".to_owned()];
        let reader = service_read(10, &token);

        assert!(detector.read(&reader).is_empty());
        assert!(
            detector
                .destination(&reader, &ids, "api.example.test", 443)
                .is_empty()
        );
        advance(&clock, 61);
        let known = detector.destination(&reader, &ids, "api.example.test", 443);
        let findings = detector.destination(&reader, &ids, "exfil.example.test", 443);

        assert!(known.is_empty());
        assert_eq!(types(&findings), ["new_destination"]);
        assert!(findings[0].summary.contains("exfil.example.test:443"));
    }

    #[test]
    fn children_of_one_shell_sweep() {
        let clock = ManualClock::at(NOW);
        let mut detector = Detector::new(DetectionConfig::default(), &clock);
        let mut found = Vec::new();
        for index in 0..10 {
            let file = [credential(&format!("cw1:{index}"), None)];
            found.extend(detector.read(&Read {
                ppid: Some(500),
                ..cat_read(600 + index, &file)
            }));
        }

        assert_eq!(types(&found), ["credential_sweep"]);
        assert!(found[0].summary.starts_with("processes started by pid 500"));
    }

    #[test]
    fn foreign_and_orphaned_tokens() {
        let clock = ManualClock::at(NOW);
        let mut detector = Detector::new(DetectionConfig::default(), &clock);
        let mut bound = credential("cw1:a", None);
        bound.bound_pod = Some(("uid-1".into(), Some("cart-1".into())));
        let token = [bound];

        let foreign = detector.read(&Read {
            foreign_pod: true,
            ..service_read(10, &token)
        });
        let orphaned = detector.read(&Read {
            gone_owner: Some("pod cart-1 (uid-1)"),
            ..service_read(11, &token)
        });

        assert_eq!(types(&foreign), ["foreign_workload"]);
        assert_eq!(types(&orphaned), ["orphaned_use"]);
        assert!(
            orphaned[0]
                .summary
                .contains("owner pod cart-1 (uid-1) no longer exists")
        );
    }

    #[test]
    fn learning_window_of_file_type() {
        let clock = ManualClock::at(NOW);
        let mut settings = learning(3_600);
        settings
            .learning_windows
            .insert("aws_credentials".into(), Duration::from_secs(10));
        let mut detector = Detector::new(settings, &clock);
        let key = [credential("cw1:a", None)];

        // The credential's own type has no window of its own, so the file's applies.
        assert!(
            detector
                .read(&Read {
                    file_type: Some("aws_credentials"),
                    ..service_read(10, &key)
                })
                .is_empty()
        );
        advance(&clock, 11);

        let findings = detector.read(&Read {
            file_type: Some("aws_credentials"),
            ..cat_read(12, &key)
        });
        assert_eq!(types(&findings), ["new_consumer"]);
    }

    #[test]
    fn recreated_container_is_the_same_consumer() {
        let clock = ManualClock::at(NOW);
        let mut detector = Detector::new(learning(60), &clock);
        let token = [credential("cw1:a", None)];
        let first = Read {
            workload_id: Some("container://docker/4f3e2d1c0b0a"),
            ..service_read(10, &token)
        };
        let recreated = Read {
            workload_id: Some("container://docker/99aa88bb77cc"),
            ..service_read(11, &token)
        };
        let shell = Read {
            executable: "/bin/sh",
            ..recreated
        };

        assert!(detector.read(&first).is_empty());
        advance(&clock, 61);

        assert!(detector.read(&recreated).is_empty());
        assert_eq!(types(&detector.read(&shell)), ["new_consumer"]);
        assert_eq!(
            stable_workload("container://1000@podman/ab12"),
            "container://1000@podman"
        );
        assert_eq!(
            stable_workload("systemd://cart.service"),
            "systemd://cart.service"
        );
    }

    #[test]
    fn durations_read_as_words() {
        assert_eq!(words(Duration::from_secs(1)), "1 second");
        assert_eq!(words(Duration::from_secs(600)), "10 minutes");
        assert_eq!(words(Duration::from_secs(3 * 3_600)), "3 hours");
        assert_eq!(words(Duration::from_secs(90 * 86_400)), "90 days");
    }
}
