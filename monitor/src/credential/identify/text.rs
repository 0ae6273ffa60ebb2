//! Decoding helpers shared by the parsers: UTF-8, JSON, YAML and base64, with errors that
//! carry positions but no content.

use base64::Engine as _;
use serde_json::Value;

use super::IdentifyError;
use crate::credential::fingerprint::SecretBytes;

/// Returns `contents` as text without a leading byte order mark.
pub(super) fn utf8<'a>(
    contents: &'a [u8],
    expected: &'static str,
) -> Result<&'a str, IdentifyError> {
    let text = std::str::from_utf8(contents).map_err(|error| IdentifyError::NotText {
        expected,
        offset: error.valid_up_to(),
    })?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

/// Parses JSON. The error names the line and column only, because the messages of
/// `serde_json` may quote the input.
pub(super) fn parse_json(contents: &[u8], expected: &'static str) -> Result<Value, IdentifyError> {
    let text = utf8(contents, expected)?;
    serde_json::from_str(text).map_err(|error| {
        IdentifyError::invalid(
            expected,
            format!(
                "JSON syntax error at line {} column {}",
                error.line(),
                error.column()
            ),
        )
    })
}

/// Maximum nesting of YAML flow collections (`[...]`, `{...}`). The YAML parser slows down far
/// more than linearly with depth (serde_yaml 0.9 took 8 s for 1 MiB of `[` in a test), while a
/// kubeconfig nests three or four levels.
const MAX_YAML_FLOW_DEPTH: usize = 64;

/// Parses YAML (and so JSON) into a JSON value. Mapping keys that are not strings are written
/// as their YAML text. The error names the position only.
pub(super) fn parse_yaml(contents: &[u8], expected: &'static str) -> Result<Value, IdentifyError> {
    let text = utf8(contents, expected)?;
    if let Some(line) = flow_depth_exceeded(text, MAX_YAML_FLOW_DEPTH) {
        return Err(IdentifyError::invalid(
            expected,
            format!(
                "flow collections nest deeper than {MAX_YAML_FLOW_DEPTH} levels on line {line}"
            ),
        ));
    }
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(|error| {
        let position = error.location().map_or_else(
            || "YAML syntax error".to_string(),
            |location| {
                format!(
                    "YAML syntax error at line {} column {}",
                    location.line(),
                    location.column()
                )
            },
        );
        IdentifyError::invalid(expected, position)
    })?;
    Ok(yaml_to_json(yaml))
}

/// Returns the line where `[` and `{` outside quoted scalars and comments nest deeper than
/// `max_depth`. Quotes are recognised where a YAML scalar may start, so the apostrophe of a
/// plain scalar such as `don't` opens none.
pub(crate) fn flow_depth_exceeded(text: &str, max_depth: usize) -> Option<usize> {
    let mut depth = 0_usize;
    let mut line = 1;
    let mut quote = None;
    let mut previous = b'\n';
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        if byte == b'\n' {
            line += 1;
        }
        match quote {
            Some(b'"') if byte == b'\\' => {
                bytes.next();
            }
            Some(open) if byte == open => quote = None,
            Some(_) => {}
            None => match byte {
                b'"' | b'\'' if is_scalar_start(previous) => quote = Some(byte),
                b'#' if previous.is_ascii_whitespace() => {
                    for skipped in bytes.by_ref() {
                        if skipped == b'\n' {
                            line += 1;
                            break;
                        }
                    }
                    // The next line starts fresh, as after any other newline.
                    previous = b'\n';
                    continue;
                }
                b'[' | b'{' => {
                    depth += 1;
                    if depth > max_depth {
                        return Some(line);
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        previous = byte;
    }
    None
}

fn is_scalar_start(previous: u8) -> bool {
    previous.is_ascii_whitespace() || matches!(previous, b'[' | b'{' | b',' | b':' | b'-')
}

fn yaml_to_json(yaml: serde_yaml::Value) -> Value {
    match yaml {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(value) => Value::Bool(value),
        serde_yaml::Value::Number(number) => yaml_number_to_json(&number),
        serde_yaml::Value::String(text) => Value::String(text),
        serde_yaml::Value::Sequence(items) => {
            Value::Array(items.into_iter().map(yaml_to_json).collect())
        }
        serde_yaml::Value::Mapping(mapping) => Value::Object(
            mapping
                .into_iter()
                .map(|(key, value)| (yaml_key(key), yaml_to_json(value)))
                .collect(),
        ),
        serde_yaml::Value::Tagged(tagged) => yaml_to_json(tagged.value),
    }
}

fn yaml_number_to_json(number: &serde_yaml::Number) -> Value {
    if let Some(value) = number.as_i64() {
        Value::from(value)
    } else if let Some(value) = number.as_u64() {
        Value::from(value)
    } else {
        number
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number)
    }
}

fn yaml_key(key: serde_yaml::Value) -> String {
    match key {
        serde_yaml::Value::String(text) => text,
        serde_yaml::Value::Bool(value) => value.to_string(),
        serde_yaml::Value::Number(number) => number.to_string(),
        _ => String::new(),
    }
}

/// Returns the string at `key` of an object, or `None` when it is missing, not a string or
/// empty.
pub(super) fn string_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
}

/// Serialises `value` with object keys in sorted order and no whitespace, so that equal values
/// give equal bytes whatever their order in the file.
pub(super) fn canonical_json(value: &Value) -> SecretBytes {
    let mut output = String::new();
    write_canonical(value, &mut output);
    SecretBytes::from(output)
}

fn write_canonical(value: &Value, output: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|left, right| left.0.cmp(right.0));
            output.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    output.push(',');
                }
                output.push_str(&Value::String(key.clone()).to_string());
                output.push(':');
                write_canonical(item, output);
            }
            output.push('}');
        }
        Value::Array(items) => {
            output.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    output.push(',');
                }
                write_canonical(item, output);
            }
            output.push(']');
        }
        scalar => output.push_str(&scalar.to_string()),
    }
}

/// Decodes standard base64 with or without padding, ignoring ASCII whitespace.
pub(super) fn decode_base64(text: &str) -> Option<SecretBytes> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let compact = SecretBytes::from(compact);
    base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
        .decode(compact.expose())
        .ok()
        .map(SecretBytes::new)
}

/// Decodes base64url with or without padding, as JWT segments use it.
pub(super) fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD_INDIFFERENT
        .decode(text)
        .ok()
}

/// Returns lowercase hex of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_depth_limit() {
        let deep = "[".repeat(65);
        let quoted = format!(
            "a: '{}'\nb: \"{}\"\n# {}\n",
            "[".repeat(80),
            "{".repeat(80),
            "[".repeat(80)
        );

        assert_eq!(flow_depth_exceeded(&deep, 64), Some(1));
        assert_eq!(flow_depth_exceeded(&"[]".repeat(1000), 64), None);
        assert_eq!(flow_depth_exceeded(&quoted, 64), None);
        assert_eq!(flow_depth_exceeded("a: don't [[\nb: [", 2), Some(2));
    }

    #[test]
    fn deep_yaml_rejected() {
        let error = parse_yaml("[".repeat(100).as_bytes(), "kubeconfig").unwrap_err();

        assert!(
            error
                .to_string()
                .contains("deeper than 64 levels on line 1"),
            "{error}"
        );
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let value: Value =
            serde_json::from_str(r#"{"b": [1, {"d": 2, "c": 3}], "a": "x"}"#).unwrap();

        assert_eq!(
            canonical_json(&value).expose(),
            br#"{"a":"x","b":[1,{"c":3,"d":2}]}"#
        );
    }
}
