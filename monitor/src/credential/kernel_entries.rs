//! Turns the catalogue into the keys of the two kernel tries (`FORWARD_MATCH`,
//! `REVERSE_MATCH`); the layout of both is described in `monitor_common::catalogue`.
//!
//! Besides the patterns themselves, the reverse trie gets a *candidate* entry for the last
//! component of every exact path and of every suffix that contains a `/`. A process that opens
//! `token` after `chdir` into the service-account directory passes only that name; the kernel
//! cannot resolve it cheaply, so it sends such opens as candidates and the daemon resolves and
//! matches them in full.

use std::collections::BTreeMap;

use monitor_common::catalogue::{
    FILTER_PREFIX, FILTER_SUFFIX, MATCH_CANDIDATE, MATCH_DEFINITE, MatchFilter, MatchValue,
    PREFIX_FILTER_LEN, SUFFIX_FILTER_LEN, filter_insert,
};

use super::catalogue::Catalogue;

/// One trie entry: the key bytes (the prefix length is all of them) and the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrieEntry {
    /// Key data; the prefix length in bits is `bytes.len() * 8`.
    pub bytes: Vec<u8>,
    /// Value stored under the key.
    pub value: MatchValue,
}

/// Entries of both tries.
#[derive(Debug, Default)]
pub struct KernelEntries {
    /// Entries of `FORWARD_MATCH`.
    pub forward: Vec<TrieEntry>,
    /// Entries of `REVERSE_MATCH`.
    pub reverse: Vec<TrieEntry>,
}

/// Builds the trie entries for a catalogue. When two patterns produce the same key, the first
/// entry keeps it, and a definite match always wins over a candidate.
pub fn kernel_entries(catalogue: &Catalogue) -> KernelEntries {
    let mut forward = BTreeMap::new();
    let mut reverse = BTreeMap::new();
    let mut candidates = BTreeMap::new();

    for (index, entry) in catalogue.entries().iter().enumerate() {
        let definite = MatchValue {
            entry_index: index as u32,
            flags: MATCH_DEFINITE,
        };
        let candidate = MatchValue {
            entry_index: index as u32,
            flags: MATCH_CANDIDATE,
        };
        for path in &entry.paths {
            for alias in run_aliases(path) {
                let mut key = alias.into_bytes();
                key.push(0);
                forward.entry(key).or_insert(definite);
            }
            candidates
                .entry(reversed_basename(last_component(path)))
                .or_insert(candidate);
        }
        for directory in &entry.directories {
            for alias in run_aliases(directory) {
                forward.entry(alias.into_bytes()).or_insert(definite);
            }
        }
        for suffix in &entry.suffixes {
            reverse
                .entry(reversed(suffix.as_bytes()))
                .or_insert(definite);
            if let Some((_, name)) = suffix.rsplit_once('/')
                && !name.is_empty()
            {
                candidates
                    .entry(reversed_basename(name))
                    .or_insert(candidate);
            }
        }
        for basename in &entry.basenames {
            reverse
                .entry(reversed_basename(basename))
                .or_insert(definite);
        }
    }
    for (key, value) in candidates {
        reverse.entry(key).or_insert(value);
    }

    KernelEntries {
        forward: into_entries(forward),
        reverse: into_entries(reverse),
    }
}

impl KernelEntries {
    /// Builds the filters that let the programs skip lookups. Each is in use only when every
    /// key of its trie is long enough to be hashed.
    pub fn filter(&self) -> MatchFilter {
        let mut filter = MatchFilter::pass_all();
        if self
            .forward
            .iter()
            .all(|entry| entry.bytes.len() >= PREFIX_FILTER_LEN)
        {
            filter.flags |= FILTER_PREFIX;
            for entry in &self.forward {
                filter_insert(
                    &mut filter.prefix,
                    filter_value(&entry.bytes, PREFIX_FILTER_LEN),
                );
            }
        }
        if self
            .reverse
            .iter()
            .all(|entry| entry.bytes.len() >= SUFFIX_FILTER_LEN)
        {
            filter.flags |= FILTER_SUFFIX;
            for entry in &self.reverse {
                filter_insert(
                    &mut filter.suffix,
                    filter_value(&entry.bytes, SUFFIX_FILTER_LEN),
                );
            }
        }
        filter
    }
}

/// Returns the first `len` bytes of a key as a little-endian integer, as the programs load them.
pub fn filter_value(bytes: &[u8], len: usize) -> u64 {
    let mut word = [0u8; 8];
    word[..len].copy_from_slice(&bytes[..len]);
    u64::from_le_bytes(word)
}

/// Returns the path and, for paths under `/run`, the same path under `/var/run`, because a
/// process may open either and the kernel sees the path as passed.
fn run_aliases(path: &str) -> Vec<String> {
    let mut aliases = vec![path.to_owned()];
    if let Some(rest) = path.strip_prefix("/run/") {
        aliases.push(format!("/var/run/{rest}"));
    }
    aliases
}

fn last_component(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn reversed(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().rev().copied().collect()
}

/// Returns the reversed form of `/name`, which matches `name` as the last component.
fn reversed_basename(name: &str) -> Vec<u8> {
    let mut key = reversed(name.as_bytes());
    key.push(b'/');
    key
}

fn into_entries(map: BTreeMap<Vec<u8>, MatchValue>) -> Vec<TrieEntry> {
    map.into_iter()
        .map(|(bytes, value)| TrieEntry { bytes, value })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use monitor_common::catalogue::filter_contains;

    use super::*;
    use crate::config::Config;

    fn entries(yaml: &str) -> (Catalogue, KernelEntries) {
        let config = Config::parse(yaml, Path::new("test.yaml")).unwrap();
        let catalogue = Catalogue::from_config(&config.catalogue).unwrap();
        let entries = kernel_entries(&catalogue);
        (catalogue, entries)
    }

    fn find<'a>(entries: &'a [TrieEntry], bytes: &[u8]) -> Option<&'a TrieEntry> {
        entries.iter().find(|entry| entry.bytes == bytes)
    }

    const ONE_OF_EACH: &str = "catalogue:\n  builtin: false\n  entries:\n    - id: sa\n      type: token\n      paths: [/var/run/secrets/sa/token]\n      directories: [/etc/pki]\n      suffixes: [/.aws/credentials, .key]\n      basenames: [id_rsa]\n";

    #[test]
    fn exact_path_is_stored_with_nul_and_run_alias() {
        let (_, entries) = entries(ONE_OF_EACH);
        let run = find(&entries.forward, b"/run/secrets/sa/token\0").expect("normalised path");
        assert_eq!(run.value.flags, MATCH_DEFINITE);
        assert!(find(&entries.forward, b"/var/run/secrets/sa/token\0").is_some());
    }

    #[test]
    fn directory_is_stored_with_slash() {
        let (_, entries) = entries(ONE_OF_EACH);
        assert!(find(&entries.forward, b"/etc/pki/").is_some());
        assert!(find(&entries.forward, b"/etc/pki").is_none());
    }

    #[test]
    fn suffixes_and_basenames_are_reversed() {
        let (_, entries) = entries(ONE_OF_EACH);
        assert!(find(&entries.reverse, b"slaitnederc/swa./").is_some());
        assert!(find(&entries.reverse, b"yek.").is_some());
        let basename = find(&entries.reverse, b"asr_di/").expect("reversed /id_rsa");
        assert_eq!(basename.value.flags, MATCH_DEFINITE);
    }

    #[test]
    fn candidates_cover_last_components() {
        let (_, entries) = entries(ONE_OF_EACH);
        let token = find(&entries.reverse, b"nekot/").expect("candidate for token");
        assert_eq!(token.value.flags, MATCH_CANDIDATE);
        let credentials =
            find(&entries.reverse, b"slaitnederc/").expect("candidate for credentials");
        assert_eq!(credentials.value.flags, MATCH_CANDIDATE);
    }

    #[test]
    fn definite_entry_wins_over_candidate() {
        let (_, entries) = entries(
            "catalogue:\n  builtin: false\n  entries:\n    - {id: a, type: t, paths: [/srv/id_rsa]}\n    - {id: b, type: u, basenames: [id_rsa]}\n",
        );
        let key = find(&entries.reverse, b"asr_di/").unwrap();
        assert_eq!(key.value.flags, MATCH_DEFINITE);
        assert_eq!(key.value.entry_index, 1);
    }

    #[test]
    fn filter_has_every_key() {
        let (_, entries) = entries(ONE_OF_EACH);
        let filter = entries.filter();
        assert_eq!(filter.flags, FILTER_PREFIX | FILTER_SUFFIX);
        for entry in &entries.forward {
            let value = filter_value(&entry.bytes, PREFIX_FILTER_LEN);
            assert!(filter_contains(&filter.prefix, value), "{:?}", entry.bytes);
        }
        for entry in &entries.reverse {
            let value = filter_value(&entry.bytes, SUFFIX_FILTER_LEN);
            assert!(filter_contains(&filter.suffix, value), "{:?}", entry.bytes);
        }
    }

    #[test]
    fn filter_rejects_ordinary_paths() {
        let (_, entries) = entries("");
        let filter = entries.filter();
        let ordinary = [
            "/etc/ld.so.cache",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/proc/self/stat",
        ];
        let mut rejected = 0;
        for path in ordinary {
            let prefix = filter_value(path.as_bytes(), PREFIX_FILTER_LEN);
            let reversed: Vec<u8> = path.bytes().rev().collect();
            let suffix = filter_value(&reversed, SUFFIX_FILTER_LEN);
            if !filter_contains(&filter.prefix, prefix) && !filter_contains(&filter.suffix, suffix)
            {
                rejected += 1;
            }
        }
        assert_eq!(
            rejected,
            ordinary.len(),
            "ordinary paths should skip both lookups"
        );
    }

    #[test]
    fn short_keys_turn_filters_off() {
        let (_, entries) = entries(
            "catalogue:\n  builtin: false\n  entries:\n    - {id: a, type: t, paths: [/a/b], suffixes: [.k]}\n",
        );
        assert_eq!(entries.filter().flags, 0);
    }

    #[test]
    fn builtin_keys_fit_the_tries() {
        let (_, entries) = entries("");
        for entry in &entries.forward {
            assert!(entry.bytes.len() <= monitor_common::catalogue::PATH_LEN);
        }
        for entry in &entries.reverse {
            assert!(entry.bytes.len() < monitor_common::catalogue::REVERSE_LEN);
        }
        assert!(entries.forward.len() < monitor_common::catalogue::MAX_ENTRIES as usize);
    }
}
