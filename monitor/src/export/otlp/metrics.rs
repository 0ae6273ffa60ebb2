//! The daemon's counters as OTLP metrics: events by name, findings by type, lost records,
//! the export queue, the inventory and the probes.
//!
//! Sums are cumulative from the daemon's start, so a lost request loses no count: the next
//! one carries the totals.

use std::{
    collections::BTreeMap,
    time::{SystemTime, UNIX_EPOCH},
};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        metric, number_data_point,
    },
    resource::v1::Resource,
};
use serde_json::{Map, Value};

use super::encode::key_values;

/// The counters at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// When the daemon started: the start of every sum.
    pub started: Option<SystemTime>,
    /// Events written, by event name.
    pub events: BTreeMap<String, u64>,
    /// Findings written, by finding type.
    pub findings: BTreeMap<String, u64>,
    /// Records lost in the kernel (ring buffer full) and in the daemon.
    pub records_lost: u64,
    /// Events waiting in the export queue.
    pub queue_depth: u64,
    /// Events dropped from the full export queue.
    pub queue_dropped: u64,
    /// Credentials in the inventory.
    pub credentials: u64,
    /// Probes by program, hook and state (`attached`, `failed`, ...).
    pub probes: Vec<(String, String, String)>,
}

/// Returns the export request of a snapshot taken at `now`.
pub fn request(
    snapshot: &Snapshot,
    resource: &Map<String, Value>,
    now: SystemTime,
) -> ExportMetricsServiceRequest {
    let start = snapshot.started.map_or(0, nanos);
    let now = nanos(now);
    let point = |value: u64, attributes: Vec<KeyValue>| NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsInt(
            i64::try_from(value).unwrap_or(i64::MAX),
        )),
        ..NumberDataPoint::default()
    };
    let by = |key: &str, counts: &BTreeMap<String, u64>| -> Vec<NumberDataPoint> {
        counts
            .iter()
            .map(|(name, count)| point(*count, vec![attribute(key, name)]))
            .collect()
    };
    let probes = snapshot
        .probes
        .iter()
        .map(|(program, hook, state)| {
            point(
                1,
                vec![
                    attribute("credwatch.probe.program", program),
                    attribute("credwatch.probe.hook", hook),
                    attribute("credwatch.probe.state", state),
                ],
            )
        })
        .collect();
    let metrics = vec![
        sum(
            "credwatch.events",
            "Events written, by event name.",
            "{event}",
            by("event.name", &snapshot.events),
        ),
        sum(
            "credwatch.findings",
            "Findings written, by finding type.",
            "{finding}",
            by("credwatch.finding.type", &snapshot.findings),
        ),
        sum(
            "credwatch.records.lost",
            "Kernel records lost because the ring buffer was full or the daemon could not use them.",
            "{record}",
            vec![point(snapshot.records_lost, Vec::new())],
        ),
        sum(
            "credwatch.export.queue.dropped",
            "Events deleted unsent from the full export queue.",
            "{event}",
            vec![point(snapshot.queue_dropped, Vec::new())],
        ),
        gauge(
            "credwatch.export.queue.depth",
            "Events waiting in the export queue.",
            "{event}",
            vec![point(snapshot.queue_depth, Vec::new())],
        ),
        gauge(
            "credwatch.inventory.credentials",
            "Credentials in the inventory.",
            "{credential}",
            vec![point(snapshot.credentials, Vec::new())],
        ),
        gauge(
            "credwatch.probes",
            "Probes, one point per program with its hook and state.",
            "{probe}",
            probes,
        ),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: key_values(resource),
                ..Resource::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "credwatch".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..InstrumentationScope::default()
                }),
                metrics,
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

fn sum(name: &str, description: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.to_owned(),
        description: description.to_owned(),
        unit: unit.to_owned(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Metric::default()
    }
}

fn gauge(name: &str, description: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.to_owned(),
        description: description.to_owned(),
        unit: unit.to_owned(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Metric::default()
    }
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn snapshot_becomes_sums_and_gauges() {
        let started = UNIX_EPOCH + Duration::from_secs(1_000);
        let snapshot = Snapshot {
            started: Some(started),
            events: BTreeMap::from([
                ("credwatch.credential.access".to_owned(), 12),
                ("credwatch.finding".to_owned(), 2),
            ]),
            findings: BTreeMap::from([("expired_use".to_owned(), 2)]),
            records_lost: 3,
            queue_depth: 7,
            queue_dropped: 0,
            credentials: 5,
            probes: vec![(
                "sys_enter_openat".into(),
                "tracepoint".into(),
                "attached".into(),
            )],
        };

        let request = request(&snapshot, &Map::new(), started + Duration::from_secs(60));
        let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
        let find = |name: &str| metrics.iter().find(|metric| metric.name == name).unwrap();

        let Some(metric::Data::Sum(events)) = &find("credwatch.events").data else {
            panic!("credwatch.events is a sum");
        };
        assert!(events.is_monotonic);
        assert_eq!(events.data_points.len(), 2);
        assert_eq!(
            events.data_points[0].value,
            Some(number_data_point::Value::AsInt(12))
        );
        assert_eq!(
            events.data_points[0].start_time_unix_nano,
            1_000_000_000_000
        );
        let Some(metric::Data::Gauge(depth)) = &find("credwatch.export.queue.depth").data else {
            panic!("the queue depth is a gauge");
        };
        assert_eq!(
            depth.data_points[0].value,
            Some(number_data_point::Value::AsInt(7))
        );
        let Some(metric::Data::Gauge(probes)) = &find("credwatch.probes").data else {
            panic!("probes are a gauge");
        };
        assert_eq!(probes.data_points[0].attributes.len(), 3);
    }
}
