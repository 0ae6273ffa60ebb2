//! The YAML configuration file: its schema, defaults and validation.
//!
//! Every key is optional; an empty file or no `--config` at all gives the embedded defaults.
//! Unknown keys are rejected so that a typo never silently turns a setting off.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use thiserror::Error;

/// The whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Which credential files to watch.
    pub catalogue: CatalogueConfig,
    /// Health reporting.
    pub health: HealthConfig,
    /// Outbound connections.
    pub network: NetworkConfig,
    /// TLS handshakes through library hooks.
    pub tls: TlsConfig,
    /// Credential identities.
    pub credentials: CredentialsConfig,
    /// Kubernetes workload identity.
    pub kubernetes: KubernetesConfig,
    /// Detection rules and their findings.
    pub detection: DetectionConfig,
    /// Export to an OpenTelemetry Collector.
    pub otlp: crate::export::otlp::OtlpConfig,
}

/// The `kubernetes` section.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Location of the host's file system: `/` on a host agent, the mount of the host's root in
    /// a DaemonSet pod. The kubelet's pod directories are read below it.
    pub host_root: PathBuf,
    /// SPIFFE trust domain of pod workload ids.
    pub trust_domain: String,
    /// `host:port` of the kubelet, whose `/pods` gives labels, owners, container names and
    /// images. Not read when unset.
    pub kubelet_address: Option<String>,
    /// How often the kubelet's pod list is fetched besides when an unknown pod appears.
    #[serde(deserialize_with = "deserialize_duration")]
    pub kubelet_refresh: Duration,
    /// Reach the kubelet over TLS with a bearer token (its authenticated port, usually 10250)
    /// instead of plain HTTP (its read-only port, usually 10255).
    pub kubelet_tls: bool,
    /// File with the bearer token sent over TLS, read again for every request.
    pub kubelet_token_file: PathBuf,
    /// PEM file with the CA that signed the kubelet's serving certificate.
    pub kubelet_ca_file: PathBuf,
    /// Name the kubelet's certificate must carry; the host of `kubelet_address` when unset.
    pub kubelet_server_name: Option<String>,
}

/// Directory in which Kubernetes mounts a pod's service-account token and cluster CA.
/// Seconds in a day.
const DAY: u64 = 86_400;
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            host_root: PathBuf::from("/"),
            trust_domain: "cluster.local".to_owned(),
            kubelet_address: None,
            kubelet_refresh: Duration::from_secs(60),
            kubelet_tls: false,
            kubelet_token_file: Path::new(SERVICE_ACCOUNT_DIR).join("token"),
            kubelet_ca_file: Path::new(SERVICE_ACCOUNT_DIR).join("ca.crt"),
            kubelet_server_name: None,
        }
    }
}

impl KubernetesConfig {
    /// Replaces `${NAME}` in the kubelet's address and server name with the environment
    /// variable `NAME`, so that a DaemonSet can pass the node's address from the downward API.
    fn expand_environment(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for (key, value) in [
            ("kubernetes.kubelet_address", &mut self.kubelet_address),
            (
                "kubernetes.kubelet_server_name",
                &mut self.kubelet_server_name,
            ),
        ] {
            if let Some(text) = value {
                *text = expand(key, text, &lookup)?;
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let domain = &self.trust_domain;
        let valid = !domain.is_empty()
            && domain.len() <= 255
            && domain.bytes().all(|byte| {
                byte.is_ascii_lowercase()
                    || byte.is_ascii_digit()
                    || matches!(byte, b'.' | b'-' | b'_')
            });
        if self.kubelet_refresh < Duration::from_secs(1) {
            return Err(ConfigError::Invalid {
                key: "kubernetes.kubelet_refresh".into(),
                value: format!("{:?}", self.kubelet_refresh),
                allowed: "it must be at least 1s, so the kubelet is not polled in a loop; 60s \
                          fetches the pod list once a minute"
                    .into(),
            });
        }
        if !self.host_root.is_absolute() {
            return Err(ConfigError::Invalid {
                key: "kubernetes.host_root".into(),
                value: self.host_root.display().to_string(),
                allowed: "it must be an absolute path, such as / on a host or /host where a \
                          DaemonSet mounts the host's root"
                    .into(),
            });
        }
        if self.kubelet_tls && self.kubelet_address.is_none() {
            return Err(ConfigError::Invalid {
                key: "kubernetes.kubelet_tls".into(),
                value: "true".into(),
                allowed: "it needs kubernetes.kubelet_address, such as ${NODE_IP}:10250; without \
                          an address the kubelet is not read"
                    .into(),
            });
        }
        if let Some(address) = &self.kubelet_address {
            let resolved = std::net::ToSocketAddrs::to_socket_addrs(address.as_str())
                .map(|mut addresses| addresses.next().is_some_and(|found| found.port() != 0));
            if !matches!(resolved, Ok(true)) {
                return Err(ConfigError::Invalid {
                    key: "kubernetes.kubelet_address".into(),
                    value: address.clone(),
                    allowed: "it must be HOST:PORT of the kubelet and resolve, such as \
                              127.0.0.1:10255 (read-only port) or ${NODE_IP}:10250 with \
                              kubelet_tls: true"
                        .into(),
                });
            }
            if self.kubelet_tls {
                crate::workload::kubelet_client::Transport::from_config(self, address)
                    .map_err(ConfigError::File)?;
            }
        }
        if !valid {
            return Err(ConfigError::Invalid {
                key: "kubernetes.trust_domain".into(),
                value: domain.clone(),
                allowed: "a trust domain is 1 to 255 lowercase letters, digits, `.`, `-` and `_`, such as `cluster.local`".into(),
            });
        }
        Ok(())
    }
}

/// The `detection` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionConfig {
    /// Whether the rules run.
    pub enabled: bool,
    /// A finding of one type, credential and consumer is written once within this time.
    #[serde(deserialize_with = "deserialize_duration")]
    pub dedup_window: Duration,
    /// Findings written per minute at most; the rest are counted.
    pub max_findings_per_minute: u32,
    /// Raise `expired_use` for a credential read after its expiry.
    pub expired_use: bool,
    /// How long after its expiry a read still raises nothing, for clock skew between hosts.
    #[serde(deserialize_with = "deserialize_duration")]
    pub expired_grace: Duration,
    /// Raise `interactive_use` for a read by a process run from a terminal.
    pub interactive_use: bool,
    /// Distinct credentials one process reads within `sweep_window` that raise
    /// `credential_sweep`; 0 turns the rule off.
    pub sweep_distinct: u32,
    /// The window of `sweep_distinct`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub sweep_window: Duration,
    /// File of revoked credential ids and native ids, one per line; a read of one raises
    /// `revoked_use`. Read again when it changes.
    pub revocation_file: Option<PathBuf>,
    /// Policy file of credential selectors and their allowed consumers; a read by another
    /// consumer raises `policy_violation`. Read again when it changes.
    pub policy_file: Option<PathBuf>,
    /// A credential used again after this long without use raises `dormant_reuse`; `0s` turns
    /// the rule off.
    #[serde(deserialize_with = "deserialize_duration")]
    pub dormant_after: Duration,
    /// How long after its first sighting a credential's consumers and destinations are learnt;
    /// then its baseline is frozen.
    #[serde(deserialize_with = "deserialize_duration")]
    pub learning_window: Duration,
    /// Learning windows of single credential types, such as `kubernetes_service_account_token`.
    #[serde(deserialize_with = "deserialize_duration_map")]
    pub learning_windows: BTreeMap<String, Duration>,
    /// Raise `new_consumer` for a consumer outside a frozen baseline.
    pub new_consumer: bool,
    /// Raise `new_destination` for a server outside a frozen baseline.
    pub new_destination: bool,
    /// Distinct workloads of one credential that raise `shared_credential`; 0 turns the rule
    /// off.
    pub shared_workloads: u32,
    /// Raise `foreign_workload` for a token bound to one pod and read from another.
    pub foreign_workload: bool,
    /// Raise `orphaned_use` for a credential whose owner (pod or systemd unit) is gone.
    pub orphaned_use: bool,
    /// A certificate in use that expires within this time raises `certificate_expiring`; `0s`
    /// turns the rule off.
    #[serde(deserialize_with = "deserialize_duration")]
    pub certificate_warning: Duration,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dedup_window: Duration::from_secs(3_600),
            max_findings_per_minute: 100,
            expired_use: true,
            expired_grace: Duration::from_secs(60),
            interactive_use: true,
            sweep_distinct: 10,
            sweep_window: Duration::from_secs(60),
            revocation_file: None,
            policy_file: None,
            dormant_after: Duration::from_secs(30 * DAY),
            learning_window: Duration::from_secs(DAY),
            learning_windows: BTreeMap::new(),
            new_consumer: true,
            new_destination: true,
            shared_workloads: 2,
            foreign_workload: true,
            orphaned_use: true,
            certificate_warning: Duration::from_secs(30 * DAY),
        }
    }
}

impl DetectionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_findings_per_minute == 0 {
            return Err(ConfigError::Invalid {
                key: "detection.max_findings_per_minute".into(),
                value: "0".into(),
                allowed: "it must be at least 1; set detection.enabled to false to turn the \
                          rules off"
                    .into(),
            });
        }
        if self.sweep_distinct == 1 {
            return Err(ConfigError::Invalid {
                key: "detection.sweep_distinct".into(),
                value: "1".into(),
                allowed: "it must be 0 (off) or at least 2, because one credential is no sweep"
                    .into(),
            });
        }
        if let Some(path) = &self.revocation_file {
            crate::detect::Revocations::load(path).map_err(ConfigError::File)?;
        }
        if let Some(path) = &self.policy_file {
            crate::detect::Policy::load(path).map_err(ConfigError::File)?;
        }
        if self.shared_workloads == 1 {
            return Err(ConfigError::Invalid {
                key: "detection.shared_workloads".into(),
                value: "1".into(),
                allowed: "it must be 0 (off) or at least 2, because one workload shares nothing"
                    .into(),
            });
        }
        let windows = std::iter::once(("learning_window".to_owned(), self.learning_window)).chain(
            self.learning_windows
                .iter()
                .map(|(kind, window)| (format!("learning_windows.{kind}"), *window)),
        );
        for (key, window) in windows {
            if window.is_zero() {
                return Err(ConfigError::Invalid {
                    key: format!("detection.{key}"),
                    value: "0s".into(),
                    allowed: "it must be at least 1s, such as 24h; set detection.new_consumer and \
                              detection.new_destination to false to turn baselines off"
                        .into(),
                });
            }
        }
        if self.sweep_distinct > 0 && self.sweep_window.is_zero() {
            return Err(ConfigError::Invalid {
                key: "detection.sweep_window".into(),
                value: "0s".into(),
                allowed: "it must be at least 1s, such as 60s".into(),
            });
        }
        Ok(())
    }
}

/// The `credentials` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialsConfig {
    /// File with a secret shared by every host of a fleet, so that one credential gets the same
    /// id everywhere. Without it each host uses its own random install key.
    pub fleet_key_file: Option<PathBuf>,
}

/// The `network` section.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Whether outbound TCP connections are reported.
    pub enabled: bool,
    /// A process's further connects to one peer within this time after a reported one are
    /// counted, not reported. `0s` reports every connect.
    #[serde(deserialize_with = "deserialize_duration")]
    pub dedup_window: Duration,
    /// Peer networks whose connects are counted, not reported, in CIDR notation.
    pub exclude_networks: Vec<String>,
    /// Peer ports whose connects are counted, not reported.
    pub exclude_ports: Vec<u16>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dedup_window: Duration::from_secs(60),
            exclude_networks: Vec::new(),
            exclude_ports: Vec::new(),
        }
    }
}

/// The `tls` section.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Whether TLS libraries are hooked.
    pub enabled: bool,
    /// How long after a new process starts its memory map is read for TLS libraries.
    #[serde(deserialize_with = "deserialize_duration")]
    pub inspect_delay: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            inspect_delay: Duration::from_millis(200),
        }
    }
}

/// The `catalogue` section.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogueConfig {
    /// Whether the built-in entries are loaded.
    pub builtin: bool,
    /// Ids of built-in entries to leave out.
    pub disable: Vec<String>,
    /// Entries added to the built-in ones.
    pub entries: Vec<EntrySpec>,
}

impl Default for CatalogueConfig {
    fn default() -> Self {
        Self {
            builtin: true,
            disable: Vec::new(),
            entries: Vec::new(),
        }
    }
}

/// One catalogue entry as written in YAML, in the config file or the built-in catalogue.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntrySpec {
    /// Unique name of the entry, reported as `credwatch.catalogue.entry`.
    pub id: String,
    /// Credential type, reported as `credwatch.credential.type`.
    #[serde(rename = "type")]
    pub credential_type: String,
    /// Free text for people reading the catalogue.
    #[serde(default)]
    pub description: Option<String>,
    /// Exact absolute paths.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Absolute directories; every file below one matches.
    #[serde(default)]
    pub directories: Vec<String>,
    /// Path endings, such as `/.aws/credentials` or `.key`.
    #[serde(default)]
    pub suffixes: Vec<String>,
    /// Last path components, such as `id_rsa`.
    #[serde(default)]
    pub basenames: Vec<String>,
}

/// The `health` section.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// How often the daemon checks the drop counters and reports new drops, as a duration
    /// such as `1s`, `500ms` or `2m`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub drop_check_interval: Duration,
    /// How often a health event with all counters is written; `0s` turns the periodic report
    /// off (SIGUSR1 still requests one).
    #[serde(deserialize_with = "deserialize_duration")]
    pub report_interval: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            drop_check_interval: Duration::from_secs(1),
            report_interval: Duration::from_secs(300),
        }
    }
}

/// A configuration that could not be read or is invalid.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read the configuration file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML for this schema. The message names the key and location.
    #[error("invalid configuration file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid configuration: `{key}` is {value:?}, but {allowed}")]
    Invalid {
        /// The key, in dotted form with list indices (`catalogue.entries[2].suffixes[0]`).
        key: String,
        /// The offending value.
        value: String,
        /// What the key accepts.
        allowed: String,
    },
    /// A file the configuration names cannot be used; the message names the key, the file and
    /// the fix.
    #[error("invalid configuration: {0}")]
    File(String),
}

impl Config {
    /// Reads and parses a configuration file. Validation of the catalogue entries happens when
    /// the catalogue is built from it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let mut config: Self = serde_yaml::from_str(text).map_err(|error| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: error.to_string(),
        })?;
        config
            .kubernetes
            .expand_environment(|name| std::env::var(name).ok())?;
        config.health.validate()?;
        config.network.validate()?;
        config.kubernetes.validate()?;
        config.detection.validate()?;
        Ok(config)
    }
}

/// Replaces each `${NAME}` in `text` with the variable's value.
pub(crate) fn expand(
    key: &str,
    text: &str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let invalid = |allowed: String| ConfigError::Invalid {
        key: key.to_owned(),
        value: text.to_owned(),
        allowed,
    };
    let mut expanded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        expanded.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| invalid("`${` must be closed by `}`, as in ${NODE_IP}:10250".into()))?;
        let name = &after[..end];
        let valid = name
            .chars()
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(invalid(format!(
                "{name:?} is not an environment variable name (letters, digits and `_`)"
            )));
        }
        let value = lookup(name).ok_or_else(|| {
            invalid(format!(
                "the environment variable {name} is not set; in a DaemonSet set it from the \
                 downward API (fieldRef status.hostIP)"
            ))
        })?;
        expanded.push_str(&value);
        rest = &after[end + 1..];
    }
    expanded.push_str(rest);
    Ok(expanded)
}

impl HealthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.drop_check_interval.is_zero() {
            return Err(ConfigError::Invalid {
                key: "health.drop_check_interval".into(),
                value: "0s".into(),
                allowed: "it must be at least 1ms, because drops are never left unreported".into(),
            });
        }
        Ok(())
    }
}

/// Maximum number of `network.exclude_networks` entries: the size of the kernel's trie.
pub const MAX_EXCLUDED_NETWORKS: usize = 1024;

impl NetworkConfig {
    /// Parses `exclude_networks`; every entry was checked by [`Config::parse`]. Duplicates
    /// are dropped.
    pub fn excluded_networks(&self) -> Vec<crate::network::cidr::Cidr> {
        let mut networks: Vec<crate::network::cidr::Cidr> = Vec::new();
        for network in self
            .exclude_networks
            .iter()
            .filter_map(|text| text.parse().ok())
        {
            if !networks.contains(&network) {
                networks.push(network);
            }
        }
        networks
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.exclude_networks.len() > MAX_EXCLUDED_NETWORKS {
            return Err(ConfigError::Invalid {
                key: "network.exclude_networks".into(),
                value: format!("a list of {} networks", self.exclude_networks.len()),
                allowed: format!(
                    "at most {MAX_EXCLUDED_NETWORKS} fit in the kernel map; merge neighbouring networks into wider ones"
                ),
            });
        }
        for (index, text) in self.exclude_networks.iter().enumerate() {
            if let Err(error) = text.parse::<crate::network::cidr::Cidr>() {
                return Err(ConfigError::Invalid {
                    key: format!("network.exclude_networks[{index}]"),
                    value: text.clone(),
                    allowed: error,
                });
            }
        }
        if let Some(index) = self.exclude_ports.iter().position(|port| *port == 0) {
            return Err(ConfigError::Invalid {
                key: format!("network.exclude_ports[{index}]"),
                value: "0".into(),
                allowed: "a port must be between 1 and 65535".into(),
            });
        }
        Ok(())
    }
}

fn deserialize_duration<'de, D>(deserializer: D) -> Result<Duration, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

fn deserialize_duration_map<'de, D>(deserializer: D) -> Result<BTreeMap<String, Duration>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let texts = BTreeMap::<String, String>::deserialize(deserializer)?;
    texts
        .into_iter()
        .map(|(key, text)| {
            parse_duration(&text)
                .map(|duration| (key.clone(), duration))
                .map_err(|error| serde::de::Error::custom(format!("{key}: {error}")))
        })
        .collect()
}

/// Parses a duration written as a whole number and a unit: `ms`, `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
        format!(
            "duration {text:?} has no unit; write for example `30s`, `500ms`, `5m`, `1h` or `30d`"
        )
    })?;
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("duration {text:?} must start with a whole number, as in `30s`"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(value),
        "s" => Duration::from_secs(value),
        "m" => Duration::from_secs(value.saturating_mul(60)),
        "h" => Duration::from_secs(value.saturating_mul(3600)),
        "d" => Duration::from_secs(value.saturating_mul(DAY)),
        _ => {
            return Err(format!(
                "duration {text:?} has unknown unit {unit:?}; use `ms`, `s`, `m`, `h` or `d`"
            ));
        }
    };
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.yaml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse("").unwrap();
        assert!(config.catalogue.builtin);
        assert_eq!(config.health.drop_check_interval, Duration::from_secs(1));
    }

    #[test]
    fn trust_domain_is_checked() {
        let config = parse("kubernetes:\n  trust_domain: prod.example.test\n").unwrap();
        assert_eq!(config.kubernetes.trust_domain, "prod.example.test");
        assert_eq!(config.kubernetes.host_root, PathBuf::from("/"));
        for (key, bad) in [
            ("kubelet_refresh", "500ms"),
            ("kubelet_address", "no-port"),
            ("kubelet_address", "\"127.0.0.1:notaport\""),
        ] {
            let error = parse(&format!("kubernetes:\n  {key}: {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(&format!("kubernetes.{key}")),
                "{bad}: {error}"
            );
        }
        let local = parse("kubernetes:\n  kubelet_address: 127.0.0.1:10255\n").unwrap();
        assert_eq!(
            local.kubernetes.kubelet_address.as_deref(),
            Some("127.0.0.1:10255")
        );
        for bad in ["\"\"", "Prod", "a/b", "spiffe://x"] {
            let error = parse(&format!("kubernetes:\n  trust_domain: {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(error.contains("kubernetes.trust_domain"), "{bad}: {error}");
        }
    }

    #[test]
    fn kubelet_tls_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "kubernetes:\n  kubelet_address: 127.0.0.1:10250\n  kubelet_tls: true\n  \
             kubelet_ca_file: {}\n",
            dir.path().join("missing-ca.crt").display()
        );
        let error = parse(&text).unwrap_err().to_string();
        assert!(error.contains("kubernetes.kubelet_ca_file"), "{error}");
        assert!(error.contains("missing-ca.crt"), "{error}");

        let error = parse("kubernetes:\n  kubelet_tls: true\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("kubernetes.kubelet_address"), "{error}");
        for bad in ["\"\"", "host", "./host"] {
            let error = parse(&format!("kubernetes:\n  host_root: {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(error.contains("kubernetes.host_root"), "{bad}: {error}");
        }
        let error = parse("kubernetes:\n  kubelet_address: 127.0.0.1:0\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("kubernetes.kubelet_address"), "{error}");
        let defaults = parse("kubernetes:\n  kubelet_refresh: 30s\n").unwrap();
        assert!(
            defaults
                .kubernetes
                .kubelet_token_file
                .ends_with("serviceaccount/token")
        );
        assert!(
            defaults
                .kubernetes
                .kubelet_ca_file
                .ends_with("serviceaccount/ca.crt")
        );
    }

    #[test]
    fn environment_variables_expand_in_kubelet_settings() {
        let lookup = |name: &str| (name == "NODE_IP").then(|| "127.0.0.1".to_owned());
        let mut settings = KubernetesConfig {
            kubelet_address: Some("${NODE_IP}:10250".into()),
            kubelet_server_name: Some("node-${NODE_IP}".into()),
            ..KubernetesConfig::default()
        };
        settings.expand_environment(lookup).unwrap();
        assert_eq!(settings.kubelet_address.as_deref(), Some("127.0.0.1:10250"));
        assert_eq!(
            settings.kubelet_server_name.as_deref(),
            Some("node-127.0.0.1")
        );

        for (text, expected) in [
            ("${MISSING}:10250", "MISSING is not set"),
            ("${NODE_IP:10250", "must be closed"),
            ("${1X}:10250", "not an environment variable name"),
        ] {
            let mut settings = KubernetesConfig {
                kubelet_address: Some(text.into()),
                ..KubernetesConfig::default()
            };
            let error = settings.expand_environment(lookup).unwrap_err().to_string();
            assert!(error.contains("kubernetes.kubelet_address"), "{error}");
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn detection_settings_are_checked() {
        let defaults = parse("").unwrap().detection;
        assert!(defaults.enabled);
        assert_eq!(defaults.sweep_distinct, 10);
        let tuned = parse("detection:\n  sweep_distinct: 5\n  sweep_window: 10s\n").unwrap();
        assert_eq!(tuned.detection.sweep_window, Duration::from_secs(10));
        for (key, value) in [
            ("max_findings_per_minute", "0"),
            ("sweep_distinct", "1"),
            ("sweep_window", "0s"),
        ] {
            let error = parse(&format!("detection:\n  {key}: {value}\n"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(&format!("detection.{key}")), "{error}");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let error = parse("catalogue:\n  bultin: false\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("bultin"), "{error}");
        assert!(
            error.contains("builtin"),
            "message should list the allowed keys: {error}"
        );
        assert!(error.contains("test.yaml"), "{error}");
    }

    #[test]
    fn wrong_type_is_reported_with_location() {
        let error = parse("catalogue:\n  builtin: maybe\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn network_and_tls_defaults() {
        let config = parse("").unwrap();
        assert!(config.network.enabled);
        assert_eq!(config.network.dedup_window, Duration::from_secs(60));
        assert!(config.network.exclude_networks.is_empty());
        assert!(config.tls.enabled);
        assert_eq!(config.tls.inspect_delay, Duration::from_millis(200));
    }

    #[test]
    fn network_exclusions_parse() {
        let config = parse(
            "network:\n  dedup_window: 0s\n  exclude_networks: [10.0.0.0/8, \"fd00::/8\"]\n  exclude_ports: [53, 443]\n",
        )
        .unwrap();
        assert!(config.network.dedup_window.is_zero());
        let networks = config.network.excluded_networks();
        assert_eq!(networks.len(), 2);
        assert_eq!(networks[0].to_string(), "10.0.0.0/8");
        assert_eq!(config.network.exclude_ports, vec![53, 443]);
    }

    #[test]
    fn network_bad_cidr_names_key_and_fix() {
        let error = parse("network:\n  exclude_networks: [192.168.0.0/16, 10.1.2.3/8]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("network.exclude_networks[1]"), "{error}");
        assert!(error.contains("10.1.2.3/8"), "{error}");
        assert!(error.contains("`10.0.0.0/8`"), "{error}");
    }

    #[test]
    fn network_exclusion_list_is_bounded() {
        let entries: Vec<String> = (0..1025)
            .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
            .collect();
        let text = format!("network:\n  exclude_networks: [{}]\n", entries.join(", "));
        let error = parse(&text).unwrap_err().to_string();
        assert!(error.contains("network.exclude_networks"), "{error}");
        assert!(error.contains("1024"), "{error}");
        let config = parse("network:\n  exclude_networks: [10.0.0.0/8, 10.0.0.0/8]\n").unwrap();
        assert_eq!(config.network.excluded_networks().len(), 1);
    }

    #[test]
    fn network_port_zero_is_rejected() {
        let error = parse("network:\n  exclude_ports: [0]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("network.exclude_ports[0]"), "{error}");
        let error = parse("network:\n  exclude_ports: [70000]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("70000"), "{error}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn bad_duration_names_value_and_units() {
        let error = parse("health:\n  report_interval: 5 minutes\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("5 minutes"), "{error}");
        assert!(error.contains("`ms`, `s`, `m`, `h` or `d`"), "{error}");
    }

    #[test]
    fn days_and_learning_windows_parse() {
        let config =
            parse("detection:\n  dormant_after: 45d\n  learning_windows:\n    kubeconfig: 2h\n")
                .unwrap();
        assert_eq!(
            config.detection.dormant_after,
            Duration::from_secs(45 * 86_400)
        );
        assert_eq!(
            config.detection.learning_windows["kubeconfig"],
            Duration::from_secs(7_200)
        );
    }

    #[test]
    fn bad_detection_values_are_rejected() {
        for (text, expected) in [
            (
                "detection:\n  shared_workloads: 1\n",
                "detection.shared_workloads",
            ),
            (
                "detection:\n  learning_window: 0s\n",
                "detection.learning_window",
            ),
            (
                "detection:\n  learning_windows:\n    kubeconfig: 0s\n",
                "detection.learning_windows.kubeconfig",
            ),
            (
                "detection:\n  learning_windows:\n    kubeconfig: soon\n",
                "kubeconfig",
            ),
            (
                "detection:\n  policy_file: /nonexistent/credwatch-policy.yaml\n",
                "/nonexistent/credwatch-policy.yaml",
            ),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn zero_drop_check_interval_is_rejected() {
        let error = parse("health:\n  drop_check_interval: 0s\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("health.drop_check_interval"), "{error}");
    }
}
