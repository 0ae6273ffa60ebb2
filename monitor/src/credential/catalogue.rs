//! The credential catalogue: built-in entries plus the user's, validated, and the matcher that
//! decides whether a normalised path is a credential file.
//!
//! The eBPF programs pre-filter opens with the same patterns (see [`super::kernel_entries`]);
//! this matcher has the final word on the normalised path, so a path the kernel let through
//! only as a candidate is dropped here when it matches nothing.

use std::{
    collections::{HashMap, HashSet},
    os::unix::ffi::OsStrExt as _,
    path::Path,
};

use monitor_common::catalogue::{PATH_LEN, REVERSE_LEN};

use super::normalize::normalize_lexically;
use crate::config::{CatalogueConfig, ConfigError, EntrySpec};

/// The built-in catalogue, embedded at build time.
const BUILTIN_YAML: &str = include_str!("builtin.yaml");

/// Maximum length of a suffix or basename, in bytes. The reverse trie key holds `REVERSE_LEN` bytes, one of
/// which may be the `/` added in front of a basename.
pub const MAX_SUFFIX_LEN: usize = REVERSE_LEN - 2;

/// Maximum length of an exact path or directory, in bytes, leaving room for the NUL or `/` the forward trie
/// stores after it.
pub const MAX_PATH_LEN: usize = PATH_LEN - 2;

/// Kind of pattern a path matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternKind {
    /// An exact path.
    Path,
    /// A directory containing the file.
    Directory,
    /// The end of the path.
    Suffix,
    /// The last component.
    Basename,
}

impl PatternKind {
    /// Returns the name used in events and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Path => "path",
            Self::Directory => "directory",
            Self::Suffix => "suffix",
            Self::Basename => "basename",
        }
    }
}

/// A validated catalogue entry. Patterns are stored normalised (`/var/run` as `/run`).
#[derive(Clone, Debug)]
pub struct Entry {
    /// Unique id.
    pub id: String,
    /// Credential type.
    pub credential_type: String,
    /// Whether the entry comes from the built-in catalogue.
    pub builtin: bool,
    /// Free text from the catalogue, if any.
    pub description: Option<String>,
    /// Exact paths.
    pub paths: Vec<String>,
    /// Directories, each ending in `/`.
    pub directories: Vec<String>,
    /// Path endings.
    pub suffixes: Vec<String>,
    /// Last components.
    pub basenames: Vec<String>,
}

/// A successful match of a path against the catalogue.
#[derive(Clone, Copy, Debug)]
pub struct Match<'a> {
    /// Position of the entry, as stored in the kernel maps.
    pub entry_index: u32,
    /// The entry.
    pub entry: &'a Entry,
    /// Kind of pattern that matched.
    pub kind: PatternKind,
}

/// The validated catalogue and its lookup tables.
#[derive(Debug)]
pub struct Catalogue {
    entries: Vec<Entry>,
    exact: HashMap<Vec<u8>, u32>,
    /// Directories with their trailing `/`, longest first.
    directories: Vec<(Vec<u8>, u32)>,
    /// Suffixes, longest first.
    suffixes: Vec<(Vec<u8>, u32)>,
    basenames: HashMap<Vec<u8>, u32>,
}

impl Catalogue {
    /// Builds the catalogue from the configuration: the built-in entries (unless turned off),
    /// minus the disabled ones, plus the user's entries.
    pub fn from_config(config: &CatalogueConfig) -> Result<Self, ConfigError> {
        let builtin = builtin_specs()?;
        check_disabled_ids(&config.disable, &builtin)?;

        let mut entries = Vec::new();
        let mut seen_ids = HashSet::new();
        if config.builtin {
            for spec in builtin
                .iter()
                .filter(|spec| !config.disable.contains(&spec.id))
            {
                let entry = validate_entry(spec, true, "builtin")?;
                seen_ids.insert(entry.id.clone());
                entries.push(entry);
            }
        }
        for (index, spec) in config.entries.iter().enumerate() {
            let key = format!("catalogue.entries[{index}]");
            let shadows_builtin = config.builtin
                && !config.disable.contains(&spec.id)
                && builtin.iter().any(|builtin| builtin.id == spec.id);
            if shadows_builtin {
                return Err(invalid(
                    &format!("{key}.id"),
                    &spec.id,
                    "it is the id of a built-in entry; choose another id, or list it under \
                     catalogue.disable to replace the built-in entry",
                ));
            }
            let entry = validate_entry(spec, false, &key)?;
            if !seen_ids.insert(entry.id.clone()) {
                return Err(invalid(
                    &format!("{key}.id"),
                    &entry.id,
                    "ids must be unique",
                ));
            }
            entries.push(entry);
        }
        Ok(Self::index(entries))
    }

    /// Builds the catalogue with only the built-in entries.
    pub fn builtin() -> Result<Self, ConfigError> {
        Self::from_config(&CatalogueConfig::default())
    }

    fn index(entries: Vec<Entry>) -> Self {
        let mut catalogue = Self {
            entries,
            exact: HashMap::new(),
            directories: Vec::new(),
            suffixes: Vec::new(),
            basenames: HashMap::new(),
        };
        for (index, entry) in catalogue.entries.iter().enumerate() {
            let index = index as u32;
            for path in &entry.paths {
                catalogue
                    .exact
                    .entry(path.as_bytes().to_vec())
                    .or_insert(index);
            }
            for directory in &entry.directories {
                catalogue
                    .directories
                    .push((directory.as_bytes().to_vec(), index));
            }
            for suffix in &entry.suffixes {
                catalogue.suffixes.push((suffix.as_bytes().to_vec(), index));
            }
            for basename in &entry.basenames {
                catalogue
                    .basenames
                    .entry(basename.as_bytes().to_vec())
                    .or_insert(index);
            }
        }
        // Longest first, and the stable sort keeps entry order among equal lengths.
        catalogue
            .directories
            .sort_by_key(|(pattern, _)| std::cmp::Reverse(pattern.len()));
        catalogue
            .suffixes
            .sort_by_key(|(pattern, _)| std::cmp::Reverse(pattern.len()));
        catalogue
    }

    /// Returns the entries, in kernel-map index order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Returns the entry stored under a kernel-map index.
    pub fn entry(&self, index: u32) -> Option<&Entry> {
        self.entries.get(index as usize)
    }

    /// Matches an absolute, normalised path. Exact paths win over directories, directories over
    /// suffixes and suffixes over basenames; within a kind the longest pattern wins.
    pub fn match_path(&self, path: &Path) -> Option<Match<'_>> {
        let bytes = path.as_os_str().as_bytes();
        let found = self
            .exact
            .get(bytes)
            .map(|&index| (index, PatternKind::Path))
            .or_else(|| self.match_directory(bytes))
            .or_else(|| self.match_suffix(bytes))
            .or_else(|| self.match_basename(bytes))?;
        let (entry_index, kind) = found;
        Some(Match {
            entry_index,
            entry: &self.entries[entry_index as usize],
            kind,
        })
    }

    fn match_directory(&self, path: &[u8]) -> Option<(u32, PatternKind)> {
        self.directories
            .iter()
            .find(|(directory, _)| path.len() > directory.len() && path.starts_with(directory))
            .map(|&(_, index)| (index, PatternKind::Directory))
    }

    fn match_suffix(&self, path: &[u8]) -> Option<(u32, PatternKind)> {
        self.suffixes
            .iter()
            .find(|(suffix, _)| path.len() > suffix.len() && path.ends_with(suffix))
            .map(|&(_, index)| (index, PatternKind::Suffix))
    }

    fn match_basename(&self, path: &[u8]) -> Option<(u32, PatternKind)> {
        let basename = path.rsplit(|&byte| byte == b'/').next()?;
        self.basenames
            .get(basename)
            .map(|&index| (index, PatternKind::Basename))
    }
}

/// Parses the embedded built-in catalogue. The `builtin_catalogue_is_valid` test keeps it
/// valid, so an error here means a defective build.
pub fn builtin_specs() -> Result<Vec<EntrySpec>, ConfigError> {
    serde_yaml::from_str(BUILTIN_YAML).map_err(|error| ConfigError::Parse {
        path: "<built-in catalogue>".into(),
        message: error.to_string(),
    })
}

fn check_disabled_ids(disabled: &[String], builtin: &[EntrySpec]) -> Result<(), ConfigError> {
    for (index, id) in disabled.iter().enumerate() {
        if !builtin.iter().any(|spec| &spec.id == id) {
            let known: Vec<&str> = builtin.iter().map(|spec| spec.id.as_str()).collect();
            return Err(invalid(
                &format!("catalogue.disable[{index}]"),
                id,
                &format!(
                    "it must be the id of a built-in entry: {}",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn validate_entry(spec: &EntrySpec, builtin: bool, key: &str) -> Result<Entry, ConfigError> {
    validate_name(
        &spec.id,
        &format!("{key}.id"),
        "lowercase letters, digits, `-`, `_` and `.`",
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'),
    )?;
    validate_name(
        &spec.credential_type,
        &format!("{key}.type"),
        "lowercase letters, digits and `_`",
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
    )?;
    let no_patterns = spec.paths.is_empty()
        && spec.directories.is_empty()
        && spec.suffixes.is_empty()
        && spec.basenames.is_empty();
    if no_patterns {
        return Err(invalid(
            key,
            &spec.id,
            "an entry needs at least one of paths, directories, suffixes or basenames",
        ));
    }

    let paths = spec
        .paths
        .iter()
        .enumerate()
        .map(|(i, path)| validate_absolute(path, &format!("{key}.paths[{i}]"), false))
        .collect::<Result<_, _>>()?;
    let directories = spec
        .directories
        .iter()
        .enumerate()
        .map(|(i, path)| validate_absolute(path, &format!("{key}.directories[{i}]"), true))
        .collect::<Result<_, _>>()?;
    let suffixes = spec
        .suffixes
        .iter()
        .enumerate()
        .map(|(i, suffix)| validate_suffix(suffix, &format!("{key}.suffixes[{i}]")))
        .collect::<Result<_, _>>()?;
    let basenames = spec
        .basenames
        .iter()
        .enumerate()
        .map(|(i, name)| validate_basename(name, &format!("{key}.basenames[{i}]")))
        .collect::<Result<_, _>>()?;

    Ok(Entry {
        id: spec.id.clone(),
        credential_type: spec.credential_type.clone(),
        builtin,
        description: spec.description.clone(),
        paths,
        directories,
        suffixes,
        basenames,
    })
}

fn validate_name(
    value: &str,
    key: &str,
    allowed: &str,
    is_allowed: impl Fn(char) -> bool,
) -> Result<(), ConfigError> {
    if value.is_empty() || value.len() > 64 || !value.chars().all(is_allowed) {
        return Err(invalid(
            key,
            value,
            &format!("it must be 1 to 64 characters of {allowed}"),
        ));
    }
    Ok(())
}

/// Checks an exact path or directory and returns it normalised; a directory gets a trailing `/`.
fn validate_absolute(value: &str, key: &str, directory: bool) -> Result<String, ConfigError> {
    if !value.starts_with('/') {
        return Err(invalid(
            key,
            value,
            "it must be an absolute path starting with `/`",
        ));
    }
    let normalized = normalize_lexically(Path::new(value));
    let mut normalized = normalized.to_string_lossy().into_owned();
    if normalized == "/" {
        return Err(invalid(
            key,
            value,
            "it must name a file or directory below `/`",
        ));
    }
    if normalized.len() > MAX_PATH_LEN {
        return Err(invalid(
            key,
            value,
            &format!("it must be at most {MAX_PATH_LEN} bytes long, the length the kernel matches"),
        ));
    }
    if directory {
        normalized.push('/');
    }
    Ok(normalized)
}

fn validate_suffix(value: &str, key: &str) -> Result<String, ConfigError> {
    let too_short = value.is_empty() || value == "/";
    if too_short || value.len() > MAX_SUFFIX_LEN || value.contains('\0') {
        return Err(invalid(
            key,
            value,
            &format!("a suffix must be 1 to {MAX_SUFFIX_LEN} bytes, not just `/`, without NUL"),
        ));
    }
    if value.ends_with('/') {
        return Err(invalid(
            key,
            value,
            "a suffix must not end in `/`; use `directories` for a directory",
        ));
    }
    Ok(value.to_owned())
}

fn validate_basename(value: &str, key: &str) -> Result<String, ConfigError> {
    let reserved = value == "." || value == "..";
    if value.is_empty() || reserved || value.contains('/') || value.contains('\0') {
        return Err(invalid(
            key,
            value,
            "a basename must be one path component: not empty, `.` or `..`, without `/` or NUL",
        ));
    }
    if value.len() > MAX_SUFFIX_LEN - 1 {
        return Err(invalid(
            key,
            value,
            &format!("a basename must be at most {} bytes", MAX_SUFFIX_LEN - 1),
        ));
    }
    Ok(value.to_owned())
}

fn invalid(key: &str, value: &str, allowed: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_owned(),
        allowed: allowed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn catalogue(yaml: &str) -> Result<Catalogue, ConfigError> {
        let config = Config::parse(yaml, Path::new("test.yaml"))?;
        Catalogue::from_config(&config.catalogue)
    }

    fn matched_type(catalogue: &Catalogue, path: &str) -> Option<String> {
        catalogue
            .match_path(Path::new(path))
            .map(|found| found.entry.credential_type.clone())
    }

    #[test]
    fn builtin_catalogue_is_valid() {
        let catalogue = Catalogue::builtin().unwrap();
        assert!(catalogue.entries().len() >= 15);
    }

    #[test]
    fn builtin_matches_common_credentials() {
        let catalogue = Catalogue::builtin().unwrap();
        let cases = [
            ("/root/.aws/credentials", "aws_credentials"),
            ("/home/alice/.aws/credentials", "aws_credentials"),
            (
                "/run/secrets/kubernetes.io/serviceaccount/token",
                "kubernetes_service_account_token",
            ),
            (
                "/run/secrets/tokens/vault",
                "kubernetes_service_account_token",
            ),
            ("/home/bob/.ssh/id_ed25519", "ssh_private_key"),
            ("/etc/ssh/ssh_host_ed25519_key", "ssh_host_key"),
            ("/home/bob/.kube/config", "kubeconfig"),
            ("/etc/kubernetes/admin.conf", "kubeconfig"),
            ("/etc/kubernetes/pki/apiserver.key", "kubernetes_pki"),
            ("/srv/app/.env", "dotenv"),
            ("/root/.docker/config.json", "docker_config"),
            (
                "/home/c/.config/gcloud/application_default_credentials.json",
                "gcp_credentials",
            ),
            ("/home/c/.git-credentials", "git_credentials"),
            ("/home/c/.vault-token", "vault_token"),
            ("/home/c/.netrc", "netrc"),
            ("/opt/tls/server.key", "tls_private_key"),
        ];
        for (path, expected) in cases {
            assert_eq!(
                matched_type(&catalogue, path).as_deref(),
                Some(expected),
                "{path}"
            );
        }
    }

    #[test]
    fn builtin_ignores_ordinary_files() {
        let catalogue = Catalogue::builtin().unwrap();
        for path in [
            "/etc/passwd",
            "/home/a/.bashrc",
            "/etc/ssl/certs/ca-certificates.crt",
            "/home/a/.ssh/id_ed25519.pub",
            "/home/a/.git/config",
            "/tmp/token",
        ] {
            assert_eq!(matched_type(&catalogue, path), None, "{path}");
        }
    }

    #[test]
    fn exact_path_wins_over_suffix() {
        let catalogue = catalogue(
            "catalogue:\n  builtin: false\n  entries:\n    - {id: a, type: by_suffix, suffixes: [/x/token]}\n    - {id: b, type: by_path, paths: [/srv/x/token]}\n",
        )
        .unwrap();
        assert_eq!(
            matched_type(&catalogue, "/srv/x/token").as_deref(),
            Some("by_path")
        );
        assert_eq!(
            matched_type(&catalogue, "/opt/x/token").as_deref(),
            Some("by_suffix")
        );
    }

    #[test]
    fn longest_directory_wins() {
        let catalogue = catalogue(
            "catalogue:\n  builtin: false\n  entries:\n    - {id: a, type: outer, directories: [/srv]}\n    - {id: b, type: inner, directories: [/srv/inner/]}\n",
        )
        .unwrap();
        assert_eq!(
            matched_type(&catalogue, "/srv/inner/key").as_deref(),
            Some("inner")
        );
        assert_eq!(
            matched_type(&catalogue, "/srv/key").as_deref(),
            Some("outer")
        );
        assert_eq!(
            matched_type(&catalogue, "/srv"),
            None,
            "the directory itself is no file in it"
        );
        assert_eq!(matched_type(&catalogue, "/srvx/key"), None);
    }

    #[test]
    fn var_run_patterns_are_stored_under_run() {
        let catalogue = Catalogue::builtin().unwrap();
        let token = catalogue
            .entries()
            .iter()
            .find(|entry| entry.id == "kubernetes-service-account-token")
            .unwrap();
        assert_eq!(
            token.paths,
            ["/run/secrets/kubernetes.io/serviceaccount/token"]
        );
    }

    #[test]
    fn disable_removes_builtin_entry() {
        let catalogue = catalogue("catalogue:\n  disable: [dotenv]\n").unwrap();
        assert_eq!(matched_type(&catalogue, "/srv/app/.env"), None);
        assert!(matched_type(&catalogue, "/root/.aws/credentials").is_some());
    }

    #[test]
    fn disable_of_unknown_id_lists_known_ids() {
        let error = catalogue("catalogue:\n  disable: [dotenvv]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("catalogue.disable[0]"), "{error}");
        assert!(error.contains("dotenvv"), "{error}");
        assert!(
            error.contains("dotenv,") || error.contains("dotenv"),
            "{error}"
        );
    }

    #[test]
    fn user_entry_reusing_builtin_id_is_rejected() {
        let error =
            catalogue("catalogue:\n  entries:\n    - {id: dotenv, type: x, basenames: [.envrc]}\n")
                .unwrap_err()
                .to_string();
        assert!(error.contains("catalogue.entries[0].id"), "{error}");
        assert!(error.contains("catalogue.disable"), "{error}");
    }

    #[test]
    fn disabled_builtin_can_be_replaced() {
        let catalogue = catalogue(
            "catalogue:\n  disable: [dotenv]\n  entries:\n    - {id: dotenv, type: dotenv, basenames: [.envrc]}\n",
        )
        .unwrap();
        assert_eq!(
            matched_type(&catalogue, "/srv/.envrc").as_deref(),
            Some("dotenv")
        );
        assert_eq!(matched_type(&catalogue, "/srv/.env"), None);
    }

    #[test]
    fn invalid_patterns_name_key_and_value() {
        let cases = [
            (
                "{id: a, type: t, paths: [relative/path]}",
                "catalogue.entries[0].paths[0]",
                "absolute",
            ),
            (
                "{id: a, type: t, directories: [/]}",
                "catalogue.entries[0].directories[0]",
                "below",
            ),
            (
                "{id: a, type: t, suffixes: [/]}",
                "catalogue.entries[0].suffixes[0]",
                "suffix",
            ),
            (
                "{id: a, type: t, suffixes: [/dir/]}",
                "catalogue.entries[0].suffixes[0]",
                "directories",
            ),
            (
                "{id: a, type: t, basenames: [a/b]}",
                "catalogue.entries[0].basenames[0]",
                "component",
            ),
            (
                "{id: a, type: t, basenames: ['..']}",
                "catalogue.entries[0].basenames[0]",
                "component",
            ),
            (
                "{id: A, type: t, basenames: [x]}",
                "catalogue.entries[0].id",
                "lowercase",
            ),
            (
                "{id: a, type: T-1, basenames: [x]}",
                "catalogue.entries[0].type",
                "lowercase",
            ),
            ("{id: a, type: t}", "catalogue.entries[0]", "at least one"),
        ];
        for (entry, key, hint) in cases {
            let yaml = format!("catalogue:\n  builtin: false\n  entries:\n    - {entry}\n");
            let error = catalogue(&yaml).unwrap_err().to_string();
            assert!(error.contains(key), "{entry}: {error}");
            assert!(error.contains(hint), "{entry}: {error}");
        }
    }

    #[test]
    fn too_long_suffix_is_rejected() {
        let long = "x".repeat(MAX_SUFFIX_LEN + 1);
        let yaml = format!(
            "catalogue:\n  builtin: false\n  entries:\n    - {{id: a, type: t, suffixes: [{long}]}}\n"
        );
        let error = catalogue(&yaml).unwrap_err().to_string();
        assert!(
            error.contains("at most") || error.contains("1 to"),
            "{error}"
        );
    }

    #[test]
    fn duplicate_user_ids_are_rejected() {
        let error = catalogue(
            "catalogue:\n  builtin: false\n  entries:\n    - {id: a, type: t, basenames: [x]}\n    - {id: a, type: t, basenames: [y]}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("unique"), "{error}");
    }
}
