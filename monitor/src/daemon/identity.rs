//! Which credentials an opened file holds.
//!
//! For each successful read of a credential file the daemon opens the file as the process
//! sees it, takes the file's version (device, inode, size, modification and change time)
//! and identifies the credentials in it once per version. The result is cached, recorded in
//! the state database and attached to the access event. The secret material lives only for
//! the time it takes to compute the keyed credential id.

use std::{
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{
    credential::{
        fingerprint::CredentialKey,
        identify::{IdentifyError, identify},
        reader::{self, ReadError},
    },
    export::Event,
    store::{CredentialRecord, FileVersion, Store},
};

/// Most file versions whose identities are kept. The cache starts over when full.
const MAX_VERSIONS: usize = 4096;
/// Most credential ids remembered per process for destinations.
const MAX_IDS_PER_PROCESS: usize = 64;
/// Most processes remembered as readers. Exit records remove them; when exit records were
/// lost the table starts over once it is full.
const MAX_READERS: usize = 65_536;
/// Most processes of a cgroup tried when the process that opened a file has exited.
const MAX_FALLBACK_PROCESSES: usize = 8;

/// Outcome of identifying a file, `credwatch.identify.result`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// One or more credentials were found.
    Identified,
    /// The file contains no credential (it is empty or has no secret entries).
    Empty,
    /// The file's format is not one credwatch reads.
    Unsupported,
    /// The file does not follow the format of its type.
    Invalid,
    /// The file is larger than credwatch reads.
    TooLarge,
    /// The file could not be opened or read.
    Unreadable,
}

impl Outcome {
    /// Returns the attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identified => "identified",
            Self::Empty => "empty",
            Self::Unsupported => "unsupported",
            Self::Invalid => "invalid",
            Self::TooLarge => "too_large",
            Self::Unreadable => "unreadable",
        }
    }
}

/// A credential without its secret.
#[derive(Clone, Debug, PartialEq)]
pub struct CredentialSummary {
    /// Keyed fingerprint.
    pub id: String,
    /// Specific type.
    pub credential_type: String,
    /// The issuer's id.
    pub native_id: Option<String>,
    /// Profile, user or host name.
    pub label: Option<String>,
    /// Expiry, Unix seconds.
    pub expires_at: Option<i64>,
    /// The pod a Kubernetes token is bound to: its uid and name.
    pub bound_pod: Option<(String, Option<String>)>,
}

/// The identities of one file version.
#[derive(Clone, Debug)]
pub struct FileIdentity {
    /// Outcome of the identification.
    pub outcome: Outcome,
    /// The credentials, in file order.
    pub credentials: Vec<CredentialSummary>,
    /// Reason the file was not identified, in words that contain no file content.
    pub problem: Option<String>,
}

impl FileIdentity {
    fn failed(outcome: Outcome, problem: String) -> Self {
        Self {
            outcome,
            credentials: Vec::new(),
            problem: Some(problem),
        }
    }
}

/// Counters of the identification work, for the health event.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityStats {
    /// File versions read and identified.
    pub files_identified: u64,
    /// Reads that found the version in the cache.
    pub cache_hits: u64,
    /// Files that could not be opened or read.
    pub files_unreadable: u64,
    /// Files opened through the parent or another process of the cgroup, because the reader
    /// had exited.
    pub read_through_cgroup: u64,
    /// Failed writes to the state database.
    pub store_failures: u64,
}

/// Identifies credential files and keeps the inventory.
pub struct Identities {
    key: CredentialKey,
    store: Store,
    versions: HashMap<FileVersion, Arc<FileIdentity>>,
    readers: HashMap<u32, Vec<String>>,
    /// Counters.
    pub stats: IdentityStats,
}

/// The process that read a file and where to look when it has exited.
pub struct Reader<'a> {
    /// Process id.
    pub pid: u32,
    /// Parent process id, when known.
    pub ppid: Option<u32>,
    /// Its cgroup directory, when known.
    pub cgroup_dir: Option<PathBuf>,
    /// Its executable, for the consumer list.
    pub executable: &'a str,
    /// `credwatch.workload.id` of the reader, or empty when it has none.
    pub workload: &'a str,
}

impl Identities {
    /// Identities computed under `key` and recorded in `store`.
    pub fn new(key: CredentialKey, store: Store) -> Self {
        Self {
            key,
            store,
            versions: HashMap::new(),
            readers: HashMap::new(),
            stats: IdentityStats::default(),
        }
    }

    /// Returns the key that credential ids are computed under.
    pub fn key(&self) -> &CredentialKey {
        &self.key
    }

    /// Identifies the file `path` of catalogue type `credential_type` that `reader` opened,
    /// and records the use. Also returns, per credential, its previous use or first sighting
    /// in Unix milliseconds, for `dormant_reuse`.
    pub fn file_read(
        &mut self,
        reader: &Reader<'_>,
        path: &Path,
        credential_type: &str,
        now_ms: i64,
    ) -> (Arc<FileIdentity>, Vec<Option<i64>>) {
        let identity = match self.open(reader, path) {
            Ok(file) => self.identify_open_file(file, reader.pid, path, credential_type, now_ms),
            Err(error) => {
                self.stats.files_unreadable += 1;
                tracing::debug!(pid = reader.pid, path = %path.display(), error = %error, "could not read a credential file");
                let problem = if !reader_gone(reader.pid) {
                    crate::sensor::error_chain(&error)
                } else {
                    format!(
                        "process {} exited before credwatch could read the file, and neither its \
                         parent nor another process of its cgroup could open it",
                        reader.pid
                    )
                };
                Arc::new(FileIdentity::failed(Outcome::Unreadable, problem))
            }
        };
        let mut previous_uses = Vec::with_capacity(identity.credentials.len());
        for credential in &identity.credentials {
            self.remember_reader(reader.pid, &credential.id);
            let result =
                self.store
                    .record_use(&credential.id, reader.executable, reader.workload, now_ms);
            previous_uses.push(self.check_store(result).flatten());
        }
        (identity, previous_uses)
    }

    /// Returns the number of credentials in the inventory, or 0 when the database cannot be read.
    pub fn credential_count(&self) -> u64 {
        self.store.credential_count().unwrap_or_default()
    }

    /// Returns the ids of the credentials a process read.
    pub fn credentials_read_by(&self, pid: u32) -> &[String] {
        self.readers.get(&pid).map_or(&[], Vec::as_slice)
    }

    /// Records that a process which read credentials connected to `server:port`.
    pub fn destination(&mut self, pid: u32, server: &str, port: u16, now_ms: i64) {
        let Some(ids) = self.readers.get(&pid) else {
            return;
        };
        let ids = ids.clone();
        for id in ids {
            let result = self.store.record_destination(&id, server, port, now_ms);
            self.check_store(result);
        }
    }

    /// Records a credential found outside a file (in arguments or an environment) and its use.
    pub fn exposed(
        &mut self,
        credential: &CredentialRecord,
        executable: &str,
        workload: &str,
        now_ms: i64,
    ) {
        let result = self.store.record_credential(credential, None, now_ms);
        self.check_store(result);
        let result = self
            .store
            .record_use(&credential.id, executable, workload, now_ms);
        self.check_store(result);
    }

    /// Forgets an exited process.
    pub fn process_exited(&mut self, pid: u32) {
        self.readers.remove(&pid);
    }

    fn remember_reader(&mut self, pid: u32, id: &str) {
        if self.readers.len() >= MAX_READERS && !self.readers.contains_key(&pid) {
            self.readers.clear();
        }
        let ids = self.readers.entry(pid).or_default();
        if ids.len() < MAX_IDS_PER_PROCESS && !ids.iter().any(|known| known == id) {
            ids.push(id.to_owned());
        }
    }

    /// Opens the file in the reader's root, or, when the reader has exited, in the root of
    /// its parent or of another process of its cgroup, which usually share its mount
    /// namespace (a shell and its commands, the processes of one container).
    ///
    /// NOTE: the open and the read run on the event loop, so a credential file on a network
    /// file system that hangs stalls the daemon until the read returns.
    fn open(&mut self, reader: &Reader<'_>, path: &Path) -> Result<File, ReadError> {
        let error = match reader::open_in_process_root(reader.pid, path) {
            Ok(file) => return Ok(file),
            Err(error) => error,
        };
        if !reader_gone(reader.pid) {
            return Err(error);
        }
        let siblings = reader
            .cgroup_dir
            .as_deref()
            .map(cgroup_processes)
            .unwrap_or_default();
        for pid in reader.ppid.into_iter().chain(siblings) {
            if let Ok(file) = reader::open_in_process_root(pid, path) {
                self.stats.read_through_cgroup += 1;
                return Ok(file);
            }
        }
        Err(error)
    }

    fn identify_open_file(
        &mut self,
        mut file: File,
        pid: u32,
        path: &Path,
        credential_type: &str,
        now_ms: i64,
    ) -> Arc<FileIdentity> {
        let version = match file.metadata() {
            Ok(metadata) => reader::version_of(path, &metadata),
            Err(error) => {
                self.stats.files_unreadable += 1;
                return Arc::new(FileIdentity::failed(
                    Outcome::Unreadable,
                    format!("failed to read the file's metadata: {error}"),
                ));
            }
        };
        if let Some(cached) = self.versions.get(&version) {
            self.stats.cache_hits += 1;
            return Arc::clone(cached);
        }
        let identity = match reader::read_file(&mut file, pid, path) {
            Ok((version, contents)) => {
                let identity =
                    self.identify_contents(&contents, &version, path, credential_type, now_ms);
                drop(zeroize::Zeroizing::new(contents));
                identity
            }
            Err(error) => {
                let outcome = match error {
                    ReadError::TooLarge { .. } => Outcome::TooLarge,
                    _ => Outcome::Unreadable,
                };
                self.stats.files_unreadable += u64::from(outcome == Outcome::Unreadable);
                FileIdentity::failed(outcome, crate::sensor::error_chain(&error))
            }
        };
        let identity = Arc::new(identity);
        if self.versions.len() >= MAX_VERSIONS {
            tracing::debug!(
                versions = self.versions.len(),
                "the file identity cache is full; starting it over"
            );
            self.versions.clear();
        }
        self.versions.insert(version, Arc::clone(&identity));
        identity
    }

    /// Identifies the bytes of one file version and records its credentials.
    fn identify_contents(
        &mut self,
        contents: &[u8],
        version: &FileVersion,
        path: &Path,
        credential_type: &str,
        now_ms: i64,
    ) -> FileIdentity {
        self.stats.files_identified += 1;
        let found = match identify(credential_type, contents) {
            Ok(found) => found,
            Err(error) => return identify_failure(&error, path),
        };
        let mut credentials = Vec::with_capacity(found.len());
        for item in found {
            let record = CredentialRecord {
                id: self.key.credential_id(&item.material),
                credential_type: item.credential_type,
                native_id: item.native_id,
                label: item.label,
                expires_at: item.expires_at,
                details: serde_json::to_value(&item.details).unwrap_or_default(),
            };
            let result = self.store.record_credential(&record, Some(version), now_ms);
            self.check_store(result);
            let detail = |key: &str| {
                record
                    .details
                    .get(key)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            };
            let bound_pod = detail("pod_uid").map(|uid| (uid, detail("pod_name")));
            credentials.push(CredentialSummary {
                id: record.id,
                credential_type: record.credential_type,
                native_id: record.native_id,
                label: record.label,
                expires_at: record.expires_at,
                bound_pod,
            });
        }
        FileIdentity {
            outcome: if credentials.is_empty() {
                Outcome::Empty
            } else {
                Outcome::Identified
            },
            credentials,
            problem: None,
        }
    }

    /// Counts and logs a failed database write and returns the value of a successful one.
    fn check_store<T>(&mut self, result: Result<T, crate::store::StoreError>) -> Option<T> {
        let error = match result {
            Ok(value) => return Some(value),
            Err(error) => error,
        };
        self.stats.store_failures += 1;
        // The first failure and then every hundredth are logged, so that a full disk
        // does not flood the log.
        if self.stats.store_failures % 100 == 1 {
            tracing::warn!(
                error = %error,
                source = ?std::error::Error::source(&error),
                failures = self.stats.store_failures,
                "failed to update the state database; events are still written"
            );
        }
        None
    }
}

fn identify_failure(error: &IdentifyError, path: &Path) -> FileIdentity {
    let outcome = match error {
        IdentifyError::UnknownFormat { .. } => Outcome::Unsupported,
        IdentifyError::TooLarge { .. } => Outcome::TooLarge,
        IdentifyError::NotText { .. } | IdentifyError::Invalid { .. } => Outcome::Invalid,
    };
    tracing::debug!(path = %path.display(), error = %error, "could not identify a credential file");
    FileIdentity::failed(outcome, error.to_string())
}

/// Tells whether a process can no longer lend its root directory: it exited, or it is a
/// zombie whose parent has not reaped it yet, whose `/proc` entry exists without a root.
fn reader_gone(pid: u32) -> bool {
    File::open(format!("/proc/{pid}/root")).is_err()
}

/// Returns up to [`MAX_FALLBACK_PROCESSES`] processes of a cgroup, the newest first. Kernel
/// threads, which the root cgroup lists first, are skipped: they have no executable and their
/// root is the initial one.
fn cgroup_processes(cgroup_dir: &Path) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string(cgroup_dir.join("cgroup.procs")) else {
        return Vec::new();
    };
    text.lines()
        .rev()
        .filter_map(|line| line.trim().parse().ok())
        .filter(|pid| Path::new(&format!("/proc/{pid}/exe")).read_link().is_ok())
        .take(MAX_FALLBACK_PROCESSES)
        .collect()
}

/// Adds the pod a token in the file is bound to, and whether the reader runs in another pod.
/// `reader_pod_uid` is the reader's pod, when it runs in one. Detection uses the mismatch to
/// find a token read by a foreign workload.
pub fn set_bound_pod_attributes(
    event: &mut Event,
    identity: &FileIdentity,
    reader_pod_uid: Option<&str>,
) {
    let Some((uid, name)) = identity
        .credentials
        .iter()
        .find_map(|credential| credential.bound_pod.as_ref())
    else {
        return;
    };
    event
        .set("credwatch.token.bound_pod.uid", uid.clone())
        .set_some("credwatch.token.bound_pod.name", name.clone())
        .set_some(
            "credwatch.token.pod_mismatch",
            reader_pod_uid.map(|reader| reader != uid),
        );
}

/// Adds the identities of a file to its access event.
pub fn set_identity_attributes(event: &mut Event, identity: &FileIdentity) {
    event.set("credwatch.identify.result", identity.outcome.as_str());
    event.set_some("credwatch.identify.error", identity.problem.clone());
    if identity.credentials.is_empty() {
        return;
    }
    let ids: Vec<&str> = identity
        .credentials
        .iter()
        .map(|credential| credential.id.as_str())
        .collect();
    let native_ids: Vec<&str> = identity
        .credentials
        .iter()
        .filter_map(|credential| credential.native_id.as_deref())
        .collect();
    let earliest_expiry = identity
        .credentials
        .iter()
        .filter_map(|credential| credential.expires_at)
        .min();
    let details: Vec<serde_json::Value> =
        identity.credentials.iter().map(credential_json).collect();
    event
        .set("credwatch.credential.id", ids)
        .set("credwatch.credential.count", identity.credentials.len())
        .set("credwatch.credentials", details);
    if !native_ids.is_empty() {
        event.set("credwatch.credential.native_id", native_ids);
    }
    event.set_some(
        "credwatch.credential.expires_at",
        earliest_expiry.and_then(rfc3339_seconds),
    );
}

fn credential_json(credential: &CredentialSummary) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert("id".into(), credential.id.clone().into());
    object.insert("type".into(), credential.credential_type.clone().into());
    if let Some(native_id) = &credential.native_id {
        object.insert("native_id".into(), native_id.clone().into());
    }
    if let Some(label) = &credential.label {
        object.insert("label".into(), label.clone().into());
    }
    if let Some(expiry) = credential.expires_at.and_then(rfc3339_seconds) {
        object.insert("expires_at".into(), expiry.into());
    }
    serde_json::Value::Object(object)
}

/// Formats Unix seconds as RFC 3339, or `None` when out of range.
pub fn rfc3339_seconds(seconds: i64) -> Option<String> {
    let time = if seconds >= 0 {
        std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(seconds.unsigned_abs()))
    } else {
        std::time::UNIX_EPOCH.checked_sub(std::time::Duration::from_secs(seconds.unsigned_abs()))
    }?;
    Some(crate::clock::rfc3339(time))
}
