//! `credwatch baseline export|import`: the learnt baselines as a JSON document that a team can
//! review, edit and pin.
//!
//! An export lists every baseline in the state database. An import writes the baselines of a
//! document and pins them: the daemon never changes a pinned baseline, treats it as frozen
//! whatever its learning window, and loads it within seconds without a restart.

use std::{
    io::{Read as _, Write as _},
    path::Path,
    process::ExitCode,
};

use serde::{Deserialize, Serialize};

use super::{EXIT_FAILURE, EXIT_USAGE, report};
use crate::{
    detect::unix_ms,
    store::{BaselineRecord, DATABASE_FILE, Store},
};

/// The value of `format` in a baseline document.
const FORMAT: &str = "credwatch-baselines";
/// The document version this build writes and reads.
const VERSION: u32 = 1;
/// Largest document read by an import.
const MAX_DOCUMENT_BYTES: u64 = 64 * 1024 * 1024;

/// The exported document.
#[derive(Debug, Serialize)]
struct Document {
    format: String,
    version: u32,
    /// Check value of the credential key the ids were made with: ids match on another host only
    /// when both use the same fleet key.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_check: Option<String>,
    baselines: Vec<BaselineRecord>,
}

/// Writes every baseline of `state_dir` as JSON to `output` (`-` for standard output).
pub fn export(state_dir: &Path, output: &Path) -> ExitCode {
    let database = state_dir.join(DATABASE_FILE);
    if !database.exists() {
        eprintln!(
            "credwatch: error: no state database at {}; pass the --state-dir the daemon uses",
            database.display()
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    let read = Store::open_read_only(state_dir)
        .and_then(|store| Ok((store.baselines()?, store.key_check()?)));
    let (baselines, key_check) = match read {
        Ok(read) => read,
        Err(error) => return report(&error, EXIT_FAILURE),
    };
    let document = Document {
        format: FORMAT.to_owned(),
        version: VERSION,
        key_check,
        baselines,
    };
    let mut text = serde_json::to_string_pretty(&document).expect("a baseline serializes to JSON");
    text.push('\n');
    let written = if output == Path::new("-") {
        std::io::stdout().lock().write_all(text.as_bytes())
    } else {
        std::fs::write(output, text.as_bytes())
    };
    if let Err(error) = written {
        eprintln!(
            "credwatch: error: failed to write {}: {error}",
            output.display()
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    if output != Path::new("-") {
        eprintln!(
            "credwatch: exported {} baselines to {}",
            document.baselines.len(),
            output.display()
        );
    }
    ExitCode::SUCCESS
}

/// Reads a baseline document from `input` (`-` for standard input), checks it and writes its
/// baselines, pinned, to the state database of `state_dir`. Without `create`, the database
/// must exist, so that a mistyped directory is not taken for a new one.
pub fn import(state_dir: &Path, input: &Path, create: bool) -> ExitCode {
    let database = state_dir.join(DATABASE_FILE);
    if !create && !database.exists() {
        eprintln!(
            "credwatch: error: no state database at {}; pass the --state-dir the daemon uses, or \
             add --create to prepare the state of a daemon that has not run yet",
            database.display()
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    let text = match read_input(input) {
        Ok(text) => text,
        Err(message) => {
            eprintln!("credwatch: error: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let (records, key_check) = match parse(&text, input) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("credwatch: error: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut store = match Store::open(state_dir) {
        Ok(store) => store,
        Err(error) => return report(&error, EXIT_FAILURE),
    };
    match (key_check, store.key_check()) {
        (Some(exported), Ok(Some(local))) if exported != local => {
            eprintln!(
                "credwatch: error: {} was exported under another credential key than {} uses, \
                 so its credential ids match nothing here; give both hosts the same \
                 credentials.fleet_key_file and let the daemon run once, then import again",
                input.display(),
                database.display()
            );
            return ExitCode::from(EXIT_USAGE);
        }
        (Some(_), Ok(None)) => eprintln!(
            "credwatch: note: {} has no credential key yet; the baselines apply only if the \
             daemon uses the same credentials.fleet_key_file as the exporting host",
            database.display()
        ),
        (_, Err(error)) => return report(&error, EXIT_FAILURE),
        _ => {}
    }
    let imported = store.import_baselines(&records, now_ms());
    match imported {
        Ok(count) => {
            let noun = if count == 1 { "baseline" } else { "baselines" };
            eprintln!(
                "credwatch: imported and pinned {count} {noun} into {}; a running daemon \
                 applies the import within a few seconds",
                database.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => report(&error, EXIT_FAILURE),
    }
}

fn now_ms() -> i64 {
    unix_ms(std::time::SystemTime::now())
}

fn read_input(input: &Path) -> Result<String, String> {
    let mut text = String::new();
    let result = if input == Path::new("-") {
        std::io::stdin()
            .take(MAX_DOCUMENT_BYTES + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(input)
            .and_then(|file| file.take(MAX_DOCUMENT_BYTES + 1).read_to_string(&mut text))
    };
    result.map_err(|error| format!("failed to read {}: {error}", input.display()))?;
    if text.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "{} is larger than {} MiB; split it into several imports",
            input.display(),
            MAX_DOCUMENT_BYTES / (1024 * 1024)
        ));
    }
    Ok(text)
}

/// The document as read, with its baselines still unchecked, so that an error can name the
/// entry it is in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    format: String,
    version: u32,
    #[serde(default)]
    key_check: Option<String>,
    baselines: Vec<serde_json::Value>,
}

/// Parses and checks a document, and returns its baselines and the key check it was exported
/// with.
fn parse(text: &str, input: &Path) -> Result<(Vec<BaselineRecord>, Option<String>), String> {
    let document: RawDocument = serde_json::from_str(text).map_err(|error| {
        format!(
            "{} is not a baseline document: {error}; start from the output of `credwatch \
             baseline export`",
            input.display()
        )
    })?;
    if document.format != FORMAT || document.version != VERSION {
        return Err(format!(
            "{} has format {:?} version {}; this credwatch reads format {FORMAT:?} version \
             {VERSION}",
            input.display(),
            document.format,
            document.version
        ));
    }
    let mut records = Vec::with_capacity(document.baselines.len());
    let mut seen = std::collections::HashSet::new();
    for (index, value) in document.baselines.into_iter().enumerate() {
        let name = format!("{} baselines[{index}]", input.display());
        let record: BaselineRecord = serde_json::from_value(value)
            .map_err(|error| format!("{name}: {error}; compare it with an export"))?;
        check_record(&record, &name)?;
        if !seen.insert(record.credential_id.clone()) {
            return Err(format!(
                "{name}: credential {} appears twice; keep one entry per credential",
                record.credential_id
            ));
        }
        records.push(record);
    }
    Ok((records, document.key_check))
}

/// Workload id schemes (see docs/events.md).
const WORKLOAD_SCHEMES: &[&str] = &["spiffe://", "container://", "systemd://", "exe://"];

/// Checks the values of one baseline; `name` locates it in errors.
fn check_record(record: &BaselineRecord, name: &str) -> Result<(), String> {
    let id_valid = record
        .credential_id
        .strip_prefix("cw1:")
        .is_some_and(|hex| !hex.is_empty() && hex.bytes().all(|byte| byte.is_ascii_hexdigit()));
    if !id_valid {
        return Err(format!(
            "{name}: credential_id {:?} is not a credwatch id (cw1: and hex digits); copy it from \
             an export",
            record.credential_id
        ));
    }
    let type_valid = !record.credential_type.is_empty()
        && record
            .credential_type
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
    if !type_valid {
        return Err(format!(
            "{name}: credential_type {:?} is not a credential type such as aws_access_key",
            record.credential_type
        ));
    }
    for (index, consumer) in record.consumers.iter().enumerate() {
        let workload = &consumer.workload;
        let known_scheme = WORKLOAD_SCHEMES
            .iter()
            .any(|scheme| workload.starts_with(scheme));
        if !workload.is_empty() && !known_scheme {
            return Err(format!(
                "{name}: consumers[{index}].workload {workload:?} is not a workload id; it starts \
                 with spiffe://, container://, systemd:// or exe://"
            ));
        }
        if !consumer.executable.is_empty() && !consumer.executable.starts_with('/') {
            return Err(format!(
                "{name}: consumers[{index}].executable {:?} is not an absolute path, such as \
                 /usr/bin/cat",
                consumer.executable
            ));
        }
    }
    if record.learning_started_ms < 0 {
        return Err(format!("{name}: learning_started_ms is negative"));
    }
    if record.learning_until_ms < record.learning_started_ms {
        return Err(format!(
            "{name}: learning_until_ms is before learning_started_ms"
        ));
    }
    let empty = record
        .consumers
        .iter()
        .position(|consumer| consumer.workload.is_empty() && consumer.executable.is_empty());
    if let Some(position) = empty {
        return Err(format!(
            "{name}: consumers[{position}] has neither a workload nor an executable; give at \
             least one"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(baselines: &str) -> String {
        format!(r#"{{"format": "credwatch-baselines", "version": 1, "baselines": [{baselines}]}}"#)
    }

    const ONE: &str = r#"{"credential_id": "cw1:0a", "credential_type": "kubeconfig",
        "learning_started_ms": 1, "learning_until_ms": 2,
        "consumers": [{"workload": "systemd://cart.service", "executable": "/usr/bin/cart"}]}"#;

    #[test]
    fn valid_document_parses() {
        let (records, _) = parse(&document(ONE), Path::new("in.json")).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].consumers[0].executable, "/usr/bin/cart");
    }

    #[test]
    fn bad_documents_are_rejected() {
        let cases = [
            ("not json", "is not a baseline document".to_owned()),
            (
                r#"{"format": "other", "version": 1, "baselines": []}"#,
                "has format \"other\"".to_owned(),
            ),
            (document(&format!("{ONE}, {ONE}")).leak(), "appears twice".to_owned()),
            (
                document(r#"{"credential_id": "", "credential_type": "x", "learning_started_ms": 1, "learning_until_ms": 2}"#).leak(),
                "is not a credwatch id".to_owned(),
            ),
            (
                document(r#"{"credential_id": "cw1:0c", "credential_type": "Bad Type", "learning_started_ms": 1, "learning_until_ms": 2}"#).leak(),
                "is not a credential type".to_owned(),
            ),
            (
                document(r#"{"credential_id": "cw1:0c", "credential_type": "x", "learning_started_ms": 1, "learning_until_ms": 2, "consumers": [{"workload": "cart"}]}"#).leak(),
                "consumers[0].workload".to_owned(),
            ),
            (
                document(r#"{"credential_id": "cw1:0c", "credential_type": "x", "learning_started_ms": 1, "learning_until_ms": 2, "consumers": [{"executable": "cat"}]}"#).leak(),
                "not an absolute path".to_owned(),
            ),
            (
                document(r#"{"credential_id": "cw1:0b", "credential_type": "x", "learning_started_ms": 5, "learning_until_ms": 2}"#).leak(),
                "before learning_started_ms".to_owned(),
            ),
            (
                document(r#"{"credential_id": "cw1:0b", "credential_type": "x", "learning_started_ms": 1, "learning_until_ms": 2, "extra": 1}"#).leak(),
                "baselines[0]: unknown field".to_owned(),
            ),
            (
                document(r#"{"credential_id": "cw1:0b", "credential_type": "x", "learning_started_ms": 1, "learning_until_ms": 2, "consumers": [{}]}"#).leak(),
                "baselines[0]: consumers[0] has neither".to_owned(),
            ),
        ];
        for (text, expected) in cases {
            let error = parse(text, Path::new("in.json")).unwrap_err();
            assert!(error.contains(&expected), "{text}: {error}");
            assert!(error.contains("in.json"), "{error}");
        }
    }
}
