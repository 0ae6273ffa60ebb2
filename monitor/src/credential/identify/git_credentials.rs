//! The store of git's `credential-store` helper: one URL per line,
//! `https://user:password@host[/path]`, with user and password percent-encoded.
//!
//! The material is the decoded password, and the native id `user@host`.

use super::{Identified, IdentifyError, text::utf8};
use crate::credential::fingerprint::SecretBytes;

const EXPECTED: &str = "git credential store";

/// Identifies the credentials of a git credential store.
pub(super) fn identify(contents: &[u8]) -> Result<Vec<Identified>, IdentifyError> {
    let text = utf8(contents, EXPECTED)?;
    let mut found = Vec::new();
    let mut first_invalid_line = None;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Some(mut item) => {
                item.detail("line", index + 1);
                found.push(item);
            }
            None => {
                first_invalid_line.get_or_insert(index + 1);
            }
        }
    }

    match (found.is_empty(), first_invalid_line) {
        (true, Some(line)) => Err(IdentifyError::invalid(
            EXPECTED,
            format!("line {line} is not a URL of the form scheme://user:password@host"),
        )),
        _ => Ok(found),
    }
}

fn parse_line(line: &str) -> Option<Identified> {
    let (scheme, rest) = line.split_once("://")?;
    let is_scheme = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.'));
    if !is_scheme {
        return None;
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (user_info, host) = authority.rsplit_once('@')?;
    let (user, password) = user_info.split_once(':')?;
    if !is_host(host) {
        return None;
    }
    let user = percent_decode(user)?;
    let password = SecretBytes::new(percent_decode(password)?.into_bytes());

    let mut item = Identified::new("git_credential", password);
    item.native_id = Some(format!("{user}@{host}"));
    item.label = Some(host.to_string());
    item.detail("scheme", scheme);
    item.detail("host", host);
    item.detail("username", user);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if !path.is_empty() && path != "/" {
        item.detail("path", path);
    }
    Some(item)
}

/// Tells whether `host` is a host name, IPv4 address or bracketed IPv6 address with an
/// optional numeric port.
fn is_host(host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((address, rest)) if rest.is_empty() || rest.starts_with(':') => {
                (address, rest.trim_start_matches(':'))
            }
            _ => return false,
        },
        None => host.split_once(':').unwrap_or((host, "")),
    };
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_' | b':'));
    valid_name && port.bytes().all(|byte| byte.is_ascii_digit())
}

/// Decodes `%XX` escapes. Returns `None` for an invalid escape or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut output = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let digits = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
            output.push(u8::from_str_radix(digits, 16).ok()?);
            index += 3;
        } else {
            output.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(output).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_lines() {
        let text = "https://builder:made-up%40pass@git.example.test\n\n\
                    http://a%20b:made-up-2@192.0.2.4:8080/org/repo.git\n";

        let found = identify(text.as_bytes()).unwrap();

        assert_eq!(found.len(), 2);
        assert_eq!(found[0].credential_type, "git_credential");
        assert_eq!(
            found[0].native_id.as_deref(),
            Some("builder@git.example.test")
        );
        assert_eq!(found[0].material.expose(), b"made-up@pass");
        assert_eq!(found[1].native_id.as_deref(), Some("a b@192.0.2.4:8080"));
        assert_eq!(found[1].details["path"], "/org/repo.git");
        assert_eq!(found[1].details["line"], 3);
    }

    #[test]
    fn lines_without_password_or_host_skipped() {
        let text = "https://user@git.example.test\nhttps://user:made-up\nhttps://u:made-up@git.example.test\n";

        let found = identify(text.as_bytes()).unwrap();

        assert_eq!(found.len(), 1);
        assert_eq!(found[0].details["line"], 3);
    }

    #[test]
    fn no_url_at_all_is_invalid() {
        let error = identify(b"just some words\n").unwrap_err();

        assert!(error.to_string().contains("line 1"), "{error}");
    }
}
