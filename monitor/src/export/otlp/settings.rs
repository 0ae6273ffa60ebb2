//! Destination and transport of events to an OpenTelemetry Collector: the `otlp` configuration section and
//! the standard `OTEL_*` environment variables, which the section overrides.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::config::{ConfigError, expand, parse_duration};

/// Default bound of the delivery queue on disk.
const DEFAULT_QUEUE_MB: u64 = 256;
/// Default records per export request.
const DEFAULT_BATCH: usize = 512;
/// Default time for one export request.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time between two metrics requests.
const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(60);

/// The transport of OTLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Protocol {
    /// gRPC over HTTP/2, usually port 4317.
    #[serde(rename = "grpc")]
    Grpc,
    /// Protobuf over HTTP/1.1 `POST /v1/logs`, usually port 4318.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl Protocol {
    fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "grpc" => Some(Self::Grpc),
            "http/protobuf" => Some(Self::HttpProtobuf),
            _ => None,
        }
    }
}

/// Contents of each record's body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Body {
    /// No body: the event is in the attributes.
    #[default]
    None,
    /// An OCSF 1.1 event of the record's class, for the events that have one.
    Ocsf,
}

/// The `otlp` section. Every key is optional; unset keys fall back to the `OTEL_*` variables.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Turns export off even when an endpoint is set. Without it, export is on when an
    /// endpoint is set here or in the environment.
    pub enabled: Option<bool>,
    /// Collector URL: `http://host:4317` for gRPC, `http://host:4318` for HTTP, where
    /// `/v1/logs` is added; `https://` for TLS. `${NAME}` is replaced by the variable.
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf`.
    pub protocol: Option<Protocol>,
    /// Headers sent with every request, such as a tenant id.
    pub headers: BTreeMap<String, String>,
    /// Headers whose values are read from files at each request, for secrets such as
    /// `authorization: /etc/credwatch/otlp-token`.
    pub header_files: BTreeMap<String, PathBuf>,
    /// Time for one export request.
    #[serde(default, deserialize_with = "optional_duration")]
    pub timeout: Option<Duration>,
    /// CA certificates (PEM) that the collector's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub client_certificate_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    pub client_key_file: Option<PathBuf>,
    /// Bound of the delivery queue in the state directory, in MiB.
    pub queue_max_mb: Option<u64>,
    /// Maximum records in one export request.
    pub batch_max: Option<usize>,
    /// `service.name` of the resource.
    pub service_name: Option<String>,
    /// The record body: `none`, or `ocsf` for an OCSF event of the record's class.
    pub body: Option<Body>,
    /// How often the daemon's counters are sent as OTLP metrics; `0s` turns metrics off.
    #[serde(default, deserialize_with = "optional_duration")]
    pub metrics_interval: Option<Duration>,
    /// Resource attributes added to every record, such as `k8s.cluster.name` and
    /// `k8s.node.name`; `${NAME}` is replaced by the variable.
    pub resource: BTreeMap<String, String>,
}

/// Export settings after the environment and the file are merged and checked.
#[derive(Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    /// Full URL of requests: with `/v1/logs` for HTTP.
    pub endpoint: String,
    /// Full URL of metrics requests: with `/v1/metrics` for HTTP.
    pub metrics_endpoint: String,
    /// How often metrics are sent; zero when they are off.
    pub metrics_interval: Duration,
    /// Transport.
    pub protocol: Protocol,
    /// Fixed headers; the values may be secrets and are never logged.
    pub headers: Vec<(String, String)>,
    /// Headers read from files at each request.
    pub header_files: Vec<(String, PathBuf)>,
    /// Time for one request.
    pub timeout: Duration,
    /// CA bundle for the collector's certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// Bound of the queue, in bytes.
    pub queue_max_bytes: u64,
    /// Records per request.
    pub batch_max: usize,
    /// Contents of the record body.
    pub body: Body,
    /// Resource attributes added to the detected ones.
    pub resource: BTreeMap<String, String>,
}

impl fmt::Debug for OtlpSettings {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        formatter
            .debug_struct("OtlpSettings")
            .field("endpoint", &self.endpoint)
            .field("metrics_endpoint", &self.metrics_endpoint)
            .field("metrics_interval", &self.metrics_interval)
            .field("protocol", &self.protocol)
            .field("headers", &header_names)
            .field("header_files", &self.header_files)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .field("client_identity", &self.client_identity)
            .field("queue_max_bytes", &self.queue_max_bytes)
            .field("batch_max", &self.batch_max)
            .field("body", &self.body)
            .field("resource", &self.resource)
            .finish()
    }
}

impl OtlpSettings {
    /// Merges the section with the environment read through `lookup`, and checks the result.
    /// None when export is off.
    pub fn resolve(
        config: &OtlpConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let env = |logs: &str, general: &str| {
            lookup(logs)
                .or_else(|| lookup(general))
                .filter(|value| !value.trim().is_empty())
        };
        // The endpoint, whether it names the logs signal itself, and where it was set.
        let endpoint = match &config.endpoint {
            Some(endpoint) => Some((
                expand("otlp.endpoint", endpoint, &lookup)?,
                true,
                "otlp.endpoint",
            )),
            None => lookup("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
                .filter(|value| !value.trim().is_empty())
                .map(|value| (value, true, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"))
                .or_else(|| {
                    lookup("OTEL_EXPORTER_OTLP_ENDPOINT")
                        .filter(|value| !value.trim().is_empty())
                        .map(|value| (value, false, "OTEL_EXPORTER_OTLP_ENDPOINT"))
                }),
        };
        let Some((endpoint, signal_specific, source)) = endpoint else {
            if config.enabled == Some(true) {
                return Err(invalid(
                    "otlp.enabled",
                    "true",
                    "export needs an endpoint: set otlp.endpoint or OTEL_EXPORTER_OTLP_ENDPOINT",
                ));
            }
            return Ok(None);
        };
        if config.enabled == Some(false) {
            return Ok(None);
        }
        let protocol = match config.protocol {
            Some(protocol) => protocol,
            None => match env(
                "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ) {
                Some(text) => Protocol::parse(&text).ok_or_else(|| {
                    invalid(
                        "OTEL_EXPORTER_OTLP_PROTOCOL",
                        &text,
                        "credwatch sends `grpc` or `http/protobuf`",
                    )
                })?,
                None => Protocol::HttpProtobuf,
            },
        };
        let endpoint = endpoint_url(source, &endpoint, protocol, signal_specific)?;
        let metrics_endpoint = match lookup("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
            .filter(|value| !value.trim().is_empty())
        {
            Some(url) => endpoint_url("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", &url, protocol, true)?,
            None => metrics_url(&endpoint, protocol),
        };
        let headers = merged_headers(config, &env)?;
        let header_files = config
            .header_files
            .iter()
            .enumerate()
            .map(|(index, (name, path))| {
                check_header_name("otlp.header_files", index + 1, name)?;
                Ok((name.to_ascii_lowercase(), path.clone()))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let timeout = match config.timeout {
            Some(timeout) => timeout,
            None => match env(
                "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ) {
                Some(text) => text
                    .trim()
                    .parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|_| {
                        invalid(
                            "OTEL_EXPORTER_OTLP_TIMEOUT",
                            &text,
                            "it is a whole number of milliseconds, such as 10000",
                        )
                    })?,
                None => DEFAULT_TIMEOUT,
            },
        };
        if timeout.is_zero() {
            return Err(invalid(
                "otlp.timeout",
                "0s",
                "it must be at least 1ms, such as 10s",
            ));
        }
        let ca_file = config.ca_file.clone().or_else(|| {
            env(
                "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
            )
            .map(PathBuf::from)
        });
        let certificate = config.client_certificate_file.clone().or_else(|| {
            env(
                "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            )
            .map(PathBuf::from)
        });
        let key = config.client_key_file.clone().or_else(|| {
            env(
                "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            )
            .map(PathBuf::from)
        });
        let client_identity = match (certificate, key) {
            (Some(certificate), Some(key)) => Some((certificate, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::File(
                    "otlp.client_certificate_file is set without otlp.client_key_file; mutual TLS \
                     needs both"
                        .to_owned(),
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::File(
                    "otlp.client_key_file is set without otlp.client_certificate_file; mutual TLS \
                     needs both"
                        .to_owned(),
                ));
            }
        };
        let uses_tls = endpoint.starts_with("https://");
        if !uses_tls && (ca_file.is_some() || client_identity.is_some()) {
            return Err(invalid(
                "otlp.endpoint",
                &endpoint,
                "a CA or client certificate is set, so the endpoint must start with https://",
            ));
        }
        for (key, path) in
            [("otlp.ca_file", ca_file.as_ref())]
                .into_iter()
                .chain(client_identity.iter().flat_map(|(certificate, key)| {
                    [
                        ("otlp.client_certificate_file", Some(certificate)),
                        ("otlp.client_key_file", Some(key)),
                    ]
                }))
        {
            if let Some(path) = path {
                check_readable(key, path)?;
            }
        }
        for (name, path) in &header_files {
            check_header_file(name, path)?;
        }
        let queue_max_mb = config.queue_max_mb.unwrap_or(DEFAULT_QUEUE_MB);
        if queue_max_mb == 0 {
            return Err(invalid(
                "otlp.queue_max_mb",
                "0",
                "it must be at least 1; the queue keeps events while the collector is down",
            ));
        }
        let batch_max = config.batch_max.unwrap_or(DEFAULT_BATCH);
        if batch_max == 0 {
            return Err(invalid(
                "otlp.batch_max",
                "0",
                "it must be at least 1, such as 512",
            ));
        }
        let resource = merged_resource(config, &lookup)?;
        Ok(Some(Self {
            endpoint,
            metrics_endpoint,
            metrics_interval: config.metrics_interval.unwrap_or(DEFAULT_METRICS_INTERVAL),
            protocol,
            headers,
            header_files,
            timeout,
            ca_file,
            client_identity,
            queue_max_bytes: queue_max_mb.saturating_mul(1024 * 1024),
            batch_max,
            body: config.body.unwrap_or_default(),
            resource,
        }))
    }
}

/// Returns the URL of export requests. An HTTP base endpoint gets `/v1/logs`. A signal-specific
/// one (`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`, or `otlp.endpoint`) is used as it is, unless it has
/// no path, which then gets `/v1/logs` too.
fn endpoint_url(
    key: &str,
    endpoint: &str,
    protocol: Protocol,
    signal_specific: bool,
) -> Result<String, ConfigError> {
    let endpoint = endpoint.trim();
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(|| {
            invalid(
                key,
                endpoint,
                "it must be a URL starting with http:// or https://, such as http://collector:4318",
            )
        })?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') || endpoint.contains('?') {
        // The URL may carry a password or a token, so it is not shown.
        return Err(invalid(
            key,
            "(not shown: it has a user name or a query)",
            "credentials do not belong in the URL; put a token in otlp.header_files, such as \
             authorization: /etc/credwatch/otlp-token",
        ));
    }
    if authority.is_empty() {
        return Err(invalid(
            key,
            endpoint,
            "it needs a host, such as http://collector:4318",
        ));
    }
    if !port_is_valid(authority) {
        return Err(invalid(
            key,
            endpoint,
            "the port must be a number from 1 to 65535, such as 4318",
        ));
    }
    if protocol == Protocol::Grpc {
        return Ok(endpoint.trim_end_matches('/').to_owned());
    }
    if signal_specific && !path.is_empty() {
        return Ok(endpoint.to_owned());
    }
    Ok(format!("{}/v1/logs", endpoint.trim_end_matches('/')))
}

/// Returns whether the port of `host:port` or `[v6]:port`, if given, is a number from 1 to
/// 65535.
fn port_is_valid(authority: &str) -> bool {
    let after_host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map_or("", |(_, after)| after),
        None => authority.rsplit_once(':').map_or("", |(_, port)| port),
    };
    let port = after_host.strip_prefix(':').unwrap_or(after_host);
    port.is_empty() || matches!(port.parse::<u16>(), Ok(1..))
}

/// Returns the metrics URL that goes with the logs URL: the same for gRPC; for HTTP,
/// `/v1/logs` replaced by `/v1/metrics`, or `/v1/metrics` on the host of a custom path.
fn metrics_url(logs: &str, protocol: Protocol) -> String {
    if protocol == Protocol::Grpc {
        return logs.to_owned();
    }
    if let Some(base) = logs.strip_suffix("/v1/logs") {
        return format!("{base}/v1/metrics");
    }
    let scheme_end = logs.find("://").map_or(0, |index| index + 3);
    let host_end = logs[scheme_end..]
        .find('/')
        .map_or(logs.len(), |index| scheme_end + index);
    format!("{}/v1/metrics", &logs[..host_end])
}

/// Merges `OTEL_EXPORTER_OTLP_HEADERS` (`name=value,...`, values percent-encoded) with the
/// section's headers, which win.
fn merged_headers(
    config: &OtlpConfig,
    env: &impl Fn(&str, &str) -> Option<String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut headers = BTreeMap::new();
    if let Some(text) = env(
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
        "OTEL_EXPORTER_OTLP_HEADERS",
    ) {
        let pairs = text.split(',').filter(|pair| !pair.trim().is_empty());
        for (index, pair) in pairs.enumerate() {
            let (name, value) = pair.split_once('=').ok_or_else(|| {
                // The entry may hold a secret, so only its position is shown.
                invalid(
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    &format!("entry {} (not shown)", index + 1),
                    "each entry is name=value, separated by commas",
                )
            })?;
            let name = name.trim();
            check_header_name("OTEL_EXPORTER_OTLP_HEADERS", index + 1, name)?;
            headers.insert(name.to_ascii_lowercase(), percent_decode(value.trim()));
        }
    }
    for (index, (name, value)) in config.headers.iter().enumerate() {
        check_header_name("otlp.headers", index + 1, name)?;
        headers.insert(name.to_ascii_lowercase(), value.clone());
    }
    for (name, value) in &headers {
        if value
            .bytes()
            .any(|byte| byte < 0x20 && byte != b'\t' || byte == 0x7f)
        {
            return Err(invalid(
                &format!("otlp.headers.{name}"),
                "(value not shown)",
                "a header value cannot contain control characters or line breaks",
            ));
        }
    }
    Ok(headers.into_iter().collect())
}

/// Merges `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` with the section, which wins.
fn merged_resource(
    config: &OtlpConfig,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut resource = BTreeMap::new();
    if let Some(text) = lookup("OTEL_RESOURCE_ATTRIBUTES") {
        for pair in text.split(',').filter(|pair| !pair.trim().is_empty()) {
            let (name, value) = pair.split_once('=').ok_or_else(|| {
                invalid(
                    "OTEL_RESOURCE_ATTRIBUTES",
                    pair,
                    "each entry is name=value, separated by commas",
                )
            })?;
            resource.insert(name.trim().to_owned(), percent_decode(value.trim()));
        }
    }
    if let Some(name) = lookup("OTEL_SERVICE_NAME").filter(|name| !name.trim().is_empty()) {
        resource.insert("service.name".to_owned(), name.trim().to_owned());
    }
    if let Some(name) = &config.service_name {
        resource.insert("service.name".to_owned(), name.clone());
    }
    for (name, value) in &config.resource {
        let key = format!("otlp.resource.{name}");
        resource.insert(name.clone(), expand(&key, value, lookup)?);
    }
    Ok(resource)
}

/// Headers credwatch sets itself, which a configured header would duplicate.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "connection",
    "transfer-encoding",
    "te",
    "user-agent",
];

/// Checks a header name. A rejected name is never shown, because a misplaced secret (a token
/// written where the name goes) would otherwise end up in the error.
fn check_header_name(key: &str, position: usize, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte));
    if !valid {
        return Err(invalid(
            key,
            &format!("entry {position} (not shown)"),
            "a header name is letters, digits, `-`, `_` and `.`, such as x-scope-orgid; write \
             name=value",
        ));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(invalid(
            key,
            name,
            "credwatch sets this header itself; remove it",
        ));
    }
    Ok(())
}

/// Checks that a header file contains one non-empty line, as the requests read it. Its content is
/// never shown.
fn check_header_file(name: &str, path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigError::File(format!(
            "otlp.header_files.{name} {}: {error}; check the path and that credwatch may read it",
            path.display()
        ))
    })?;
    let value = text.trim();
    let problem = if value.is_empty() {
        Some("is empty")
    } else if value
        .bytes()
        .any(|byte| byte < 0x20 && byte != b'\t' || byte == 0x7f)
    {
        Some("has more than one line or control characters")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ConfigError::File(format!(
            "otlp.header_files.{name} {} {problem}; it must hold the header value on one line",
            path.display()
        ))),
        None => Ok(()),
    }
}

fn check_readable(key: &str, path: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(path).map(|_| ()).map_err(|error| {
        ConfigError::File(format!(
            "{key} {}: {error}; check the path and that credwatch may read it",
            path.display()
        ))
    })
}

/// Decodes `%XX` escapes; an invalid escape stays as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escape = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escape {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn invalid(key: &str, value: &str, allowed: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_owned(),
        allowed: allowed.to_owned(),
    }
}

fn optional_duration<'de, D>(deserializer: D) -> Result<Option<Duration>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(
        config: &OtlpConfig,
        env: &[(&str, &str)],
    ) -> Result<Option<OtlpSettings>, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        OtlpSettings::resolve(config, |name| env.get(name).cloned())
    }

    #[test]
    fn no_endpoint_means_off() {
        assert_eq!(resolve(&OtlpConfig::default(), &[]).unwrap(), None);
    }

    #[test]
    fn environment_base_endpoint_gets_logs_path() {
        let settings = resolve(
            &OtlpConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "x-scope-orgid=team%20a,Authorization=Bearer%20made-up",
                ),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_SERVICE_NAME", "credwatch-node"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "k8s.cluster.name=prod,deployment.environment=eu",
                ),
            ],
        )
        .unwrap()
        .unwrap();

        assert_eq!(settings.endpoint, "http://127.0.0.1:4318/v1/logs");
        assert_eq!(
            settings.metrics_endpoint,
            "http://127.0.0.1:4318/v1/metrics"
        );
        assert_eq!(settings.metrics_interval, Duration::from_secs(60));
        assert_eq!(settings.protocol, Protocol::HttpProtobuf);
        assert_eq!(
            settings.headers,
            [
                ("authorization".to_owned(), "Bearer made-up".to_owned()),
                ("x-scope-orgid".to_owned(), "team a".to_owned())
            ]
        );
        assert_eq!(settings.timeout, Duration::from_millis(2500));
        assert_eq!(settings.resource["service.name"], "credwatch-node");
        assert_eq!(settings.resource["k8s.cluster.name"], "prod");
    }

    #[test]
    fn file_overrides_environment() {
        let config = OtlpConfig {
            endpoint: Some("http://127.0.0.1:4317".into()),
            protocol: Some(Protocol::Grpc),
            service_name: Some("from-file".into()),
            resource: BTreeMap::from([("k8s.node.name".into(), "${NODE}".into())]),
            ..OtlpConfig::default()
        };
        let settings = resolve(
            &config,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9999"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_SERVICE_NAME", "from-env"),
                ("NODE", "node-7"),
            ],
        )
        .unwrap()
        .unwrap();

        assert_eq!(settings.endpoint, "http://127.0.0.1:4317");
        assert_eq!(settings.protocol, Protocol::Grpc);
        assert_eq!(settings.resource["service.name"], "from-file");
        assert_eq!(settings.resource["k8s.node.name"], "node-7");
    }

    #[test]
    fn signal_endpoint_is_used_as_given() {
        let settings = resolve(
            &OtlpConfig::default(),
            &[(
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "http://127.0.0.1:4318/custom/logs",
            )],
        )
        .unwrap()
        .unwrap();
        assert_eq!(settings.endpoint, "http://127.0.0.1:4318/custom/logs");
        assert_eq!(
            settings.metrics_endpoint,
            "http://127.0.0.1:4318/v1/metrics"
        );
    }

    #[test]
    fn disabled_section_wins_over_environment() {
        let config = OtlpConfig {
            enabled: Some(false),
            ..OtlpConfig::default()
        };
        let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")];
        assert_eq!(resolve(&config, &env).unwrap(), None);
    }

    #[test]
    fn bad_values_name_the_key() {
        let https_only = OtlpConfig {
            endpoint: Some("http://127.0.0.1:4318".into()),
            ca_file: Some("/etc/hostname".into()),
            ..OtlpConfig::default()
        };
        let half_identity = OtlpConfig {
            endpoint: Some("https://127.0.0.1:4318".into()),
            client_certificate_file: Some("/etc/hostname".into()),
            ..OtlpConfig::default()
        };
        let missing_ca = OtlpConfig {
            endpoint: Some("https://127.0.0.1:4318".into()),
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..OtlpConfig::default()
        };
        let enabled_without_endpoint = OtlpConfig {
            enabled: Some(true),
            ..OtlpConfig::default()
        };
        type Case<'a> = (&'a OtlpConfig, &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case<'_>; 11] = [
            (&https_only, &[], "must start with https://"),
            (&half_identity, &[], "needs both"),
            (
                &OtlpConfig::default(),
                &[(
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    "http://user:made-up-secret@127.0.0.1:4318",
                )],
                "credentials do not belong in the URL",
            ),
            (&missing_ca, &[], "otlp.ca_file /nonexistent/ca.pem"),
            (&enabled_without_endpoint, &[], "needs an endpoint"),
            (
                &OtlpConfig::default(),
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4318")],
                "starting with http://",
            ),
            (
                &OtlpConfig::default(),
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ],
                "`grpc` or `http/protobuf`",
            ),
            (
                &OtlpConfig::default(),
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                    ("OTEL_EXPORTER_OTLP_HEADERS", "authorization:made-up-secret"),
                ],
                "name=value",
            ),
            (
                &OtlpConfig::default(),
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                    ("OTEL_EXPORTER_OTLP_HEADERS", "Bearer made-up-secret=="),
                ],
                "entry 1 (not shown)",
            ),
            (
                &OtlpConfig::default(),
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                    ("OTEL_EXPORTER_OTLP_HEADERS", "host=other.example.test"),
                ],
                "sets this header itself",
            ),
            (
                &OtlpConfig::default(),
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:99999")],
                "from 1 to 65535",
            ),
        ];
        for (config, env, expected) in cases {
            let error = resolve(config, env).unwrap_err().to_string();
            assert!(error.contains(expected), "{expected}: {error}");
            assert!(!error.contains("made-up-secret"), "{error}");
        }
    }

    #[test]
    fn debug_output_hides_header_values() {
        let settings = resolve(
            &OtlpConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=made-up-secret"),
            ],
        )
        .unwrap()
        .unwrap();
        let text = format!("{settings:?}");
        assert!(text.contains("authorization"), "{text}");
        assert!(!text.contains("made-up-secret"), "{text}");
    }

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(percent_decode("a%20b%2Cc"), "a b,c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
