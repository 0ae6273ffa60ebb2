//! Secrets in a process's arguments.
//!
//! Three shapes are recognised, with the same name rules as command-line redaction:
//! - an option with a secret name and its value, as `--password=VALUE`, `-token=VALUE` or
//!   `--api-key VALUE` (the value then being the next argument);
//! - an assignment with a secret name at the start of an argument, as in
//!   `env DB_PASSWORD=VALUE program`;
//! - a token of a known format anywhere in an argument.
//!
//! A value found by its name must also look like a secret (see
//! [`is_plausible_secret_value`]). The material is the value, so a token gets the same id
//! here as in a file. A value that occurs twice is reported once, at its first argument.

use std::collections::HashSet;

use super::{Identified, scan};
use crate::credential::{
    fingerprint::SecretBytes,
    patterns::{find_tokens, is_plausible_secret_value, is_secret_name, token_kind},
};

/// Type of a secret found by its option or variable name only.
pub const ARGUMENT_SECRET_TYPE: &str = "argument_secret";

/// Returns the secrets in `args` with the index of the argument that contains each.
pub(super) fn identify(args: &[String]) -> Vec<(usize, Identified)> {
    let mut found = Vec::new();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut push = |index: usize, item: Identified| {
        if seen.insert(item.material.expose().to_vec()) {
            found.push((index, item));
        }
    };

    for (index, arg) in args.iter().enumerate() {
        if let Some((name, value)) = named_value(arg) {
            if let Some(item) = describe(name, value.as_bytes()) {
                push(index, item);
            }
        } else if let Some(name) = option_name(arg)
            && is_secret_name(name)
            && let Some(next) = args.get(index + 1)
            && !next.starts_with('-')
            && let Some(item) = describe(name, next.as_bytes())
        {
            push(index + 1, item);
        }
        for token in find_tokens(arg.as_bytes()) {
            let bytes = &arg.as_bytes()[token.start..token.end];
            push(index, scan::token_item(token.kind, bytes));
        }
    }
    found
}

/// Describes a value found under `name`: a token when it has a known format, else a secret
/// when the name promises one and the value looks like one.
fn describe(name: &str, value: &[u8]) -> Option<Identified> {
    let value = value.trim_ascii();
    let mut item = if let Some(kind) = token_kind(value) {
        scan::token_item(kind, value)
    } else if is_secret_name(name) && is_plausible_secret_value(value) {
        Identified::new(ARGUMENT_SECRET_TYPE, SecretBytes::from_slice(value))
    } else {
        return None;
    };
    item.label = Some(name.to_string());
    Some(item)
}

/// Splits `--name=value`, `-name=value` and `NAME=value` into name and value. The name must
/// be a plain identifier, so a URL or an equation is not taken for an assignment.
fn named_value(arg: &str) -> Option<(&str, &str)> {
    let (left, value) = arg.split_once('=')?;
    let name = left.trim_start_matches('-');
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'));
    plain.then_some((name, value))
}

/// Returns the name of an option such as `--token` or `-password`, without its dashes.
fn option_name(arg: &str) -> Option<&str> {
    let name = arg.strip_prefix('-')?;
    let name = name.strip_prefix('-').unwrap_or(name);
    let plain = name.len() > 1
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'));
    plain.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| (*arg).to_string()).collect()
    }

    fn summary(found: &[(usize, Identified)]) -> Vec<(usize, String, Option<String>)> {
        found
            .iter()
            .map(|(index, item)| (*index, item.credential_type.clone(), item.label.clone()))
            .collect()
    }

    #[test]
    fn options_assignments_and_tokens() {
        let token = format!("glpat-{}", "MadeUp0Token".repeat(2));
        let list = args(&[
            "tool",
            "--password=made-up-password-1",
            "--api-key",
            "made-up-api-key-22",
            "-v",
            "DB_SECRET=made-up-db-secret",
            &format!("--header=PRIVATE-TOKEN: {token}"),
            "--timeout=30",
            "--token-file",
            "/run/made-up/token",
        ]);

        let found = identify(&list);

        assert_eq!(
            summary(&found),
            [
                (1, ARGUMENT_SECRET_TYPE.into(), Some("password".into())),
                (3, ARGUMENT_SECRET_TYPE.into(), Some("api-key".into())),
                (5, ARGUMENT_SECRET_TYPE.into(), Some("DB_SECRET".into())),
                (6, "gitlab_personal_access_token".into(), None),
            ]
        );
        assert_eq!(found[0].1.material.expose(), b"made-up-password-1");
        assert_eq!(found[1].1.material.expose(), b"made-up-api-key-22");
        assert_eq!(found[3].1.material.expose(), token.as_bytes());
    }

    #[test]
    fn placeholders_flags_and_repeats_are_skipped() {
        let list = args(&[
            "tool",
            "--password",
            "--verbose",
            "--token=changeme",
            "--secret=$SECRET",
            "https://example.test/?a=b",
            "--key=made-up-key-value-1",
            "--key=made-up-key-value-1",
        ]);

        let found = identify(&list);

        assert_eq!(
            summary(&found),
            [(6, ARGUMENT_SECRET_TYPE.into(), Some("key".into()))]
        );
    }

    #[test]
    fn odd_input_does_not_panic() {
        let list = args(&[
            "",
            "-",
            "--",
            "=",
            "--=x",
            "é=ü",
            "-\u{fffd}",
            "x".repeat(5000).as_str(),
        ]);
        assert!(identify(&list).is_empty());
    }
}
