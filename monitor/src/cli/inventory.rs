//! `credwatch inventory`: the credentials in the state database, as a table or as JSON.

use std::{path::Path, process::ExitCode};

use serde_json::{Value, json};

use super::{EXIT_FAILURE, InventoryFormat, report};
use crate::{
    daemon::identity::rfc3339_seconds,
    store::{DATABASE_FILE, InventoryEntry, Store},
};

/// Keeps the credentials never used, or last used at least `days` days before `now_ms`.
fn stale(entries: Vec<InventoryEntry>, days: u32, now_ms: i64) -> Vec<InventoryEntry> {
    let cutoff = now_ms.saturating_sub(i64::from(days).saturating_mul(DAY_MS));
    entries
        .into_iter()
        .filter(|entry| entry.last_used.is_none_or(|used| used <= cutoff))
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Maximum number of consumers a table cell lists before it counts the rest.
const MAX_LISTED: usize = 3;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// Prints the inventory of `state_dir` and returns the exit code. With `stale_days`, only the
/// credentials not used for at least that many days are printed: the clean-up list.
pub fn print(state_dir: &Path, format: InventoryFormat, stale_days: Option<u32>) -> ExitCode {
    let database = state_dir.join(DATABASE_FILE);
    if let Err(error) = std::fs::metadata(&database)
        && error.kind() == std::io::ErrorKind::PermissionDenied
    {
        eprintln!(
            "credwatch: error: permission denied reading {}: the state directory is readable by \
             root only; run credwatch inventory as root",
            database.display()
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    if !database.exists() {
        eprintln!(
            "credwatch: error: no state database at {}; start `credwatch run --state-dir {}` \
             first, or pass the --state-dir the daemon uses",
            database.display(),
            state_dir.display()
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    let mut entries = match Store::open_read_only(state_dir).and_then(|store| store.inventory()) {
        Ok(entries) => entries,
        Err(error) => return report(&error, EXIT_FAILURE),
    };
    if let Some(days) = stale_days {
        entries = stale(entries, days, now_ms());
    }
    match format {
        InventoryFormat::Json => {
            let list: Vec<Value> = entries.iter().map(entry_json).collect();
            println!("{}", Value::Array(list));
        }
        InventoryFormat::Table => print!("{}", table(&entries)),
    }
    ExitCode::SUCCESS
}

/// Converts one credential to JSON, with times in RFC 3339.
fn entry_json(entry: &InventoryEntry) -> Value {
    json!({
        "id": entry.id,
        "type": entry.credential_type,
        "native_id": entry.native_id,
        "label": entry.label,
        "expires_at": entry.expires_at.and_then(rfc3339_seconds),
        "first_seen": rfc3339_ms(entry.first_seen),
        "last_used": entry.last_used.and_then(rfc3339_ms),
        "use_count": entry.use_count,
        "paths": entry.paths,
        "details": entry.details,
        "consumers": entry.consumers.iter().map(|consumer| json!({
            "executable": consumer.executable,
            "workload": consumer.workload,
            "use_count": consumer.use_count,
            "last_seen": rfc3339_ms(consumer.last_seen),
        })).collect::<Vec<_>>(),
        "destinations": entry.destinations.iter().map(|destination| json!({
            "server": destination.server,
            "port": destination.port,
            "use_count": destination.use_count,
            "last_seen": rfc3339_ms(destination.last_seen),
        })).collect::<Vec<_>>(),
    })
}

/// Formats the inventory as an aligned table, in the order given.
fn table(entries: &[InventoryEntry]) -> String {
    const HEADER: [&str; 8] = [
        "TYPE",
        "NATIVE ID",
        "LABEL",
        "EXPIRES",
        "LAST USED",
        "USES",
        "CONSUMERS",
        "ID",
    ];
    let rows: Vec<[String; 8]> = entries.iter().map(row).collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }

    let mut output = String::new();
    push_line(&mut output, &HEADER.map(str::to_owned), &widths);
    for row in &rows {
        push_line(&mut output, row, &widths);
    }
    output.push_str(&format!(
        "{} credential{}\n",
        entries.len(),
        if entries.len() == 1 { "" } else { "s" }
    ));
    output
}

fn row(entry: &InventoryEntry) -> [String; 8] {
    let consumers: Vec<String> = entry
        .consumers
        .iter()
        .map(|consumer| {
            Path::new(&consumer.executable).file_name().map_or_else(
                || consumer.executable.clone(),
                |name| name.to_string_lossy().into_owned(),
            )
        })
        .collect();
    [
        entry.credential_type.clone(),
        dash(entry.native_id.as_deref()),
        dash(entry.label.as_deref()),
        dash(
            entry
                .expires_at
                .and_then(rfc3339_seconds)
                .map(short_time)
                .as_deref(),
        ),
        dash(
            entry
                .last_used
                .and_then(rfc3339_ms)
                .map(short_time)
                .as_deref(),
        ),
        entry.use_count.to_string(),
        listed(&consumers),
        entry.id.clone(),
    ]
}

fn push_line(output: &mut String, cells: &[String; 8], widths: &[usize; 8]) {
    let mut line = String::new();
    for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if index + 1 == cells.len() {
            line.push_str(cell);
        } else {
            line.push_str(&format!("{cell:<width$}  "));
        }
    }
    output.push_str(line.trim_end());
    output.push('\n');
}

/// Joins up to [`MAX_LISTED`] names and counts the rest.
fn listed(names: &[String]) -> String {
    if names.is_empty() {
        return "-".to_owned();
    }
    let mut text = names
        .iter()
        .take(MAX_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if names.len() > MAX_LISTED {
        text.push_str(&format!(" +{}", names.len() - MAX_LISTED));
    }
    text
}

fn dash(value: Option<&str>) -> String {
    value
        .filter(|text| !text.is_empty())
        .unwrap_or("-")
        .to_owned()
}

/// `2026-12-05T01:40:00.000000Z` as `2026-12-05 01:40Z`.
fn short_time(time: String) -> String {
    match (time.get(..10), time.get(11..16)) {
        (Some(date), Some(clock)) => format!("{date} {clock}Z"),
        _ => time,
    }
}

fn rfc3339_ms(ms: i64) -> Option<String> {
    let time = std::time::UNIX_EPOCH
        .checked_add(std::time::Duration::from_millis(u64::try_from(ms).ok()?))?;
    Some(crate::clock::rfc3339(time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Consumer;

    fn entry(id: &str, consumers: &[&str]) -> InventoryEntry {
        InventoryEntry {
            id: id.to_owned(),
            credential_type: "aws_access_key".to_owned(),
            native_id: Some("AKIAMADEUPEXAMPLE234".to_owned()),
            label: Some("default".to_owned()),
            expires_at: None,
            details: json!({}),
            first_seen: 1_764_900_000_000,
            last_used: Some(1_764_900_060_000),
            use_count: 7,
            paths: vec!["/root/.aws/credentials".to_owned()],
            consumers: consumers
                .iter()
                .map(|executable| Consumer {
                    executable: (*executable).to_owned(),
                    workload: String::new(),
                    use_count: 1,
                    last_seen: 1_764_900_060_000,
                })
                .collect(),
            destinations: Vec::new(),
        }
    }

    #[test]
    fn table_aligns_columns_and_counts() {
        let text = table(&[
            entry("cw1:aa", &["/usr/bin/aws"]),
            entry("cw1:bb", &["/a", "/b", "/c", "/d"]),
        ]);

        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("TYPE"), "{text}");
        assert!(lines[1].contains("AKIAMADEUPEXAMPLE234"), "{text}");
        assert!(lines[1].contains("2025-12-05 02:01Z"), "{text}");
        assert!(lines[1].contains(" aws "), "{text}");
        assert!(lines[2].contains("a,b,c +1"), "{text}");
        assert_eq!(lines[0].rfind("ID"), lines[1].find("cw1:"), "{text}");
        assert_eq!(lines[3], "2 credentials");
    }

    #[test]
    fn json_uses_rfc3339_times() {
        let value = entry_json(&entry("cw1:aa", &["/usr/bin/aws"]));

        assert_eq!(value["last_used"], "2025-12-05T02:01:00.000000Z");
        assert_eq!(value["expires_at"], Value::Null);
        assert_eq!(value["consumers"][0]["executable"], "/usr/bin/aws");
    }

    #[test]
    fn missing_database_fails() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            print(dir.path(), InventoryFormat::Json, None),
            ExitCode::from(EXIT_FAILURE)
        );
    }

    #[test]
    fn stale_keeps_unused_and_old_credentials() {
        let now = 1_800_000_000_000;
        let mut recent = entry("cw1:recent", &["/usr/bin/aws"]);
        recent.last_used = Some(now - 2 * DAY_MS);
        let mut old = entry("cw1:old", &["/usr/bin/aws"]);
        old.last_used = Some(now - 45 * DAY_MS);
        let mut never = entry("cw1:never", &[]);
        never.last_used = None;

        let stale_entries = stale(vec![recent, old, never], 30, now);

        let ids: Vec<&str> = stale_entries
            .iter()
            .map(|entry| entry.id.as_str())
            .collect();
        assert_eq!(ids, ["cw1:old", "cw1:never"]);
    }
}
