//! npm configuration (`.npmrc`): auth tokens, basic auth and passwords, globally or scoped to
//! a registry as in `//registry.npmjs.org/:_authToken=...`.
//!
//! The material is the token, the stored `_auth` value or the password. Values that refer to
//! an environment variable, such as `${NPM_TOKEN}`, hold no secret and are skipped.

use super::{
    Identified, IdentifyError,
    ini::{self, EQUALS, Entry},
    text::{decode_base64, utf8},
};
use crate::credential::{
    fingerprint::SecretBytes,
    patterns::{TokenKind, token_kind},
};

const EXPECTED: &str = ".npmrc file";

/// Registry of global settings without a `registry` key.
const DEFAULT_REGISTRY: &str = "https://registry.npmjs.org/";

/// Identifies the credentials of an `.npmrc` file.
pub(super) fn identify(contents: &[u8]) -> Result<Vec<Identified>, IdentifyError> {
    let text = utf8(contents, EXPECTED)?;
    let sections = ini::parse(text, EQUALS);
    let entries: Vec<&Entry<'_>> = sections
        .iter()
        .flat_map(|section| &section.entries)
        .collect();
    let global_registry = entries
        .iter()
        .rev()
        .find(|entry| entry.key == "registry")
        .map_or(DEFAULT_REGISTRY, |entry| unquote(entry.value));

    let mut found = Vec::new();
    for entry in &entries {
        let (registry, setting) = match entry.key.rsplit_once(':') {
            Some((scope, setting)) if scope.starts_with("//") => (scope, setting),
            _ => (global_registry, entry.key),
        };
        let value = unquote(entry.value);
        if value.is_empty() || value.starts_with("${") {
            continue;
        }
        let username = username_for(&entries, registry);
        if let Some(mut item) = describe(setting, value, registry, username) {
            item.label = Some(registry.to_string());
            item.detail("registry", registry);
            item.detail("line", entry.line);
            found.push(item);
        }
    }
    Ok(found)
}

fn describe(
    setting: &str,
    value: &str,
    registry: &str,
    username: Option<&str>,
) -> Option<Identified> {
    let material = SecretBytes::from_slice(value.as_bytes());
    match setting {
        "_authToken" => {
            let mut item = Identified::new("npm_token", material);
            let kind = match token_kind(value.as_bytes()) {
                Some(TokenKind::NpmToken) => "npm_access_token",
                _ => "opaque",
            };
            item.detail("token_kind", kind);
            Some(item)
        }
        "_auth" => {
            let mut item = Identified::new("npm_basic_auth", material);
            let user = decode_base64(value).and_then(|decoded| {
                let text = std::str::from_utf8(decoded.expose()).ok()?;
                Some(text.split_once(':')?.0.to_string())
            });
            item.native_id = user.as_ref().map(|user| format!("{user}@{registry}"));
            item.detail_opt("username", user);
            Some(item)
        }
        "_password" => {
            let mut item = Identified::new("npm_password", material);
            item.native_id = username.map(|user| format!("{user}@{registry}"));
            item.detail_opt("username", username);
            Some(item)
        }
        _ => None,
    }
}

fn username_for<'a>(entries: &[&Entry<'a>], registry: &str) -> Option<&'a str> {
    entries
        .iter()
        .rev()
        .find(|entry| entry.key == format!("{registry}:username") || entry.key == "username")
        .map(|entry| unquote(entry.value))
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NPM_TOKEN: &str = "npm_MadeUpMadeUpMadeUpMadeUpMadeUp012345";

    #[test]
    fn scoped_and_global_settings() {
        let text = format!(
            "registry=https://npm.example.test/\n\
             //registry.npmjs.org/:_authToken={NPM_TOKEN}\n\
             //npm.pkg.example.test/:_authToken=${{GITHUB_TOKEN}}\n\
             _auth=dXNlcjptYWRlLXVw\n\
             //private.example.test/repo/:username=builder\n\
             //private.example.test/repo/:_password=\"bWFkZS11cA==\"\n"
        );

        let found = identify(text.as_bytes()).unwrap();

        assert_eq!(found.len(), 3);
        assert_eq!(found[0].credential_type, "npm_token");
        assert_eq!(found[0].label.as_deref(), Some("//registry.npmjs.org/"));
        assert_eq!(found[0].details["token_kind"], "npm_access_token");
        assert_eq!(found[0].material.expose(), NPM_TOKEN.as_bytes());
        assert_eq!(found[1].credential_type, "npm_basic_auth");
        assert_eq!(found[1].label.as_deref(), Some("https://npm.example.test/"));
        assert_eq!(found[1].details["username"], "user");
        assert_eq!(found[2].credential_type, "npm_password");
        assert_eq!(
            found[2].native_id.as_deref(),
            Some("builder@//private.example.test/repo/")
        );
        assert_eq!(found[2].material.expose(), b"bWFkZS11cA==");
    }

    #[test]
    fn no_credentials() {
        let found = identify(b"save-exact=true\n; comment\n").unwrap();

        assert!(found.is_empty());
    }
}
