//! Events as OTLP log records: the same event name, severity, times and attributes as the JSON
//! lines, with JSON values mapped to OTLP `AnyValue`s.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource as ProtoResource,
};
use serde_json::{Map, Value};

use crate::export::event::Event;

/// Name of the instrumentation scope of every record.
const SCOPE_NAME: &str = "credwatch";

/// Returns the log record of an event, observed at `observed`.
pub fn log_record(event: &Event, observed: SystemTime) -> LogRecord {
    LogRecord {
        time_unix_nano: unix_nanos(event.time),
        observed_time_unix_nano: unix_nanos(observed),
        severity_number: i32::from(event.severity.number()),
        severity_text: event.severity.text().to_owned(),
        attributes: key_values(&event.attributes),
        event_name: event.name.to_owned(),
        ..LogRecord::default()
    }
}

/// Wraps log records in one resource and one scope.
pub fn resource_logs(resource: &Map<String, Value>, records: Vec<LogRecord>) -> ResourceLogs {
    ResourceLogs {
        resource: Some(ProtoResource {
            attributes: key_values(resource),
            ..ProtoResource::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: SCOPE_NAME.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..InstrumentationScope::default()
            }),
            log_records: records,
            ..ScopeLogs::default()
        }],
        ..ResourceLogs::default()
    }
}

/// Returns JSON attributes as OTLP key-values, in key order.
pub fn key_values(attributes: &Map<String, Value>) -> Vec<KeyValue> {
    attributes
        .iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(key, value)| KeyValue {
            key: key.clone(),
            value: Some(any_value(value)),
            ..KeyValue::default()
        })
        .collect()
}

/// Maps a JSON value: strings, booleans, integers and doubles to their OTLP kinds, arrays to
/// array values and objects to key-value lists.
pub fn any_value(value: &Value) -> AnyValue {
    let inner = match value {
        Value::String(text) => any_value::Value::StringValue(text.clone()),
        Value::Bool(flag) => any_value::Value::BoolValue(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => any_value::Value::IntValue(integer),
            // A u64 above i64::MAX or a fraction: a double keeps its magnitude.
            None => any_value::Value::DoubleValue(number.as_f64().unwrap_or_default()),
        },
        Value::Array(items) => any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(any_value).collect(),
        }),
        Value::Object(fields) => any_value::Value::KvlistValue(KeyValueList {
            values: key_values(fields),
        }),
        Value::Null => return AnyValue { value: None },
    };
    AnyValue { value: Some(inner) }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::export::event::{Severity, name};

    fn string(value: &AnyValue) -> Option<&str> {
        match &value.value {
            Some(any_value::Value::StringValue(text)) => Some(text),
            _ => None,
        }
    }

    #[test]
    fn record_keeps_name_severity_and_times() {
        let time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let mut event = Event::new(name::FINDING, Severity::Warn, time);
        event.set("credwatch.finding.type", "expired_use");

        let record = log_record(&event, time + Duration::from_secs(1));

        assert_eq!(record.event_name, "credwatch.finding");
        assert_eq!(record.severity_number, 13);
        assert_eq!(record.severity_text, "WARN");
        assert_eq!(record.time_unix_nano, 1_700_000_000_123_000_000);
        assert_eq!(record.observed_time_unix_nano, 1_700_000_001_123_000_000);
        assert_eq!(record.attributes[0].key, "credwatch.finding.type");
        assert_eq!(
            string(record.attributes[0].value.as_ref().unwrap()),
            Some("expired_use")
        );
    }

    #[test]
    fn json_values_map_to_otlp_kinds() {
        let cases = [
            (json!("text"), any_value::Value::StringValue("text".into())),
            (json!(true), any_value::Value::BoolValue(true)),
            (json!(-4), any_value::Value::IntValue(-4)),
            (json!(2.5), any_value::Value::DoubleValue(2.5)),
            (
                json!(u64::MAX),
                any_value::Value::DoubleValue(u64::MAX as f64),
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(any_value(&json).value, Some(expected), "{json}");
        }
        let nested = any_value(&json!({"app": "cart", "ports": [443]}));
        let Some(any_value::Value::KvlistValue(list)) = nested.value else {
            panic!("an object is a key-value list: {nested:?}");
        };
        assert_eq!(list.values[0].key, "app");
        assert_eq!(list.values[1].key, "ports");
    }

    #[test]
    fn null_attributes_are_left_out() {
        let mut attributes = Map::new();
        attributes.insert("kept".into(), json!(1));
        attributes.insert("missing".into(), Value::Null);
        let pairs = key_values(&attributes);
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].key, "kept");
    }
}
