//! The access policy: which workloads, namespaces and executables may read a credential.
//!
//! The file is YAML with a `policies` list:
//!
//! ```yaml
//! policies:
//!   - name: cart-token
//!     credentials:
//!       paths: ["/var/run/secrets/kubernetes.io/serviceaccount/*"]
//!       types: [kubernetes_service_account_token]
//!       native_ids: ["system:serviceaccount:shop:*"]
//!     allow:
//!       workloads: ["spiffe://cluster.local/ns/shop/sa/cart"]
//!       namespaces: [shop]
//!       executables: ["/usr/bin/cart", "/opt/cart/bin/*"]
//! ```
//!
//! `credentials` selects a credential when every list it gives has a matching entry. `paths`
//! and `native_ids` are globs, and `types` are exact credential types. `allow` accepts a reader
//! when any entry of any list matches: `workloads` and `executables` are globs on
//! `credwatch.workload.id` and the executable path, and `namespaces` are exact Kubernetes
//! namespaces. An empty list counts as not given.
//!
//! A credential is governed when one or more policies select it. A read of a governed credential
//! is a violation when none of the selecting policies allows the reader, and the violation names
//! the first selecting policy. A credential that no policy selects is never a violation.
//!
//! Globs match the whole text. `*` matches any run of characters except `/`, `**` any run
//! including `/`, `?` one character except `/`, and every other character matches itself. The
//! `/` on each side of a `**` is literal, so `/a/**/b` matches `/a/x/b` but not `/a/b`.
//!
//! The file is read again when its modification time, size or inode changes, checked at most
//! every 2 s. A file that turns unreadable or invalid keeps the policies read last.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::Deserialize;

use crate::credential::identify::flow_depth_exceeded;

/// Largest policy file read.
const MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Shortest time between two checks of the file for a change.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// Maximum nesting of YAML flow collections (`[...]`, `{...}`). The YAML parser slows down far
/// more than linearly with depth (serde_yaml 0.9 took 15 s for 4 MiB of `[` in a release
/// build), while a policy file written in flow style nests three levels.
const MAX_YAML_FLOW_DEPTH: usize = 64;

/// Modification time in nanoseconds, size and inode: a change to any of them means the file
/// changed.
type FileVersion = (i64, u64, u64);

/// One credential read: the credential and its reader.
#[derive(Clone, Copy, Debug)]
pub struct PolicySubject<'a> {
    /// Credential type, such as `aws_access_key`.
    pub credential_type: &'a str,
    /// Catalogue type of the file read, such as `aws_credentials`, when it came from a file.
    pub file_type: Option<&'a str>,
    /// The issuer's id for the credential, when known.
    pub native_id: Option<&'a str>,
    /// The file path read, or `None` for a credential found in argv or the environment.
    pub path: Option<&'a str>,
    /// `credwatch.workload.id` of the reader, when known.
    pub workload_id: Option<&'a str>,
    /// Kubernetes namespace of the reader, when known.
    pub namespace: Option<&'a str>,
    /// Executable path of the reader, or empty when unknown.
    pub executable: &'a str,
}

/// A read that the policies forbid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Name of the first policy that selects the credential.
    pub policy: String,
    /// The readers that policy allows, in words: `workloads a, b; executables /usr/bin/cart`.
    pub allowed: String,
}

/// The policies read from a policy file, and the version of the file they came from.
#[derive(Debug)]
pub struct Policy {
    path: PathBuf,
    policies: Vec<CompiledPolicy>,
    version: Option<FileVersion>,
    /// The version whose text failed to parse or validate, and the error, so that an invalid
    /// file is parsed once and not at every check.
    rejected: Option<(FileVersion, String)>,
    last_check: Option<Instant>,
    check_every: Duration,
    failing: bool,
}

impl Policy {
    /// Reads the policy file at `path`. The error names the file, the policy and field at
    /// fault, and the fix.
    pub fn load(path: &Path) -> Result<Self, String> {
        let mut policy = Self {
            path: path.to_path_buf(),
            policies: Vec::new(),
            version: None,
            rejected: None,
            last_check: None,
            check_every: CHECK_EVERY,
            failing: false,
        };
        policy.reload()?;
        Ok(policy)
    }

    /// Returns the violation when `subject` reads a governed credential that no selecting
    /// policy allows it to read. Reads the file again first if it changed.
    pub fn check(&mut self, subject: &PolicySubject<'_>) -> Option<Violation> {
        self.refresh();
        let mut first_selecting = None;
        for policy in &self.policies {
            if !policy.credentials.selects(subject) {
                continue;
            }
            if policy.allow.allows(subject) {
                return None;
            }
            first_selecting.get_or_insert(policy);
        }
        first_selecting.map(|policy| Violation {
            policy: policy.name.clone(),
            allowed: policy.allowed.clone(),
        })
    }

    /// Returns the file the policies come from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the number of policies loaded.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Returns whether the file has no policies, so that nothing is governed.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    fn refresh(&mut self) {
        if self
            .last_check
            .is_some_and(|last| last.elapsed() < self.check_every)
        {
            return;
        }
        match self.reload() {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(path = %self.path.display(), policies = self.policies.len(), "read the policy file again");
            }
            Ok(()) => {}
            Err(error) if !self.failing => {
                self.failing = true;
                tracing::warn!(path = %self.path.display(), %error, kept = self.policies.len(), "failed to read the policy file; the policies read last stay in force");
            }
            Err(_) => {}
        }
    }

    /// Reads the file when its version changed. On an error the policies stay as they were.
    fn reload(&mut self) -> Result<(), String> {
        self.last_check = Some(Instant::now());
        let path = self.path.display();

        let metadata = fs::metadata(&self.path).map_err(|error| {
            format!(
                "detection.policy_file {path}: {error}; check that the file exists and credwatch can read it"
            )
        })?;
        let version = (
            metadata.mtime_nsec() + metadata.mtime() * 1_000_000_000,
            metadata.len(),
            metadata.ino(),
        );
        if self.version == Some(version) {
            return Ok(());
        }
        if let Some((rejected, error)) = &self.rejected
            && *rejected == version
        {
            return Err(error.clone());
        }

        if metadata.len() > MAX_BYTES {
            return Err(format!(
                "detection.policy_file {path} is {} bytes, larger than the {} MiB limit; remove unused policies or merge their lists",
                metadata.len(),
                MAX_BYTES >> 20
            ));
        }
        let text = fs::read_to_string(&self.path).map_err(|error| {
            format!("detection.policy_file {path}: {error}; it must be a readable file of UTF-8 YAML text")
        })?;

        // Read errors are not remembered in `rejected`, because a fix such as `chmod` leaves
        // the version unchanged.
        let policies = parse(&text).map_err(|error| {
            let error = format!("detection.policy_file {path}: {error}");
            self.rejected = Some((version, error.clone()));
            error
        })?;

        self.policies = policies;
        self.version = Some(version);
        self.rejected = None;
        tracing::debug!(path = %path, policies = self.policies.len(), "read the policy file");
        Ok(())
    }
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    policies: Vec<RawPolicy>,
}

/// One element of the `policies` list as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: String,
    credentials: Option<RawSelector>,
    allow: Option<RawAllow>,
}

/// The `credentials` mapping as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    paths: Option<Vec<String>>,
    types: Option<Vec<String>>,
    native_ids: Option<Vec<String>>,
}

/// The `allow` mapping as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    workloads: Option<Vec<String>>,
    namespaces: Option<Vec<String>>,
    executables: Option<Vec<String>>,
}

/// One policy, checked and with its globs compiled.
#[derive(Debug)]
struct CompiledPolicy {
    name: String,
    credentials: Selector,
    allow: Allow,
    /// The allowed readers in words, for [`Violation::allowed`].
    allowed: String,
}

/// The credentials a policy governs. Each non-empty list must have a matching entry.
#[derive(Debug)]
struct Selector {
    paths: Vec<Glob>,
    types: Vec<String>,
    native_ids: Vec<Glob>,
}

impl Selector {
    fn selects(&self, subject: &PolicySubject<'_>) -> bool {
        let path_matches = self.paths.is_empty()
            || subject
                .path
                .is_some_and(|path| self.paths.iter().any(|glob| glob.matches(path)));
        let type_matches = self.types.is_empty()
            || self.types.iter().any(|wanted| {
                wanted == subject.credential_type || Some(wanted.as_str()) == subject.file_type
            });
        let native_id_matches = self.native_ids.is_empty()
            || subject
                .native_id
                .is_some_and(|id| self.native_ids.iter().any(|glob| glob.matches(id)));
        path_matches && type_matches && native_id_matches
    }
}

/// The readers a policy allows. One matching entry in any list is enough.
#[derive(Debug)]
struct Allow {
    workloads: Vec<Glob>,
    namespaces: Vec<String>,
    executables: Vec<Glob>,
}

impl Allow {
    fn allows(&self, subject: &PolicySubject<'_>) -> bool {
        let workload_allowed = subject
            .workload_id
            .is_some_and(|id| self.workloads.iter().any(|glob| glob.matches(id)));
        let namespace_allowed = subject
            .namespace
            .is_some_and(|namespace| self.namespaces.iter().any(|allowed| allowed == namespace));
        // An unknown executable matches no glob, not even `*`.
        let executable_allowed = !subject.executable.is_empty()
            && self
                .executables
                .iter()
                .any(|glob| glob.matches(subject.executable));
        workload_allowed || namespace_allowed || executable_allowed
    }

    /// Returns the allowed readers in words, leaving out empty lists.
    fn describe(&self) -> String {
        let lists = [
            (
                "workloads",
                self.workloads.iter().map(Glob::as_str).collect::<Vec<_>>(),
            ),
            (
                "namespaces",
                self.namespaces.iter().map(String::as_str).collect(),
            ),
            (
                "executables",
                self.executables.iter().map(Glob::as_str).collect(),
            ),
        ];
        lists
            .iter()
            .filter(|(_, entries)| !entries.is_empty())
            .map(|(field, entries)| format!("{field} {}", entries.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Parses and checks the file text. The error names the policy and field at fault, and the fix,
/// but not the file.
fn parse(text: &str) -> Result<Vec<CompiledPolicy>, String> {
    if let Some(line) = flow_depth_exceeded(text, MAX_YAML_FLOW_DEPTH) {
        return Err(format!(
            "invalid policy YAML: flow collections (`[`, `{{`) nest deeper than {MAX_YAML_FLOW_DEPTH} levels on line {line}; close the brackets, or write the lists in block style"
        ));
    }
    // A file with no document, or only comments, parses as `None`.
    let file: Option<PolicyFile> = serde_yaml::from_str(text).map_err(|error| {
        format!(
            "invalid policy YAML: {error}; each element of `policies` takes `name`, `credentials` (`paths`, `types`, `native_ids`) and `allow` (`workloads`, `namespaces`, `executables`)"
        )
    })?;
    let Some(file) = file else {
        return Err(
            "the file is empty; list policies under `policies:`, or write `policies: []` to govern no credential"
                .to_owned(),
        );
    };

    let mut policies = Vec::with_capacity(file.policies.len());
    let mut indexes_by_name: HashMap<String, usize> = HashMap::new();
    for (index, raw) in file.policies.into_iter().enumerate() {
        if raw.name.trim().is_empty() {
            return Err(format!(
                "policies[{index}]: field `name` is empty; give each policy a unique name"
            ));
        }
        if let Some(first) = indexes_by_name.get(&raw.name) {
            return Err(format!(
                "policies[{index}]: field `name` is `{}`, already used by policies[{first}]; give each policy a unique name",
                raw.name
            ));
        }
        indexes_by_name.insert(raw.name.clone(), index);
        let policy = compile(&format!("policies[{index}] ({})", raw.name), raw)?;
        policies.push(policy);
    }
    Ok(policies)
}

/// Checks one policy and compiles its globs. `location` names the policy in errors.
fn compile(location: &str, raw: RawPolicy) -> Result<CompiledPolicy, String> {
    let raw_selector = raw.credentials.unwrap_or(RawSelector {
        paths: None,
        types: None,
        native_ids: None,
    });
    let credentials = Selector {
        paths: path_globs(location, "credentials.paths", raw_selector.paths)?,
        types: strings(location, "credentials.types", raw_selector.types)?,
        native_ids: globs(location, "credentials.native_ids", raw_selector.native_ids)?,
    };
    if credentials.paths.is_empty()
        && credentials.types.is_empty()
        && credentials.native_ids.is_empty()
    {
        return Err(format!(
            "{location}: field `credentials` has no entries; give at least one of `paths`, `types` or `native_ids` to select the credentials the policy governs"
        ));
    }

    let raw_allow = raw.allow.unwrap_or(RawAllow {
        workloads: None,
        namespaces: None,
        executables: None,
    });
    let allow = Allow {
        workloads: globs(location, "allow.workloads", raw_allow.workloads)?,
        namespaces: strings(location, "allow.namespaces", raw_allow.namespaces)?,
        executables: path_globs(location, "allow.executables", raw_allow.executables)?,
    };
    if allow.workloads.is_empty() && allow.namespaces.is_empty() && allow.executables.is_empty() {
        return Err(format!(
            "{location}: field `allow` has no entries; give at least one of `workloads`, `namespaces` or `executables`"
        ));
    }

    let allowed = allow.describe();
    Ok(CompiledPolicy {
        name: raw.name,
        credentials,
        allow,
        allowed,
    })
}

/// Returns the list with each entry checked to be non-empty.
fn strings(location: &str, field: &str, list: Option<Vec<String>>) -> Result<Vec<String>, String> {
    let list = list.unwrap_or_default();
    if let Some(position) = list.iter().position(String::is_empty) {
        return Err(format!(
            "{location}: field `{field}[{position}]` is an empty string; remove it or write a value"
        ));
    }
    Ok(list)
}

/// Returns the list compiled to globs, each checked to be non-empty.
fn globs(location: &str, field: &str, list: Option<Vec<String>>) -> Result<Vec<Glob>, String> {
    let list = list.unwrap_or_default();
    if let Some(position) = list.iter().position(String::is_empty) {
        return Err(format!(
            "{location}: field `{field}[{position}]` is an empty glob; remove it or write a glob such as `*`"
        ));
    }
    Ok(list.iter().map(|text| Glob::new(text)).collect())
}

/// Returns path globs, each checked to be absolute (or to start with `*`, which can match the
/// leading `/`). A glob below `/var/run` is rewritten to `/run`, because credwatch reports file
/// paths there in that form.
fn path_globs(location: &str, field: &str, list: Option<Vec<String>>) -> Result<Vec<Glob>, String> {
    let list = list.unwrap_or_default();
    for (position, text) in list.iter().enumerate() {
        if text.is_empty() {
            return Err(format!(
                "{location}: field `{field}[{position}]` is an empty glob; remove it or write a glob such as `/etc/app/*`"
            ));
        }
        if !text.starts_with('/') && !text.starts_with('*') {
            return Err(format!(
                "{location}: field `{field}[{position}]` {text:?} is not an absolute path; paths are matched as credwatch reports them, such as `/etc/app/*`"
            ));
        }
    }
    Ok(list
        .iter()
        .map(|text| match text.strip_prefix("/var/run/") {
            Some(rest) => Glob::new(&format!("/run/{rest}")),
            None if text == "/var/run" => Glob::new("/run"),
            None => Glob::new(text),
        })
        .collect())
}

/// One element of a compiled glob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    /// A character that matches itself.
    Literal(char),
    /// `?`: one character except `/`.
    AnyChar,
    /// `*`: any run of characters except `/`.
    Star,
    /// `**` (or more `*` in a row): any run of characters.
    DoubleStar,
}

/// A glob on a path or id, matched against the whole text.
#[derive(Debug)]
struct Glob {
    text: String,
    tokens: Vec<Token>,
}

impl Glob {
    fn new(text: &str) -> Self {
        let mut tokens = Vec::with_capacity(text.len());
        for character in text.chars() {
            let token = match character {
                '?' => Token::AnyChar,
                '*' => match tokens.last_mut() {
                    Some(last @ (Token::Star | Token::DoubleStar)) => {
                        *last = Token::DoubleStar;
                        continue;
                    }
                    _ => Token::Star,
                },
                literal => Token::Literal(literal),
            };
            tokens.push(token);
        }
        Self {
            text: text.to_owned(),
            tokens,
        }
    }

    fn as_str(&self) -> &str {
        &self.text
    }

    /// Returns whether the glob matches all of `text`.
    ///
    /// The match runs left to right and, on a mismatch, backtracks to the latest `*` or `**`
    /// only, with no recursion. The latest `*` can take over any longer match of an earlier `*`
    /// in the same `/`-separated segment, and the latest `**` that of any earlier wildcard. So
    /// when the latest `*` would have to cross a `/`, only the latest `**` remains to extend.
    /// The time is at most proportional to the text length squared times the glob length.
    fn matches(&self, text: &str) -> bool {
        let tokens = &self.tokens;
        let mut token = 0;
        let mut position = 0;
        // Resume points: the token after the wildcard, and where the wildcard's run ends.
        let mut star: Option<(usize, usize)> = None;
        let mut double_star: Option<(usize, usize)> = None;
        loop {
            let next = text[position..].chars().next();
            match (tokens.get(token), next) {
                (None, None) => return true,
                (Some(Token::Star), _) => {
                    star = Some((token + 1, position));
                    token += 1;
                    continue;
                }
                (Some(Token::DoubleStar), _) => {
                    double_star = Some((token + 1, position));
                    star = None;
                    token += 1;
                    continue;
                }
                (Some(Token::AnyChar), Some(character)) if character != '/' => {
                    token += 1;
                    position += character.len_utf8();
                    continue;
                }
                (Some(Token::Literal(literal)), Some(character)) if *literal == character => {
                    token += 1;
                    position += character.len_utf8();
                    continue;
                }
                _ => {}
            }

            // Mismatch: let the latest `*` take one more character, unless that is a `/`.
            if let Some((after, end)) = star
                && let Some(character) = text[end..].chars().next().filter(|&c| c != '/')
            {
                let end = end + character.len_utf8();
                star = Some((after, end));
                token = after;
                position = end;
                continue;
            }
            // Otherwise let the latest `**` take one more character of any kind. The `*` tokens
            // after it are reached again, so their old resume point no longer applies.
            if let Some((after, end)) = double_star
                && let Some(character) = text[end..].chars().next()
            {
                let end = end + character.len_utf8();
                double_star = Some((after, end));
                star = None;
                token = after;
                position = end;
                continue;
            }
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CART_POLICY: &str = r#"
policies:
  - name: cart-token
    credentials:
      paths: ["/var/run/secrets/kubernetes.io/serviceaccount/*"]
      types: [kubernetes_service_account_token]
    allow:
      workloads: ["spiffe://cluster.local/ns/shop/sa/cart"]
      namespaces: [shop]
      executables: ["/usr/bin/cart", "/opt/cart/bin/*"]
"#;

    const TOKEN_PATH: &str = "/run/secrets/kubernetes.io/serviceaccount/token";

    /// Returns a read of the cart service-account token by an unknown program with no workload.
    fn token_read() -> PolicySubject<'static> {
        PolicySubject {
            credential_type: "kubernetes_service_account_token",
            file_type: None,
            native_id: Some("system:serviceaccount:shop:cart"),
            path: Some(TOKEN_PATH),
            workload_id: None,
            namespace: None,
            executable: "",
        }
    }

    /// Writes `text` as a policy file in `dir` and loads it.
    fn load_text(dir: &tempfile::TempDir, text: &str) -> Result<Policy, String> {
        let path = dir.path().join("policy.yaml");
        fs::write(&path, text).unwrap();
        Policy::load(&path)
    }

    fn load_error(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let error = load_text(&dir, text).unwrap_err();
        assert!(error.contains("policy.yaml"), "{error}");
        error
    }

    fn glob_matches(glob: &str, text: &str) -> bool {
        Glob::new(glob).matches(text)
    }

    #[test]
    fn var_run_globs_match_run_paths() {
        let dir = tempfile::tempdir().unwrap();
        // The daemon reports `/var/run/...` reads as `/run/...`; TOKEN_PATH is in that form.
        let mut policy = load_text(&dir, CART_POLICY).unwrap();
        assert!(policy.check(&token_read()).is_some());
    }

    #[test]
    fn file_type_selects_too() {
        let dir = tempfile::tempdir().unwrap();
        let text = "policies:\n  - name: aws\n    credentials:\n      types: [aws_credentials]\n    allow:\n      executables: [/usr/bin/aws]\n";
        let mut policy = load_text(&dir, text).unwrap();
        let read = PolicySubject {
            credential_type: "aws_access_key",
            file_type: Some("aws_credentials"),
            ..token_read()
        };
        assert!(policy.check(&read).is_some());
        let other = PolicySubject {
            file_type: Some("netrc"),
            ..read
        };
        assert!(policy.check(&other).is_none());
    }

    #[test]
    fn relative_globs_are_rejected() {
        for (field, text) in [
            (
                "credentials.paths[0]",
                "policies:\n  - name: p\n    credentials:\n      paths: [relative/token]\n    allow:\n      namespaces: [shop]\n",
            ),
            (
                "allow.executables[0]",
                "policies:\n  - name: p\n    credentials:\n      types: [jwt]\n    allow:\n      executables: [cat]\n",
            ),
        ] {
            let error = load_error(text);
            assert!(error.contains(field), "{error}");
            assert!(error.contains("not an absolute path"), "{error}");
        }
    }

    #[test]
    fn glob_star_stays_in_segment() {
        assert!(glob_matches("/etc/*", "/etc/passwd"));
        assert!(glob_matches("/etc/*", "/etc/"));
        assert!(!glob_matches("/etc/*", "/etc/ssl/cert.pem"));
        assert!(glob_matches("/etc/*/cert.pem", "/etc/ssl/cert.pem"));
        assert!(glob_matches("*.pem", "cert.pem"));
        assert!(!glob_matches("*.pem", "ssl/cert.pem"));
        assert!(glob_matches("a*b*c", "aXbYbZc"));
        assert!(!glob_matches("a*b*c", "aXb/Zc"));
    }

    #[test]
    fn glob_double_star_crosses_slash() {
        assert!(glob_matches("/etc/**", "/etc/ssl/private/key.pem"));
        assert!(glob_matches("/etc/**", "/etc/"));
        assert!(glob_matches("/etc/**.pem", "/etc/ssl/cert.pem"));
        assert!(glob_matches("/a/**/b", "/a/x/y/b"));
        assert!(!glob_matches("/a/**/b", "/a/b"));
        assert!(glob_matches("**/*.pem", "/etc/ssl/cert.pem"));
        assert!(!glob_matches("**/*.pem", "/etc/ssl/cert.pem.bak"));
        assert!(glob_matches("/a/***", "/a/b/c"));
        assert!(glob_matches(
            "spiffe://cluster.local/ns/**",
            "spiffe://cluster.local/ns/shop/sa/cart"
        ));
    }

    #[test]
    fn glob_question_mark_one_character() {
        assert!(glob_matches("key?.pem", "key1.pem"));
        assert!(glob_matches("key?.pem", "keyé.pem"));
        assert!(!glob_matches("key?.pem", "key.pem"));
        assert!(!glob_matches("key?.pem", "key12.pem"));
        assert!(!glob_matches("a?b", "a/b"));
    }

    #[test]
    fn glob_literals_with_regex_characters() {
        assert!(glob_matches("/etc/app.conf", "/etc/app.conf"));
        assert!(!glob_matches("/etc/app.conf", "/etc/appXconf"));
        assert!(glob_matches("c++", "c++"));
        assert!(!glob_matches("c++", "ccc"));
        assert!(glob_matches("[ab]", "[ab]"));
        assert!(!glob_matches("[ab]", "a"));
        assert!(glob_matches("^a$|(b)\\", "^a$|(b)\\"));
        assert!(glob_matches(
            "system:serviceaccount:shop:*",
            "system:serviceaccount:shop:cart"
        ));
        assert!(!glob_matches("/etc/passwd", "/etc/passwd2"));
        assert!(!glob_matches("/etc/passwd", "/etc/passw"));
    }

    /// Returns whether `glob` matches `text` by the plain recursive definition, to check the
    /// iterative matcher against.
    fn reference_matches(glob: &[char], text: &[char]) -> bool {
        match glob {
            [] => text.is_empty(),
            ['*', '*', rest @ ..] => {
                let rest: Vec<char> = rest.iter().copied().skip_while(|&c| c == '*').collect();
                (0..=text.len()).any(|split| reference_matches(&rest, &text[split..]))
            }
            ['*', rest @ ..] => (0..=text.len())
                .take_while(|&split| !text[..split].contains(&'/'))
                .any(|split| reference_matches(rest, &text[split..])),
            ['?', rest @ ..] => {
                text.first().is_some_and(|&c| c != '/') && reference_matches(rest, &text[1..])
            }
            [literal, rest @ ..] => {
                text.first() == Some(literal) && reference_matches(rest, &text[1..])
            }
        }
    }

    /// Returns every string of `alphabet` up to `max_len` characters long.
    fn all_strings(alphabet: &[char], max_len: usize) -> Vec<String> {
        let mut strings = vec![String::new()];
        let mut previous = vec![String::new()];
        for _ in 0..max_len {
            let mut longer = Vec::new();
            for prefix in &previous {
                for &character in alphabet {
                    longer.push(format!("{prefix}{character}"));
                }
            }
            strings.extend(longer.iter().cloned());
            previous = longer;
        }
        strings
    }

    #[test]
    fn glob_agrees_with_reference() {
        let globs = all_strings(&['a', 'b', '/', '*', '?'], 5);
        let texts = all_strings(&['a', 'b', '/'], 5);
        for glob in &globs {
            let compiled = Glob::new(glob);
            let glob_chars: Vec<char> = glob.chars().collect();
            for text in &texts {
                let text_chars: Vec<char> = text.chars().collect();
                assert_eq!(
                    compiled.matches(text),
                    reference_matches(&glob_chars, &text_chars),
                    "glob {glob:?} on {text:?}"
                );
            }
        }
    }

    #[test]
    fn glob_long_text_finishes() {
        // Texts as long as PATH_MAX, with globs that make the matcher backtrack at every
        // position. The first case is the quadratic worst case.
        let cases = [
            ("**a*a*a*a*a*b", "a".repeat(4096)),
            ("**a*a*a*a*a*b", "a/".repeat(2048)),
            ("**/**/**/**/b", "a/".repeat(2048)),
        ];
        for (glob, text) in cases {
            let started = Instant::now();
            assert!(!glob_matches(glob, &text), "{glob}");
            assert!(started.elapsed() < Duration::from_secs(5), "{glob}");
        }
    }

    #[test]
    fn allowed_workload_is_no_violation() {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = load_text(&dir, CART_POLICY).unwrap();
        let read = PolicySubject {
            workload_id: Some("spiffe://cluster.local/ns/shop/sa/cart"),
            ..token_read()
        };
        assert_eq!(policy.check(&read), None);
    }

    #[test]
    fn allowed_namespace_is_no_violation() {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = load_text(&dir, CART_POLICY).unwrap();
        let read = PolicySubject {
            namespace: Some("shop"),
            ..token_read()
        };
        assert_eq!(policy.check(&read), None);
    }

    #[test]
    fn allowed_executable_is_no_violation() {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = load_text(&dir, CART_POLICY).unwrap();
        for executable in ["/usr/bin/cart", "/opt/cart/bin/cart-worker"] {
            let read = PolicySubject {
                executable,
                ..token_read()
            };
            assert_eq!(policy.check(&read), None, "{executable}");
        }
    }

    #[test]
    fn other_reader_is_violation() {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = load_text(&dir, CART_POLICY).unwrap();
        let expected = Violation {
            policy: "cart-token".to_owned(),
            allowed: "workloads spiffe://cluster.local/ns/shop/sa/cart; namespaces shop; executables /usr/bin/cart, /opt/cart/bin/*".to_owned(),
        };
        let readers = [
            PolicySubject {
                workload_id: Some("spiffe://cluster.local/ns/shop/sa/checkout"),
                namespace: Some("payments"),
                executable: "/usr/bin/cat",
                ..token_read()
            },
            // `*` stops at `/`, so a program in a subdirectory is not allowed.
            PolicySubject {
                executable: "/opt/cart/bin/tools/dump",
                ..token_read()
            },
            token_read(),
        ];
        for read in readers {
            assert_eq!(policy.check(&read), Some(expected.clone()), "{read:?}");
        }
    }

    #[test]
    fn selector_lists_all_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = load_text(&dir, CART_POLICY).unwrap();
        // The path matches but the type does not.
        let other_type = PolicySubject {
            credential_type: "jwt",
            file_type: None,
            ..token_read()
        };
        assert_eq!(policy.check(&other_type), None);
        // The type matches but the path does not.
        let other_path = PolicySubject {
            path: Some("/home/dev/token"),
            ..token_read()
        };
        assert_eq!(policy.check(&other_path), None);
        // A `paths` list never selects a credential found in argv or the environment.
        let no_path = PolicySubject {
            path: None,
            ..token_read()
        };
        assert_eq!(policy.check(&no_path), None);
        // Both match.
        assert!(policy.check(&token_read()).is_some());
    }

    #[test]
    fn native_id_selects_without_path() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"
policies:
  - name: shop-accounts
    credentials:
      native_ids: ["system:serviceaccount:shop:*"]
    allow:
      namespaces: [shop]
"#;
        let mut policy = load_text(&dir, text).unwrap();
        let from_environment = PolicySubject {
            path: None,
            ..token_read()
        };
        assert_eq!(
            policy
                .check(&from_environment)
                .map(|violation| violation.policy),
            Some("shop-accounts".to_owned())
        );
        let other_account = PolicySubject {
            native_id: Some("system:serviceaccount:billing:invoice"),
            ..token_read()
        };
        assert_eq!(policy.check(&other_account), None);
        let no_native_id = PolicySubject {
            native_id: None,
            ..token_read()
        };
        assert_eq!(policy.check(&no_native_id), None);
    }

    #[test]
    fn second_policy_allows_reader() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"
policies:
  - name: cart-token
    credentials:
      types: [kubernetes_service_account_token]
    allow:
      namespaces: [shop]
  - name: backup-agent
    credentials:
      paths: ["/var/run/secrets/**"]
    allow:
      executables: ["/usr/bin/backup"]
"#;
        let mut policy = load_text(&dir, text).unwrap();
        assert_eq!(policy.len(), 2);
        let backup = PolicySubject {
            executable: "/usr/bin/backup",
            ..token_read()
        };
        assert_eq!(policy.check(&backup), None);
        let shop = PolicySubject {
            namespace: Some("shop"),
            ..token_read()
        };
        assert_eq!(policy.check(&shop), None);

        let violation = policy.check(&token_read()).unwrap();
        assert_eq!(violation.policy, "cart-token");
        assert_eq!(violation.allowed, "namespaces shop");
    }

    #[test]
    fn ungoverned_credential_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = load_text(&dir, CART_POLICY).unwrap();
        let read = PolicySubject {
            credential_type: "aws_access_key",
            file_type: None,
            native_id: Some("AKIAMADEUPEXAMPLE234"),
            path: Some("/home/dev/.aws/credentials"),
            workload_id: None,
            namespace: None,
            executable: "/usr/bin/cat",
        };
        assert_eq!(policy.check(&read), None);
    }

    #[test]
    fn empty_policy_list_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = load_text(&dir, "policies: []\n").unwrap();
        assert_eq!(policy.len(), 0);
        assert!(policy.is_empty());
        assert_eq!(policy.check(&token_read()), None);
    }

    #[test]
    fn missing_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.yaml");
        let error = Policy::load(&path).unwrap_err();
        assert!(error.contains("absent.yaml"), "{error}");
        assert!(error.contains("exists"), "{error}");
    }

    #[test]
    fn unreadable_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        // A directory has metadata but cannot be read as a file, even by root.
        let error = Policy::load(dir.path()).unwrap_err();
        assert!(error.contains("detection.policy_file"), "{error}");
        assert!(error.contains(&dir.path().display().to_string()), "{error}");
    }

    #[test]
    fn non_utf8_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        fs::write(&path, b"policies: []\n# \xff\xfe\n").unwrap();
        let error = Policy::load(&path).unwrap_err();
        assert!(error.contains("UTF-8"), "{error}");
    }

    #[test]
    fn oversized_file_is_rejected() {
        let mut text = String::from("policies: []\n");
        while text.len() as u64 <= MAX_BYTES {
            text.push_str("# padding to pass the size limit\n");
        }
        let error = load_error(&text);
        assert!(error.contains("4 MiB"), "{error}");
    }

    #[test]
    fn invalid_yaml_is_rejected() {
        let error = load_error("policies: [\n  - name: a\n");
        assert!(error.contains("invalid policy YAML"), "{error}");
        let error = load_error("- name: a\n");
        assert!(error.contains("invalid policy YAML"), "{error}");
        for empty in ["", "\n  # only a comment\n", "~\n"] {
            let error = load_error(empty);
            assert!(error.contains("the file is empty"), "{error}");
            assert!(error.contains("policies: []"), "{error}");
        }
    }

    #[test]
    fn deep_flow_nesting_is_rejected() {
        let text = format!(
            "# comment\npolicies: {}",
            "[".repeat(MAX_BYTES as usize - 100)
        );
        let started = Instant::now();
        let error = load_error(&text);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            error.contains("nest deeper than 64 levels on line 2"),
            "{error}"
        );
    }

    #[test]
    fn quoted_brackets_are_not_nesting() {
        let brackets = "[{".repeat(MAX_YAML_FLOW_DEPTH);
        let text = format!(
            "policies: [{{name: p, credentials: {{paths: [\"/{brackets}\", '/{brackets}']}}, allow: {{namespaces: [shop]}}}}] # {brackets}\n# {brackets}\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut policy = load_text(&dir, &text).unwrap();
        let read = PolicySubject {
            path: Some(&format!("/{brackets}")),
            ..token_read()
        };
        assert_eq!(
            policy.check(&read).map(|violation| violation.allowed),
            Some("namespaces shop".to_owned())
        );
    }

    #[test]
    fn unknown_key_is_rejected() {
        let error = load_error(&CART_POLICY.replace("paths:", "path:"));
        assert!(error.contains("policies[0].credentials"), "{error}");
        assert!(error.contains("unknown field `path`"), "{error}");
        let error = load_error(&CART_POLICY.replace("namespaces:", "namespace:"));
        assert!(error.contains("unknown field `namespace`"), "{error}");
        let error = load_error(&format!("{CART_POLICY}version: 1\n"));
        assert!(error.contains("unknown field `version`"), "{error}");
    }

    #[test]
    fn missing_name_is_rejected() {
        let error = load_error(
            &CART_POLICY.replace("- name: cart-token\n    credentials:", "- credentials:"),
        );
        assert!(error.contains("policies[0]"), "{error}");
        assert!(error.contains("missing field `name`"), "{error}");
    }

    #[test]
    fn empty_name_is_rejected() {
        for name in ["\"\"", "\"  \""] {
            let error = load_error(&CART_POLICY.replace("cart-token", name));
            assert!(error.contains("policies[0]"), "{error}");
            assert!(error.contains("field `name` is empty"), "{error}");
        }
    }

    #[test]
    fn duplicate_name_is_rejected() {
        let second = CART_POLICY.replace("policies:\n", "");
        let error = load_error(&format!("{CART_POLICY}{second}"));
        assert!(error.contains("policies[1]"), "{error}");
        assert!(error.contains("`cart-token`"), "{error}");
        assert!(error.contains("policies[0]"), "{error}");
        assert!(error.contains("unique name"), "{error}");
    }

    #[test]
    fn selector_without_entries_is_rejected() {
        let texts = [
            "policies:\n  - name: p\n    allow:\n      namespaces: [shop]\n",
            "policies:\n  - name: p\n    credentials: {}\n    allow:\n      namespaces: [shop]\n",
            "policies:\n  - name: p\n    credentials:\n      paths: []\n      types:\n    allow:\n      namespaces: [shop]\n",
        ];
        for text in texts {
            let error = load_error(text);
            assert!(error.contains("policies[0] (p)"), "{error}");
            assert!(
                error.contains("field `credentials` has no entries"),
                "{error}"
            );
        }
    }

    #[test]
    fn allow_without_entries_is_rejected() {
        let texts = [
            "policies:\n  - name: p\n    credentials:\n      types: [jwt]\n",
            "policies:\n  - name: p\n    credentials:\n      types: [jwt]\n    allow:\n      workloads: []\n",
        ];
        for text in texts {
            let error = load_error(text);
            assert!(error.contains("policies[0] (p)"), "{error}");
            assert!(error.contains("field `allow` has no entries"), "{error}");
        }
    }

    #[test]
    fn empty_glob_is_rejected() {
        let cases = [
            (
                CART_POLICY.replace("\"/usr/bin/cart\"", "\"\""),
                "allow.executables[0]",
            ),
            (
                CART_POLICY.replace(
                    "[\"/var/run/secrets/kubernetes.io/serviceaccount/*\"]",
                    "[\"\"]",
                ),
                "credentials.paths[0]",
            ),
            (
                CART_POLICY.replace("[shop]", "[\"\"]"),
                "allow.namespaces[0]",
            ),
        ];
        for (text, field) in cases {
            let error = load_error(&text);
            assert!(error.contains("policies[0] (cart-token)"), "{error}");
            assert!(error.contains(field), "{error}");
            assert!(error.contains("empty"), "{error}");
        }
    }

    #[test]
    fn changed_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = load_text(&dir, CART_POLICY).unwrap();
        policy.check_every = Duration::ZERO;
        assert!(policy.check(&token_read()).is_some());

        // The added list makes the file longer, so the size shows the change even when the
        // modification time does not.
        let widened = CART_POLICY.replace("executables: [", "executables: [\"/usr/bin/*\", ");
        fs::write(policy.path(), widened).unwrap();
        let read = PolicySubject {
            executable: "/usr/bin/cat",
            ..token_read()
        };
        assert_eq!(policy.check(&read), None);
        assert_eq!(policy.len(), 1);
    }

    #[test]
    fn change_waits_for_check_interval() {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = load_text(&dir, CART_POLICY).unwrap();
        fs::write(policy.path(), "policies: []\n").unwrap();
        // The default interval has not passed since the load, so the old policies apply.
        assert!(policy.check(&token_read()).is_some());
        policy.check_every = Duration::ZERO;
        assert_eq!(policy.check(&token_read()), None);
        assert!(policy.is_empty());
    }

    #[test]
    fn invalid_reload_keeps_policies() {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = load_text(&dir, CART_POLICY).unwrap();
        policy.check_every = Duration::ZERO;

        fs::write(policy.path(), "policies:\n  - name: broken\n").unwrap();
        assert!(policy.check(&token_read()).is_some());
        assert!(policy.failing);
        assert_eq!(policy.len(), 1);
        // The unchanged invalid file is not parsed again at the next check.
        let rejected = policy.rejected.clone().unwrap();
        assert!(
            rejected.1.contains("field `credentials` has no entries"),
            "{}",
            rejected.1
        );
        assert_eq!(policy.reload(), Err(rejected.1));

        fs::remove_file(policy.path()).unwrap();
        assert!(policy.check(&token_read()).is_some());
        assert!(policy.failing);

        fs::write(policy.path(), "policies: []\n").unwrap();
        assert_eq!(policy.check(&token_read()), None);
        assert!(!policy.failing);
        assert!(policy.rejected.is_none());
        assert_eq!(policy.len(), 0);
    }
}
