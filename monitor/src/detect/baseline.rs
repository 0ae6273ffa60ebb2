//! Learnt baselines: the consumers and destinations of each credential during its learning
//! window, then frozen.
//!
//! A baseline starts at a credential's first sighting and learns for the window configured for
//! its type. Later consumers and destinations are outside it and raise `new_consumer` and
//! `new_destination`. Every workload that reads the credential, during learning and after, is
//! kept for `shared_credential`. Baselines are written to the state database when they change
//! and read back at start, so a restart neither loses nor restarts learning.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{
    config::DetectionConfig,
    daemon::identity::CredentialSummary,
    store::{BaselineConsumer, BaselineDestination, BaselineRecord, Store, merge_workloads},
};

/// Most baselines kept; credentials first seen beyond it get none, and a warning is logged once.
const MAX_BASELINES: usize = 65_536;
/// Most consumers, destinations and workloads kept per baseline.
const MAX_MEMBERS: usize = 256;
/// Shortest time between two checks of the state database for imported baselines.
const IMPORT_CHECK_EVERY: Duration = Duration::from_secs(2);

/// The outcome of a read or a connection for a baseline, for the rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// The baseline was frozen, and the consumer or destination was not in it.
    pub outside: bool,
    /// The workload was new to the credential, and the distinct workloads now reach this count.
    pub new_workload_count: Option<usize>,
}

/// The baselines of every credential seen, kept in memory and written through to the store.
pub struct Baselines {
    records: HashMap<String, BaselineRecord>,
    store: Option<Store>,
    generation: i64,
    last_import_check: Option<SystemTime>,
    full_logged: bool,
    store_failing: bool,
}

impl std::fmt::Debug for Baselines {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Baselines")
            .field("records", &self.records.len())
            .field("persisted", &self.store.is_some())
            .finish()
    }
}

impl Baselines {
    /// Baselines kept in memory only, as in tests.
    pub fn in_memory() -> Self {
        Self {
            records: HashMap::new(),
            store: None,
            generation: 0,
            last_import_check: None,
            full_logged: false,
            store_failing: false,
        }
    }

    /// Baselines read from and written to `store`. A store that cannot be read is logged and
    /// learning starts over in memory.
    pub fn persisted(store: Store) -> Self {
        let mut baselines = Self::in_memory();
        baselines.generation = store.baseline_generation().unwrap_or_default();
        match store.baselines() {
            Ok(records) => {
                tracing::info!(baselines = records.len(), path = %store.path().display(), "loaded credential baselines");
                baselines.records = records
                    .into_iter()
                    .map(|record| (record.credential_id.clone(), record))
                    .collect();
            }
            Err(error) => {
                tracing::error!(error = %crate::sensor::error_chain(&error), "failed to load credential baselines; learning starts over");
            }
        }
        baselines.store = Some(store);
        baselines
    }

    /// Returns the number of baselines.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Returns whether there is no baseline yet.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Returns the baseline of a credential, if it has one.
    pub fn get(&self, credential_id: &str) -> Option<&BaselineRecord> {
        self.records.get(credential_id)
    }

    /// Records a read of `credential` by `consumer` and reports whether the consumer is outside
    /// the frozen baseline and whether its workload is new.
    pub fn consumer(
        &mut self,
        settings: &DetectionConfig,
        credential: &CredentialSummary,
        file_type: Option<&str>,
        consumer: BaselineConsumer,
        now: SystemTime,
    ) -> Observation {
        let Some(record) = self.record_for(settings, credential, file_type, now) else {
            return Observation::default();
        };
        let mut changed = false;
        let mut observation = Observation::default();
        if !consumer.workload.is_empty()
            && shares_identity(&consumer.workload)
            && !record.workloads.contains(&consumer.workload)
            && record.workloads.len() < MAX_MEMBERS
        {
            record.workloads.push(consumer.workload.clone());
            record.workloads.sort();
            observation.new_workload_count = Some(record.workloads.len());
            changed = true;
        }
        if !record.consumers.contains(&consumer) {
            if is_learning(record, now) {
                if record.consumers.len() < MAX_MEMBERS {
                    record.consumers.push(consumer);
                    record.consumers.sort();
                    changed = true;
                }
            } else {
                observation.outside = true;
            }
        }
        if changed {
            let record = record.clone();
            self.save(&record, now);
        }
        observation
    }

    /// Records a connection to `destination` by a process that read the credential `id`, and
    /// returns whether it is outside the frozen baseline. A credential without a baseline
    /// returns false.
    pub fn destination(
        &mut self,
        credential_id: &str,
        destination: BaselineDestination,
        now: SystemTime,
    ) -> bool {
        let Some(record) = self.records.get_mut(credential_id) else {
            return false;
        };
        if record.destinations.contains(&destination) {
            return false;
        }
        if !is_learning(record, now) {
            return true;
        }
        if record.destinations.len() < MAX_MEMBERS {
            record.destinations.push(destination);
            record.destinations.sort();
            let record = record.clone();
            self.save(&record, now);
        }
        false
    }

    /// Loads the baselines again when `credwatch baseline import` changed them. The state
    /// database is checked at most once per [`IMPORT_CHECK_EVERY`].
    pub fn refresh(&mut self, now: SystemTime) {
        let due = self.last_import_check.is_none_or(|last| {
            now.duration_since(last)
                .map_or(true, |age| age >= IMPORT_CHECK_EVERY)
        });
        let Some(store) = self.store.as_ref().filter(|_| due) else {
            return;
        };
        self.last_import_check = Some(now);
        let generation = match store.baseline_generation() {
            Ok(generation) => generation,
            Err(error) => {
                tracing::debug!(%error, "failed to check for imported baselines");
                return;
            }
        };
        if generation == self.generation {
            return;
        }
        match store.baselines() {
            Ok(records) => {
                let pinned = records.iter().filter(|record| record.pinned).count();
                for mut record in records {
                    if let Some(known) = self.records.get(&record.credential_id) {
                        merge_workloads(&mut record.workloads, &known.workloads);
                    }
                    self.records.insert(record.credential_id.clone(), record);
                }
                self.generation = generation;
                tracing::info!(pinned, "loaded imported baselines");
            }
            Err(error) => {
                tracing::warn!(error = %crate::sensor::error_chain(&error), "failed to load imported baselines; will try again");
            }
        }
    }

    /// Returns the credential's baseline, creating it at the first sighting. None when the
    /// table is full.
    fn record_for(
        &mut self,
        settings: &DetectionConfig,
        credential: &CredentialSummary,
        file_type: Option<&str>,
        now: SystemTime,
    ) -> Option<&mut BaselineRecord> {
        if !self.records.contains_key(&credential.id) {
            if self.records.len() >= MAX_BASELINES {
                if !self.full_logged {
                    self.full_logged = true;
                    tracing::warn!(
                        limit = MAX_BASELINES,
                        "the baseline table is full; credentials seen from now on get no baseline"
                    );
                }
                return None;
            }
            let record = new_record(settings, credential, file_type, now);
            self.save(&record, now);
            self.records.insert(credential.id.clone(), record);
        }
        self.records.get_mut(&credential.id)
    }

    fn save(&mut self, record: &BaselineRecord, now: SystemTime) {
        let Some(store) = &mut self.store else {
            return;
        };
        match store.save_baseline(record, unix_ms(now)) {
            Ok(()) if self.store_failing => {
                self.store_failing = false;
                tracing::info!("storing baselines works again");
            }
            Ok(()) => {}
            Err(error) if !self.store_failing => {
                self.store_failing = true;
                tracing::error!(error = %crate::sensor::error_chain(&error), "failed to store a baseline; it is kept in memory");
            }
            Err(_) => {}
        }
    }
}

/// Returns the learning window of a credential type, or of the catalogue type of the file it
/// was found in (`aws_access_key` or `aws_credentials`), or the default.
pub fn learning_window(
    settings: &DetectionConfig,
    credential_type: &str,
    file_type: Option<&str>,
) -> Duration {
    let windows = &settings.learning_windows;
    windows
        .get(credential_type)
        .or_else(|| file_type.and_then(|file_type| windows.get(file_type)))
        .copied()
        .unwrap_or(settings.learning_window)
}

/// Returns whether the baseline still learns at `now`.
pub fn is_learning(record: &BaselineRecord, now: SystemTime) -> bool {
    !record.pinned && unix_ms(now) < record.learning_until_ms
}

/// Returns whether a workload id names a workload that can share a credential: a pod's service
/// account or a systemd unit. An `exe://` id names only a program on the host, and two programs
/// of one host reading a file are not two workloads. A `container://` id changes each time the
/// container is recreated, so one container would count as many workloads.
fn shares_identity(workload: &str) -> bool {
    !workload.starts_with("exe://") && !workload.starts_with("container://")
}

fn new_record(
    settings: &DetectionConfig,
    credential: &CredentialSummary,
    file_type: Option<&str>,
    now: SystemTime,
) -> BaselineRecord {
    let started = unix_ms(now);
    let window = learning_window(settings, &credential.credential_type, file_type);
    BaselineRecord {
        credential_id: credential.id.clone(),
        credential_type: credential.credential_type.clone(),
        native_id: credential.native_id.clone(),
        label: credential.label.clone(),
        learning_started_ms: started,
        learning_until_ms: started.saturating_add(window.as_millis().min(i64::MAX as u128) as i64),
        pinned: false,
        consumers: Vec::new(),
        destinations: Vec::new(),
        workloads: Vec::new(),
    }
}

/// Returns `time` in Unix milliseconds; 0 before 1970.
pub fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis().min(i64::MAX as u128) as i64)
}

/// Returns Unix milliseconds as a time; the epoch for negative values.
pub fn from_unix_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
