//! The state database's schema and its migrations.
//!
//! Each migration is applied once, in order, inside a transaction, and `PRAGMA user_version`
//! records how many have run. A database written by a newer credwatch (a higher version than
//! this build supports) is rejected instead of being changed.

/// Migrations in order; the database's `user_version` is the number applied.
pub const MIGRATIONS: &[&str] = &[
    // 1: credentials, the file versions they were read from, their consumers and destinations.
    "
    CREATE TABLE credentials (
        id          TEXT PRIMARY KEY,
        type        TEXT NOT NULL,
        native_id   TEXT,
        label       TEXT,
        expires_at  INTEGER,
        details     TEXT NOT NULL DEFAULT '{}',
        first_seen  INTEGER NOT NULL,
        last_seen   INTEGER NOT NULL,
        last_used   INTEGER,
        use_count   INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE credential_files (
        credential_id TEXT NOT NULL REFERENCES credentials(id),
        path          TEXT NOT NULL,
        device        INTEGER NOT NULL,
        inode         INTEGER NOT NULL,
        size          INTEGER NOT NULL,
        modified_ns   INTEGER NOT NULL,
        changed_ns    INTEGER NOT NULL,
        first_seen    INTEGER NOT NULL,
        last_seen     INTEGER NOT NULL,
        PRIMARY KEY (credential_id, path, device, inode, size, modified_ns, changed_ns)
    );
    CREATE TABLE consumers (
        credential_id TEXT NOT NULL REFERENCES credentials(id),
        executable    TEXT NOT NULL,
        workload      TEXT NOT NULL DEFAULT '',
        first_seen    INTEGER NOT NULL,
        last_seen     INTEGER NOT NULL,
        use_count     INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (credential_id, executable, workload)
    );
    CREATE TABLE destinations (
        credential_id TEXT NOT NULL REFERENCES credentials(id),
        server        TEXT NOT NULL,
        port          INTEGER NOT NULL,
        first_seen    INTEGER NOT NULL,
        last_seen     INTEGER NOT NULL,
        use_count     INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (credential_id, server, port)
    );
    ",
    // 2: settings of the database itself, such as the check value of the credential key.
    "
    CREATE TABLE meta (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    ",
    // 3: learnt baselines, one JSON document per credential, and whether a team pinned it.
    "
    CREATE TABLE baselines (
        credential_id TEXT PRIMARY KEY,
        document      TEXT NOT NULL,
        pinned        INTEGER NOT NULL DEFAULT 0,
        updated       INTEGER NOT NULL
    );
    INSERT INTO meta (name, value) VALUES ('baseline_generation', '0');
    ",
];
