//! The durable state: an SQLite database in the state directory that keeps the credential
//! inventory across restarts.
//!
//! The database contains identities and metadata only: credential ids (keyed fingerprints),
//! types, native ids, expiries, the files they were read from, consumers and destinations.
//! No secret is ever written. It runs in WAL mode with `synchronous=NORMAL`, so a crash or
//! `kill -9` loses at most the last transactions, never the database. Files are created with
//! mode 0600 inside a directory with mode 0700.

mod baselines;
pub mod schema;

pub use baselines::{BaselineConsumer, BaselineDestination, BaselineRecord, merge_workloads};

use std::{
    fs,
    os::unix::fs::{DirBuilderExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;
use thiserror::Error;

/// File name of the database inside the state directory.
pub const DATABASE_FILE: &str = "state.db";

/// The state database could not be used.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The state directory could not be created or secured.
    #[error(
        "failed to prepare the state directory {path}; pass a writable directory with --state-dir"
    )]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An SQLite operation failed.
    #[error("state database {path}: failed to {action}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The action that failed.
        action: &'static str,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer credwatch.
    #[error(
        "state database {path} has schema version {found}, newer than the {supported} this credwatch knows; upgrade credwatch or move the file away"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The newest version this build supports.
        supported: usize,
    },
}

/// A credential as identified from a file, without its secret.
#[derive(Clone, Debug, PartialEq)]
pub struct CredentialRecord {
    /// Keyed fingerprint, `credwatch.credential.id`.
    pub id: String,
    /// Specific type, `credwatch.credential.type`.
    pub credential_type: String,
    /// The issuer's own id, when it has one.
    pub native_id: Option<String>,
    /// Profile, user or host name inside the file.
    pub label: Option<String>,
    /// Expiry, Unix seconds.
    pub expires_at: Option<i64>,
    /// Non-secret metadata as JSON.
    pub details: serde_json::Value,
}

/// The file version a credential was read from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileVersion {
    /// Path as the process saw it.
    pub path: String,
    /// Device number.
    pub device: u64,
    /// Inode number.
    pub inode: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub modified_ns: i64,
    /// Status change time, nanoseconds since the epoch.
    pub changed_ns: i64,
}

/// One credential in the inventory, as `credwatch inventory` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InventoryEntry {
    /// Keyed fingerprint.
    pub id: String,
    /// Specific type.
    #[serde(rename = "type")]
    pub credential_type: String,
    /// Native id.
    pub native_id: Option<String>,
    /// Profile, user or host name.
    pub label: Option<String>,
    /// Expiry, Unix seconds.
    pub expires_at: Option<i64>,
    /// Non-secret metadata.
    pub details: serde_json::Value,
    /// First time the daemon saw it, Unix milliseconds.
    pub first_seen: i64,
    /// Last time it was read, Unix milliseconds.
    pub last_used: Option<i64>,
    /// Number of reads.
    pub use_count: i64,
    /// Files it was found in.
    pub paths: Vec<String>,
    /// Executables (and workloads) that read it.
    pub consumers: Vec<Consumer>,
    /// Servers the reading processes connected to afterwards.
    pub destinations: Vec<Destination>,
}

/// A process that used a credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Consumer {
    /// Executable path.
    pub executable: String,
    /// Workload id, empty until workload identity is known.
    pub workload: String,
    /// Number of uses.
    pub use_count: i64,
    /// Last use, Unix milliseconds.
    pub last_seen: i64,
}

/// A server a credential's consumer talked to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Destination {
    /// Server name (SNI) or peer address.
    pub server: String,
    /// Port.
    pub port: u16,
    /// Number of connections.
    pub use_count: i64,
    /// Last one, Unix milliseconds.
    pub last_seen: i64,
}

/// The open state database.
pub struct Store {
    connection: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating when missing) the database in `state_dir` and applies migrations.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        prepare_directory(state_dir)?;
        let path = state_dir.join(DATABASE_FILE);
        let connection = Connection::open(&path).map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            action: "open",
            source,
        })?;
        let mut store = Self { connection, path };
        store.secure_files();
        store.configure()?;
        store.migrate()?;
        store.secure_files();
        Ok(store)
    }

    /// Opens an existing database for reading, as `credwatch inventory` does.
    pub fn open_read_only(state_dir: &Path) -> Result<Self, StoreError> {
        let path = state_dir.join(DATABASE_FILE);
        let connection = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            action: "open",
            source,
        })?;
        let store = Self { connection, path };
        store.check_version()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inserts or refreshes a credential and the file version it was read from, if it came
    /// from a file.
    pub fn record_credential(
        &mut self,
        credential: &CredentialRecord,
        file: Option<&FileVersion>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let path = &self.path;
        let transaction = self
            .connection
            .transaction()
            .map_err(failed(path, "start a transaction"))?;
        // A file is the better source: it names the profile or user and has the full details.
        // A credential seen only in an environment or arguments does not overwrite them.
        let update = if file.is_some() {
            "type = excluded.type, native_id = excluded.native_id, label = excluded.label,
             expires_at = excluded.expires_at, details = excluded.details,"
        } else {
            "native_id = COALESCE(native_id, excluded.native_id),
             expires_at = COALESCE(expires_at, excluded.expires_at),"
        };
        transaction
            .execute(
                &format!("INSERT INTO credentials (id, type, native_id, label, expires_at, details, first_seen, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT (id) DO UPDATE SET {update}
                     last_seen = MAX(last_seen, excluded.last_seen)"),
                params![
                    credential.id,
                    credential.credential_type,
                    credential.native_id,
                    credential.label,
                    credential.expires_at,
                    credential.details.to_string(),
                    now_ms
                ],
            )
            .map_err(failed(path, "store a credential"))?;
        let Some(file) = file else {
            return transaction.commit().map_err(failed(path, "commit"));
        };
        transaction
            .execute(
                "INSERT INTO credential_files
                     (credential_id, path, device, inode, size, modified_ns, changed_ns, first_seen, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
                 ON CONFLICT DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)",
                params![
                    credential.id,
                    file.path,
                    file.device as i64,
                    file.inode as i64,
                    file.size as i64,
                    file.modified_ns,
                    file.changed_ns,
                    now_ms
                ],
            )
            .map_err(failed(path, "store a credential file"))?;
        transaction.commit().map_err(failed(path, "commit"))
    }

    /// Stores the check value of the credential key and returns the previous one, when it
    /// differs. A different value means that the key changed, so that new ids no longer match
    /// the ones already in the inventory.
    pub fn replace_key_check(&mut self, check: &str) -> Result<Option<String>, StoreError> {
        let path = &self.path;
        let previous: Option<String> = self
            .connection
            .query_row(
                "SELECT value FROM meta WHERE name = 'key_check'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(failed(path, "read the key check"))?;
        if previous.as_deref() == Some(check) {
            return Ok(None);
        }
        self.connection
            .execute(
                "INSERT INTO meta (name, value) VALUES ('key_check', ?1)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![check],
            )
            .map_err(failed(path, "store the key check"))?;
        Ok(previous)
    }

    /// Counts one use of a credential by an executable (and workload, when known), and returns
    /// the credential's previous use or, when it was never used, its first sighting, in Unix
    /// milliseconds.
    pub fn record_use(
        &mut self,
        credential_id: &str,
        executable: &str,
        workload: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let path = &self.path;
        let transaction = self
            .connection
            .transaction()
            .map_err(failed(path, "start a transaction"))?;
        let previous: Option<i64> = transaction
            .query_row(
                "SELECT COALESCE(last_used, first_seen) FROM credentials WHERE id = ?1",
                [credential_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(failed(path, "read the last use"))?
            .flatten();
        transaction
            .execute(
                "UPDATE credentials SET use_count = use_count + 1,
                     last_used = MAX(COALESCE(last_used, ?2), ?2) WHERE id = ?1",
                params![credential_id, now_ms],
            )
            .map_err(failed(path, "count a use"))?;
        transaction
            .execute(
                "INSERT INTO consumers (credential_id, executable, workload, first_seen, last_seen, use_count)
                 VALUES (?1, ?2, ?3, ?4, ?4, 1)
                 ON CONFLICT DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen),
                     use_count = use_count + 1",
                params![credential_id, executable, workload, now_ms],
            )
            .map_err(failed(path, "store a consumer"))?;
        transaction.commit().map_err(failed(path, "commit"))?;
        Ok(previous)
    }

    /// Counts a connection to `server:port` by a process that had read the credential.
    pub fn record_destination(
        &mut self,
        credential_id: &str,
        server: &str,
        port: u16,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.connection
            .execute(
                "INSERT INTO destinations (credential_id, server, port, first_seen, last_seen, use_count)
                 VALUES (?1, ?2, ?3, ?4, ?4, 1)
                 ON CONFLICT DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen),
                     use_count = use_count + 1",
                params![credential_id, server, i64::from(port), now_ms],
            )
            .map(|_| ())
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                action: "store a destination",
                source,
            })
    }

    /// Lists every credential with its files, consumers and destinations, most recently used
    /// first.
    pub fn inventory(&self) -> Result<Vec<InventoryEntry>, StoreError> {
        let path = &self.path;
        let mut statement = self
            .connection
            .prepare(
                "SELECT id, type, native_id, label, expires_at, details, first_seen, last_used, use_count
                 FROM credentials ORDER BY last_used DESC NULLS LAST, first_seen DESC",
            )
            .map_err(failed(path, "read credentials"))?;
        let rows = statement
            .query_map([], |row| {
                let details: String = row.get(5)?;
                Ok(InventoryEntry {
                    id: row.get(0)?,
                    credential_type: row.get(1)?,
                    native_id: row.get(2)?,
                    label: row.get(3)?,
                    expires_at: row.get(4)?,
                    details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
                    first_seen: row.get(6)?,
                    last_used: row.get(7)?,
                    use_count: row.get(8)?,
                    paths: Vec::new(),
                    consumers: Vec::new(),
                    destinations: Vec::new(),
                })
            })
            .map_err(failed(path, "read credentials"))?;
        let mut entries = Vec::new();
        for row in rows {
            let mut entry = row.map_err(failed(path, "read a credential"))?;
            self.fill_relations(&mut entry)?;
            entries.push(entry);
        }
        Ok(entries)
    }

    fn fill_relations(&self, entry: &mut InventoryEntry) -> Result<(), StoreError> {
        let path = &self.path;
        let mut paths = self
            .connection
            .prepare(
                "SELECT DISTINCT path FROM credential_files WHERE credential_id = ?1 ORDER BY path",
            )
            .map_err(failed(path, "read credential files"))?;
        entry.paths = paths
            .query_map([&entry.id], |row| row.get(0))
            .and_then(Iterator::collect)
            .map_err(failed(path, "read credential files"))?;

        let mut consumers = self
            .connection
            .prepare(
                "SELECT executable, workload, use_count, last_seen FROM consumers
                 WHERE credential_id = ?1 ORDER BY last_seen DESC",
            )
            .map_err(failed(path, "read consumers"))?;
        entry.consumers = consumers
            .query_map([&entry.id], |row| {
                Ok(Consumer {
                    executable: row.get(0)?,
                    workload: row.get(1)?,
                    use_count: row.get(2)?,
                    last_seen: row.get(3)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(failed(path, "read consumers"))?;

        let mut destinations = self
            .connection
            .prepare(
                "SELECT server, port, use_count, last_seen FROM destinations
                 WHERE credential_id = ?1 ORDER BY last_seen DESC",
            )
            .map_err(failed(path, "read destinations"))?;
        entry.destinations = destinations
            .query_map([&entry.id], |row| {
                Ok(Destination {
                    server: row.get(0)?,
                    port: u16::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                    use_count: row.get(2)?,
                    last_seen: row.get(3)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(failed(path, "read destinations"))?;
        Ok(())
    }

    /// Sets WAL mode and the pragmas the daemon relies on.
    fn configure(&self) -> Result<(), StoreError> {
        self.connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA busy_timeout = 5000;",
            )
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                action: "configure",
                source,
            })
    }

    fn check_version(&self) -> Result<i64, StoreError> {
        let version: i64 = self
            .connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                action: "read the schema version",
                source,
            })?;
        if version > schema::MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                supported: schema::MIGRATIONS.len(),
            });
        }
        Ok(version)
    }

    /// Applies the migrations the database has not seen, each in its own transaction.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let applied = self.check_version()? as usize;
        for (index, migration) in schema::MIGRATIONS.iter().enumerate().skip(applied) {
            let path = &self.path;
            let transaction = self
                .connection
                .transaction()
                .map_err(failed(path, "start a migration"))?;
            transaction
                .execute_batch(migration)
                .map_err(failed(path, "apply a migration"))?;
            transaction
                .pragma_update(None, "user_version", (index + 1) as i64)
                .map_err(failed(path, "record the schema version"))?;
            transaction
                .commit()
                .map_err(failed(path, "commit a migration"))?;
            tracing::info!(version = index + 1, path = %self.path.display(), "migrated the state database");
        }
        Ok(())
    }

    /// Restricts the database and its WAL files to the owner. A failure is logged: the
    /// database contains no secret, but its metadata is still sensitive.
    fn secure_files(&self) {
        let mut names = vec![self.path.clone()];
        for suffix in ["-wal", "-shm"] {
            let mut name = self.path.clone().into_os_string();
            name.push(suffix);
            names.push(PathBuf::from(name));
        }
        for name in names {
            if !name.exists() {
                continue;
            }
            if let Err(error) = fs::set_permissions(&name, fs::Permissions::from_mode(0o600)) {
                tracing::warn!(path = %name.display(), %error, "failed to restrict the state file to its owner");
            }
        }
    }

    /// Returns the number of credentials in the inventory.
    pub fn credential_count(&self) -> Result<u64, StoreError> {
        self.connection
            .query_row("SELECT COUNT(*) FROM credentials", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|count| u64::try_from(count).unwrap_or_default())
            .map_err(failed(&self.path, "count credentials"))
    }

    /// Returns whether the credential is in the inventory.
    pub fn contains(&self, credential_id: &str) -> Result<bool, StoreError> {
        self.connection
            .query_row(
                "SELECT 1 FROM credentials WHERE id = ?1",
                [credential_id],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                action: "look up a credential",
                source,
            })
    }
}

/// Returns a function that wraps an SQLite error with the database path and the action.
fn failed(path: &Path, action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Sqlite {
        path,
        action,
        source,
    }
}

/// Creates the state directory with mode 0700, or tightens an existing one.
fn prepare_directory(path: &Path) -> Result<(), StoreError> {
    let to_error = |source| StoreError::Directory {
        path: path.to_path_buf(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(to_error)?;
    let metadata = fs::metadata(path).map_err(to_error)?;
    if metadata.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(to_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
