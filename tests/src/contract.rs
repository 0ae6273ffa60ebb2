//! Checks events against the event reference in `docs/events.md`.
//!
//! Each event's table there starts after an HTML comment naming the event
//! (`<!-- credwatch.credential.access -->`) and lists `attribute | type | presence | ...`.

use std::{collections::BTreeMap, fs, path::Path};

use serde_json::Value;

/// One documented attribute.
#[derive(Clone, Debug)]
pub struct Documented {
    /// JSON type: `string`, `int`, `bool`, `array` or `object`.
    pub json_type: String,
    /// `always`, or a condition.
    pub presence: String,
}

/// Reads the table that follows `<!-- section -->` in docs/events.md.
pub fn documented(section: &str) -> BTreeMap<String, Documented> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/events.md");
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    let marker = format!("<!-- {section} -->");
    let start = text
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/events.md has no {marker}"));
    let mut attributes = BTreeMap::new();
    for line in text[start + marker.len()..].lines().skip(3) {
        let line = line.trim();
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let name = cells[0].trim_matches('`').to_owned();
        attributes.insert(
            name,
            Documented {
                json_type: cells[1].to_owned(),
                presence: cells[2].to_owned(),
            },
        );
    }
    assert!(
        !attributes.is_empty(),
        "the {section} table in docs/events.md is empty"
    );
    attributes
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "string",
        Value::Number(number) if number.is_i64() || number.is_u64() => "int",
        Value::Number(_) => "double",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

/// Panics unless every attribute of `event` and of its resource is documented with its type,
/// and every attribute documented as `always` is present.
pub fn assert_documented(event: &Value) {
    let name = event["event_name"]
        .as_str()
        .expect("event_name is a string");
    check_object(&event["attributes"], &documented(name), name);
    check_object(&event["resource"], &documented("resource"), "resource");
}

fn check_object(object: &Value, documented: &BTreeMap<String, Documented>, section: &str) {
    let object = object
        .as_object()
        .unwrap_or_else(|| panic!("{section}: not an object"));
    for (key, value) in object {
        let entry = documented.get(key).unwrap_or_else(|| {
            panic!("{section}: attribute {key} is not documented in docs/events.md")
        });
        assert_eq!(
            entry.json_type,
            json_type(value),
            "{section}: attribute {key} has the wrong type"
        );
    }
    for (key, entry) in documented {
        if entry.presence == "always" {
            assert!(
                object.contains_key(key),
                "{section}: attribute {key} is documented as always present"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_tables_parse() {
        for section in [
            "resource",
            "credwatch.credential.access",
            "credwatch.network.connect",
            "credwatch.tls.handshake",
            "credwatch.monitor.health",
        ] {
            let attributes = documented(section);
            for (key, entry) in &attributes {
                let known = ["string", "int", "bool", "array", "object"];
                assert!(
                    known.contains(&entry.json_type.as_str()),
                    "{section}: {key} has type {}",
                    entry.json_type
                );
            }
        }
    }
}
