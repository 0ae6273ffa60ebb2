//! Timestamps in the forms that credential files write them.

use serde_json::Value;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Parses an RFC 3339 timestamp such as `2030-01-02T03:04:05Z` into seconds since the Unix
/// epoch. Fractions of a second are dropped.
pub(super) fn parse_rfc3339(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// Reads seconds since the Unix epoch from a JSON number or a string of digits, as JWT claims
/// and MSAL caches store them. Fractions are dropped.
pub(super) fn unix_seconds(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64().or_else(|| {
            number
                .as_f64()
                .filter(|seconds| seconds.is_finite())
                .map(|seconds| seconds as i64)
        }),
        Value::String(text) => text.trim().parse::<i64>().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_forms() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2030-01-02T03:04:05Z"), Some(1_893_553_445));
        assert_eq!(
            parse_rfc3339("2030-01-02T04:04:05.123+01:00"),
            Some(1_893_553_445)
        );
        assert_eq!(parse_rfc3339("2030-01-02"), None);
        assert_eq!(parse_rfc3339("not a time"), None);
    }

    #[test]
    fn unix_seconds_forms() {
        assert_eq!(
            unix_seconds(&Value::from(1_700_000_000)),
            Some(1_700_000_000)
        );
        assert_eq!(
            unix_seconds(&Value::from(1_700_000_000.9)),
            Some(1_700_000_000)
        );
        assert_eq!(
            unix_seconds(&Value::from("1700000000")),
            Some(1_700_000_000)
        );
        assert_eq!(unix_seconds(&Value::from("soon")), None);
        assert_eq!(unix_seconds(&Value::Null), None);
    }
}
