//! URL redaction: user information, and query and fragment parameters.

use std::borrow::Cow;

use super::{
    REDACTED,
    bytes::{is_key_byte, is_scheme_byte, is_url_end, scan_while},
    names::is_secret_name,
};

/// Maximum length of a recognised URL scheme, in bytes.
const MAX_SCHEME_LEN: usize = 32;

/// Maximum length of a user name kept in a URL without a password, in bytes. Longer user
/// information is more often a token than a login name.
const MAX_URL_USER_NAME_LEN: usize = 16;

/// Query and fragment parameters that are secret although the name alone is not.
/// `code` is the OAuth authorization code in a redirect URL.
const SECRET_URL_PARAMETERS: &[&str] = &["code"];

/// Returns the byte ranges of `scheme://...` URLs. A URL ends at whitespace, a quote, `<`,
/// `>` or a backtick.
pub(super) fn find_url_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut search_from = 0;

    while let Some(found) = text[search_from..].find("://") {
        let separator = search_from + found;
        let end = scan_while(bytes, separator + 3, |byte| !is_url_end(byte));
        if let Some(start) = scheme_start(bytes, separator) {
            spans.push((start, end));
        }
        search_from = end;
    }
    spans
}

/// Returns where the scheme before `://` at `separator` starts. A scheme starts with a
/// letter and continues with letters, digits, `+`, `-` and `.`.
fn scheme_start(bytes: &[u8], separator: usize) -> Option<usize> {
    let limit = separator.saturating_sub(MAX_SCHEME_LEN);
    let mut start = separator;
    while start > limit && is_scheme_byte(bytes[start - 1]) {
        start -= 1;
    }

    let first_letter = (start..separator).find(|&index| bytes[index].is_ascii_alphabetic())?;
    Some(first_letter)
}

/// Redacts the password and secret parameters of one URL, which contains `://`.
pub(super) fn redact_url(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |index| index + 3);
    let authority_end = find_authority_end(url, authority_start);

    let mut output = String::with_capacity(url.len());
    output.push_str(&url[..authority_start]);
    output.push_str(&redact_user_info(&url[authority_start..authority_end]));

    let rest = &url[authority_end..];
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (rest, None),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (before_fragment, None),
    };

    output.push_str(path);
    if let Some(query) = query {
        output.push('?');
        output.push_str(&redact_url_parameters(query));
    }
    if let Some(fragment) = fragment {
        output.push('#');
        output.push_str(&redact_url_parameters(fragment));
    }
    output
}

/// Returns where the authority (`user:password@host:port`) of a URL ends.
///
/// It normally ends at the first `/`, `?` or `#`. A password may contain those characters
/// unencoded, as in `https://user:pa/ss@host`. Then the authority before the first `/` has
/// a `:` not followed by a port number and no `@`, and it is extended to the host after
/// the last `@` of the URL.
fn find_authority_end(url: &str, authority_start: usize) -> usize {
    let rest = &url[authority_start..];
    let first_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..first_end];

    let has_password_colon = authority.split_once(':').is_some_and(|(_, after)| {
        !after.is_empty() && !after.bytes().all(|byte| byte.is_ascii_digit())
    });
    let is_ipv6 = authority.starts_with('[');
    let extended = if has_password_colon && !is_ipv6 && !authority.contains('@') {
        rest.rfind('@').map(|at| {
            let host = &rest[at..];
            at + host.find(['/', '?', '#']).unwrap_or(host.len())
        })
    } else {
        None
    };

    authority_start + extended.unwrap_or(first_end)
}

/// Redacts the password of `user:password@host` without a scheme, as in `curl -x
/// user:password@proxy:3128` or `HTTP_PROXY=user:password@proxy`. The rule applies to a
/// whole argument without whitespace, or to the value of its leading `NAME=`. Container
/// image references such as `image:tag@sha256:...` are kept.
pub(super) fn redact_bare_user_info(text: &str) -> Cow<'_, str> {
    let value_start = match text.split_once('=') {
        Some((name, _)) if name.bytes().all(is_key_byte) => name.len() + 1,
        _ => 0,
    };
    let value = &text[value_start..];
    let is_candidate =
        !value.contains("://") && !value.bytes().any(|byte| byte.is_ascii_whitespace());
    let Some((user_info, host)) = value.rsplit_once('@').filter(|_| is_candidate) else {
        return Cow::Borrowed(text);
    };

    let is_image_digest = host.starts_with("sha256:") || host.starts_with("sha512:");
    let Some((user, password)) = user_info.split_once(':') else {
        return Cow::Borrowed(text);
    };
    if is_image_digest || host.is_empty() || password.is_empty() {
        return Cow::Borrowed(text);
    }

    let prefix = &text[..value_start];
    Cow::Owned(format!("{prefix}{user}:{REDACTED}@{host}"))
}

/// Redacts the password in `user:password@host`. User information without a password is
/// kept only when it looks like a login name, because tokens are often passed as the user
/// (`https://TOKEN@github.com/...`).
fn redact_user_info(authority: &str) -> Cow<'_, str> {
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return Cow::Borrowed(authority);
    };

    match user_info.split_once(':') {
        Some((_, "")) => Cow::Borrowed(authority),
        Some((user, _)) => Cow::Owned(format!("{user}:{REDACTED}@{host}")),
        None if looks_like_login_name(user_info) => Cow::Borrowed(authority),
        None => Cow::Owned(format!("{REDACTED}@{host}")),
    }
}

/// Matches the login names that `useradd` accepts by default, up to
/// `MAX_URL_USER_NAME_LEN` bytes.
fn looks_like_login_name(user: &str) -> bool {
    let bytes = user.as_bytes();
    let Some(&first) = bytes.first() else {
        return true;
    };

    let first_ok = first.is_ascii_lowercase() || first == b'_';
    let rest_ok = bytes[1..].iter().all(|&byte| {
        byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'_' | b'-' | b'.')
    });
    bytes.len() <= MAX_URL_USER_NAME_LEN && first_ok && rest_ok
}

/// Redacts the values of secret parameters in a query or fragment, separated by `&` or
/// `;`. A name is judged by its words, so `#/callback?token=x` is found too.
fn redact_url_parameters(parameters: &str) -> String {
    let mut output = String::with_capacity(parameters.len());
    for piece in parameters.split_inclusive(['&', ';']) {
        let parameter = piece.strip_suffix(['&', ';']).unwrap_or(piece);
        output.push_str(&redact_url_parameter(parameter));
        output.push_str(&piece[parameter.len()..]);
    }
    output
}

fn redact_url_parameter(parameter: &str) -> Cow<'_, str> {
    let Some((name, value)) = parameter.split_once('=') else {
        return Cow::Borrowed(parameter);
    };

    let secret = is_secret_name(name)
        || SECRET_URL_PARAMETERS
            .iter()
            .any(|secret| name.eq_ignore_ascii_case(secret));
    if secret && !value.is_empty() {
        Cow::Owned(format!("{name}={REDACTED}"))
    } else {
        Cow::Borrowed(parameter)
    }
}
