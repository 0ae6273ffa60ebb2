use std::os::unix::fs::PermissionsExt as _;

use super::*;

fn credential(id: &str) -> CredentialRecord {
    CredentialRecord {
        id: id.to_owned(),
        credential_type: "aws_access_key".to_owned(),
        native_id: Some("AKIAMADEUPEXAMPLE001".to_owned()),
        label: Some("default".to_owned()),
        expires_at: None,
        details: serde_json::json!({"long_term": true}),
    }
}

fn file(path: &str, modified_ns: i64) -> FileVersion {
    FileVersion {
        path: path.to_owned(),
        device: 2049,
        inode: 77,
        size: 116,
        modified_ns,
        changed_ns: modified_ns,
    }
}

#[test]
fn open_creates_private_files() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = Store::open(&state).unwrap();
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(store.path()), 0o600);
}

#[test]
fn inventory_lists_uses_consumers_and_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store
        .record_credential(
            &credential("cw1:aa"),
            Some(&file("/root/.aws/credentials", 1)),
            1_000,
        )
        .unwrap();
    store
        .record_use("cw1:aa", "/usr/bin/aws", "", 2_000)
        .unwrap();
    store
        .record_use("cw1:aa", "/usr/bin/aws", "", 3_000)
        .unwrap();
    store
        .record_use("cw1:aa", "/usr/bin/cat", "", 2_500)
        .unwrap();
    store
        .record_destination("cw1:aa", "sts.example.test", 443, 3_100)
        .unwrap();

    let inventory = store.inventory().unwrap();
    assert_eq!(inventory.len(), 1);
    let entry = &inventory[0];
    assert_eq!(entry.native_id.as_deref(), Some("AKIAMADEUPEXAMPLE001"));
    assert_eq!(entry.use_count, 3);
    assert_eq!(entry.last_used, Some(3_000));
    assert_eq!(entry.first_seen, 1_000);
    assert_eq!(entry.paths, vec!["/root/.aws/credentials".to_owned()]);
    assert_eq!(entry.consumers.len(), 2);
    assert_eq!(entry.consumers[0].executable, "/usr/bin/aws");
    assert_eq!(entry.consumers[0].use_count, 2);
    assert_eq!(entry.destinations[0].server, "sts.example.test");
    assert_eq!(entry.destinations[0].port, 443);
}

#[test]
fn inventory_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(dir.path()).unwrap();
        store
            .record_credential(&credential("cw1:bb"), Some(&file("/a", 1)), 10)
            .unwrap();
        store
            .record_credential(&credential("cw1:bb"), Some(&file("/a", 2)), 20)
            .unwrap();
        store.record_use("cw1:bb", "/usr/bin/cat", "", 30).unwrap();
    }
    let reopened = Store::open(dir.path()).unwrap();
    let inventory = reopened.inventory().unwrap();
    assert_eq!(inventory.len(), 1);
    assert_eq!(inventory[0].use_count, 1);
    assert!(reopened.contains("cw1:bb").unwrap());
    assert!(!reopened.contains("cw1:cc").unwrap());

    let read_only = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(read_only.inventory().unwrap().len(), 1);
}

#[test]
fn newer_schema_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let connection = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    connection.pragma_update(None, "user_version", 99).unwrap();
    drop(connection);
    let error = Store::open(dir.path()).err().unwrap().to_string();
    assert!(error.contains("schema version 99"), "{error}");
    assert!(error.contains("upgrade credwatch"), "{error}");
}

#[test]
fn missing_database_for_reading_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = Store::open_read_only(dir.path()).err().unwrap().to_string();
    assert!(error.contains(DATABASE_FILE), "{error}");
}

#[test]
fn unwritable_state_directory_names_the_path() {
    let error = Store::open(Path::new("/proc/credwatch-state"))
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("/proc/credwatch-state"), "{error}");
    assert!(error.contains("--state-dir"), "{error}");
}

#[test]
fn exposure_keeps_file_label_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let mut from_file = credential("cw1:cc");
    from_file.label = Some("default".into());
    store
        .record_credential(&from_file, Some(&file("/root/.aws/credentials", 1)), 10)
        .unwrap();
    let mut from_environment = credential("cw1:cc");
    from_environment.credential_type = "environment_secret".into();
    from_environment.label = None;

    store
        .record_credential(&from_environment, None, 20)
        .unwrap();

    let inventory = store.inventory().unwrap();
    assert_eq!(inventory[0].credential_type, from_file.credential_type);
    assert_eq!(inventory[0].label.as_deref(), Some("default"));
    assert_eq!(inventory[0].paths, ["/root/.aws/credentials"]);
}

#[test]
fn key_check_reports_a_changed_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();

    assert_eq!(store.replace_key_check("cw1:11").unwrap(), None);
    assert_eq!(store.replace_key_check("cw1:11").unwrap(), None);
    assert_eq!(
        store.replace_key_check("cw1:22").unwrap().as_deref(),
        Some("cw1:11")
    );
    drop(store);
    let mut reopened = Store::open(dir.path()).unwrap();
    assert_eq!(reopened.replace_key_check("cw1:22").unwrap(), None);
}

#[test]
fn record_use_returns_previous_use() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store
        .record_credential(&credential("cw1:aa"), None, 1_000)
        .unwrap();

    let first = store
        .record_use("cw1:aa", "/usr/bin/aws", "", 2_000)
        .unwrap();
    drop(store);
    // The last use survives a restart, so dormancy is measured across it.
    let mut store = Store::open(dir.path()).unwrap();
    let second = store
        .record_use("cw1:aa", "/usr/bin/aws", "", 9_000)
        .unwrap();

    assert_eq!(first, Some(1_000), "never used: the first sighting");
    assert_eq!(second, Some(2_000));
}

#[test]
fn credentials_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(store.credential_count().unwrap(), 0);
    store
        .record_credential(&credential("cw1:aa"), None, 1_000)
        .unwrap();
    store
        .record_credential(&credential("cw1:bb"), None, 1_000)
        .unwrap();
    assert_eq!(store.credential_count().unwrap(), 2);
}
