//! The rules, and the deduplication and rate limit every finding passes.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::{Clock, Finding, FindingType, Revocations};
use crate::{config::DetectionConfig, daemon::identity::CredentialSummary};

/// Deduplication entries kept before expired ones are swept out.
const MAX_RAISED: usize = 65_536;

/// One identified read, as the rules see it.
#[derive(Clone, Copy, Debug)]
pub struct Read<'a> {
    /// Process id.
    pub pid: u32,
    /// Executable path, or empty when unknown.
    pub executable: &'a str,
    /// `credwatch.workload.id`, when known.
    pub workload_id: Option<&'a str>,
    /// Whether the process or an ancestor has a controlling terminal.
    pub interactive: Option<bool>,
    /// The credentials in the file.
    pub credentials: &'a [CredentialSummary],
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

/// Applies the rules to reads.
#[derive(Debug)]
pub struct Detector<C: Clock> {
    clock: C,
    settings: DetectionConfig,
    /// When each (type, credential id, consumer) was last raised.
    raised: HashMap<(FindingType, String, String), SystemTime>,
    /// The credentials each process read within the sweep window, oldest first.
    recent: HashMap<u32, VecDeque<(SystemTime, String)>>,
    /// Start of the current minute of the rate limit, and the findings raised in it.
    minute: (SystemTime, u32),
    /// The revocation list, when configured and readable.
    revocations: Option<Revocations>,
    /// Counts of what the detector did.
    pub stats: DetectorStats,
}

impl<C: Clock> Detector<C> {
    /// Creates a detector with the `detection` settings. A revocation file that cannot be
    /// read (the configuration check read it moments earlier) is logged, and `revoked_use`
    /// stays off.
    pub fn new(settings: DetectionConfig, clock: C) -> Self {
        let revocations = settings.revocation_file.as_deref().and_then(|path| {
            Revocations::load(path)
                .inspect_err(|error| tracing::error!(%error, "revoked_use is off"))
                .ok()
        });
        Self {
            clock,
            settings,
            raised: HashMap::new(),
            recent: HashMap::new(),
            minute: (UNIX_EPOCH, 0),
            revocations,
            stats: DetectorStats::default(),
        }
    }

    /// Applies the rules to one read and returns the findings to write.
    pub fn read(&mut self, read: &Read<'_>) -> Vec<Finding> {
        if !self.settings.enabled || read.credentials.is_empty() {
            return Vec::new();
        }
        let now = self.clock.now();
        let mut findings = Vec::new();
        for credential in read.credentials {
            findings.extend(self.expired_use(read, credential, now));
            findings.extend(self.interactive_use(read, credential, now));
            findings.extend(self.revoked_use(read, credential, now));
        }
        findings.extend(self.credential_sweep(read, now));
        findings
            .into_iter()
            .filter(|finding| self.admit(finding, read.consumer(), now))
            .collect()
    }

    /// Forgets what a process read, once it exited.
    pub fn process_exited(&mut self, pid: u32) {
        self.recent.remove(&pid);
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
        Some(Finding {
            finding_type: FindingType::ExpiredUse,
            summary: format!(
                "{} read {} that expired {} ago.",
                read.actor(),
                describe(credential),
                words(late)
            ),
            credential: credential.clone(),
            time: now,
        })
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
        Some(Finding {
            finding_type: FindingType::InteractiveUse,
            summary: format!(
                "{}, run from a terminal, read {}.",
                read.actor(),
                describe(credential)
            ),
            credential: credential.clone(),
            time: now,
        })
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
        Some(Finding {
            finding_type: FindingType::RevokedUse,
            summary: format!(
                "{} read {}, which is on the revocation list {}.",
                read.actor(),
                describe(credential),
                revocations.path().display()
            ),
            credential: credential.clone(),
            time: now,
        })
    }

    /// Raises a finding when the process's distinct credentials within the window reach the
    /// threshold.
    fn credential_sweep(&mut self, read: &Read<'_>, now: SystemTime) -> Option<Finding> {
        let threshold = self.settings.sweep_distinct;
        if threshold == 0 {
            return None;
        }
        let count = self.remember_reads(read, now);
        if count < threshold as usize {
            return None;
        }
        let last = read.credentials.last()?;
        Some(Finding {
            finding_type: FindingType::CredentialSweep,
            summary: format!(
                "{} read {count} distinct credentials within {}.",
                read.actor(),
                words(self.settings.sweep_window)
            ),
            credential: last.clone(),
            time: now,
        })
    }

    /// Adds the read's credentials to the process's recent reads, drops those older than the
    /// window, and returns how many distinct credentials remain.
    fn remember_reads(&mut self, read: &Read<'_>, now: SystemTime) -> usize {
        let window = self.settings.sweep_window;
        let limit = 4 * self.settings.sweep_distinct as usize;
        let recent = self.recent.entry(read.pid).or_default();
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

/// Names a credential without its secret: its type and its label or native id.
fn describe(credential: &CredentialSummary) -> String {
    let name = credential
        .label
        .as_deref()
        .or(credential.native_id.as_deref());
    match name {
        Some(name) => format!("the {} credential {name}", credential.credential_type),
        None => format!("a {} credential", credential.credential_type),
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

    #[test]
    fn durations_read_as_words() {
        assert_eq!(words(Duration::from_secs(1)), "1 second");
        assert_eq!(words(Duration::from_secs(600)), "10 minutes");
        assert_eq!(words(Duration::from_secs(3 * 3_600)), "3 hours");
        assert_eq!(words(Duration::from_secs(90 * 86_400)), "90 days");
    }
}
