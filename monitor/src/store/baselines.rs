//! Baselines in the state database: what each credential's consumers and destinations were
//! during its learning window.
//!
//! A baseline is stored as one JSON document per credential, the same document that
//! `credwatch baseline export` writes. An import pins the baselines it writes: the daemon
//! never changes a pinned baseline, and it loads the imported ones again when the
//! `baseline_generation` counter in `meta` changes.

use rusqlite::{OptionalExtension as _, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, failed};

/// One consumer of a credential: the workload and the executable that read it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineConsumer {
    /// `credwatch.workload.id`, or empty when it was unknown.
    #[serde(default)]
    pub workload: String,
    /// Executable path, or empty when it was unknown.
    #[serde(default)]
    pub executable: String,
}

/// One server a credential's readers connected to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineDestination {
    /// Server name (from TLS) or peer address.
    pub server: String,
    /// TCP port.
    pub port: u16,
}

/// The baseline of one credential, as stored and exported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineRecord {
    /// `credwatch.credential.id`.
    pub credential_id: String,
    /// `credwatch.credential.type`.
    pub credential_type: String,
    /// `credwatch.credential.native_id`, when the credential has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_id: Option<String>,
    /// Profile, user or host name, when the credential has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Start of learning: the first sighting, Unix milliseconds.
    pub learning_started_ms: i64,
    /// End of learning, Unix milliseconds; later consumers and destinations are new.
    pub learning_until_ms: i64,
    /// Whether a team imported (pinned) the baseline; the daemon never changes it.
    #[serde(default)]
    pub pinned: bool,
    /// Consumers seen during learning.
    #[serde(default)]
    pub consumers: Vec<BaselineConsumer>,
    /// Destinations seen during learning.
    #[serde(default)]
    pub destinations: Vec<BaselineDestination>,
    /// Every workload seen, during learning and after, for `shared_credential`.
    #[serde(default)]
    pub workloads: Vec<String>,
}

impl Store {
    /// Stores a baseline the daemon learnt. Of a baseline pinned by an import only the workloads
    /// change, because they record what was seen rather than what is allowed.
    pub fn save_baseline(
        &mut self,
        record: &BaselineRecord,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let document = serde_json::to_string(record).expect("a baseline serializes to JSON");
        self.connection
            .execute(
                "INSERT INTO baselines (credential_id, document, pinned, updated)
                 VALUES (?1, ?2, 0, ?3)
                 ON CONFLICT (credential_id) DO UPDATE
                     SET document = CASE WHEN baselines.pinned = 0 THEN excluded.document
                         ELSE json_set(baselines.document, '$.workloads',
                             json(json_extract(excluded.document, '$.workloads')))
                         END,
                         updated = excluded.updated",
                params![record.credential_id, document, now_ms],
            )
            .map(|_| ())
            .map_err(failed(&self.path, "store a baseline"))
    }

    /// Returns every baseline. A document that no longer parses is skipped and logged.
    pub fn baselines(&self) -> Result<Vec<BaselineRecord>, StoreError> {
        let path = &self.path;
        let mut statement = self
            .connection
            .prepare("SELECT credential_id, document, pinned FROM baselines ORDER BY credential_id")
            .map_err(failed(path, "list baselines"))?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, bool>(2)?,
                ))
            })
            .map_err(failed(path, "list baselines"))?;
        let mut records = Vec::new();
        for row in rows {
            let (id, document, pinned) = row.map_err(failed(path, "read a baseline"))?;
            match serde_json::from_str::<BaselineRecord>(&document) {
                Ok(mut record) => {
                    record.pinned = pinned;
                    records.push(record);
                }
                Err(error) => {
                    tracing::warn!(credential = %id, %error, path = %path.display(), "skipped a baseline that does not parse");
                }
            }
        }
        Ok(records)
    }

    /// Writes imported baselines, pinned, and counts the import so that a running daemon loads
    /// them. Returns how many were written.
    pub fn import_baselines(
        &mut self,
        records: &[BaselineRecord],
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let path = &self.path;
        let transaction = self
            .connection
            .transaction()
            .map_err(failed(path, "start a transaction"))?;
        for record in records {
            let mut record = record.clone();
            record.pinned = true;
            // The workloads seen on this node stay: an import sets what is allowed, not what
            // happened.
            let stored: Option<String> = transaction
                .query_row(
                    "SELECT document FROM baselines WHERE credential_id = ?1",
                    [&record.credential_id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(failed(path, "read a baseline"))?;
            if let Some(stored) =
                stored.and_then(|text| serde_json::from_str::<BaselineRecord>(&text).ok())
            {
                merge_workloads(&mut record.workloads, &stored.workloads);
            }
            let document = serde_json::to_string(&record).expect("a baseline serializes to JSON");
            transaction
                .execute(
                    "INSERT INTO baselines (credential_id, document, pinned, updated)
                     VALUES (?1, ?2, 1, ?3)
                     ON CONFLICT (credential_id) DO UPDATE
                         SET document = excluded.document, pinned = 1, updated = excluded.updated",
                    params![record.credential_id, document, now_ms],
                )
                .map_err(failed(path, "import a baseline"))?;
        }
        transaction
            .execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'baseline_generation'",
                [],
            )
            .map_err(failed(path, "count the import"))?;
        transaction.commit().map_err(failed(path, "commit"))?;
        Ok(records.len())
    }

    /// Returns the check value of the credential key the ids in this database were made with,
    /// once a daemon has run on it.
    pub fn key_check(&self) -> Result<Option<String>, StoreError> {
        self.connection
            .query_row(
                "SELECT value FROM meta WHERE name = 'key_check'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(failed(&self.path, "read the key check"))
    }

    /// Returns the number of imports so far; it changes when baselines were imported.
    pub fn baseline_generation(&self) -> Result<i64, StoreError> {
        self.connection
            .query_row(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'baseline_generation'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(failed(&self.path, "read the baseline generation"))
    }
}

/// Adds the workloads of `other` that `workloads` lacks, and sorts the list.
pub fn merge_workloads(workloads: &mut Vec<String>, other: &[String]) {
    for workload in other {
        if !workloads.contains(workload) {
            workloads.push(workload.clone());
        }
    }
    workloads.sort();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, executable: &str) -> BaselineRecord {
        BaselineRecord {
            credential_id: id.to_owned(),
            credential_type: "kubernetes_service_account_token".to_owned(),
            native_id: Some("system:serviceaccount:shop:cart".to_owned()),
            label: None,
            learning_started_ms: 1_000,
            learning_until_ms: 2_000,
            pinned: false,
            consumers: vec![BaselineConsumer {
                workload: "systemd://cart.service".to_owned(),
                executable: executable.to_owned(),
            }],
            destinations: vec![BaselineDestination {
                server: "api.example.test".to_owned(),
                port: 443,
            }],
            workloads: vec!["systemd://cart.service".to_owned()],
        }
    }

    #[test]
    fn saved_baseline_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .save_baseline(&record("cw1:a", "/usr/bin/cart"), 5)
            .unwrap();
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.baselines().unwrap(),
            [record("cw1:a", "/usr/bin/cart")]
        );
        assert_eq!(store.baseline_generation().unwrap(), 0);
    }

    #[test]
    fn import_pins_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .save_baseline(&record("cw1:a", "/usr/bin/cart"), 5)
            .unwrap();

        let imported = store
            .import_baselines(&[record("cw1:a", "/usr/bin/reviewed")], 6)
            .unwrap();
        // The daemon's next save of what it learnt must not undo the import.
        store
            .save_baseline(&record("cw1:a", "/usr/bin/learnt"), 7)
            .unwrap();

        assert_eq!(imported, 1);
        let baselines = store.baselines().unwrap();
        assert!(baselines[0].pinned);
        assert_eq!(baselines[0].consumers[0].executable, "/usr/bin/reviewed");
        assert_eq!(store.baseline_generation().unwrap(), 1);
    }

    #[test]
    fn pinned_baseline_keeps_new_workloads() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut seen = record("cw1:a", "/usr/bin/cart");
        seen.workloads.push("systemd://billing.service".to_owned());
        store.save_baseline(&seen, 5).unwrap();

        // The import lists one workload, and the node has seen two.
        store
            .import_baselines(&[record("cw1:a", "/usr/bin/reviewed")], 6)
            .unwrap();
        let mut later = record("cw1:a", "/usr/bin/learnt");
        later.workloads = vec![
            "systemd://billing.service".to_owned(),
            "systemd://cart.service".to_owned(),
            "systemd://report.service".to_owned(),
        ];
        store.save_baseline(&later, 7).unwrap();

        let stored = &store.baselines().unwrap()[0];
        assert_eq!(stored.consumers[0].executable, "/usr/bin/reviewed");
        assert_eq!(stored.workloads, later.workloads);
    }

    #[test]
    fn unparsable_document_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .save_baseline(&record("cw1:a", "/usr/bin/cart"), 5)
            .unwrap();
        store
            .connection
            .execute(
                "INSERT INTO baselines (credential_id, document, updated) VALUES ('cw1:b', '{', 1)",
                [],
            )
            .unwrap();

        let baselines = store.baselines().unwrap();
        assert_eq!(baselines.len(), 1);
        assert_eq!(baselines[0].credential_id, "cw1:a");
    }
}
