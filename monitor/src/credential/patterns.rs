//! Recognition of credentials in free text: tokens by their prefix and shape, and variable
//! names that promise a secret value.
//!
//! The credential file parsers use these rules for files without a known structure and for
//! values inside known files. A scanner of process environments is to share them.

/// A credential format that [`find_tokens`] recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// AWS access key id of a long-term key (`AKIA`). An identifier, not a secret by itself.
    AwsAccessKeyId,
    /// AWS access key id of temporary credentials (`ASIA`). An identifier, not a secret by itself.
    AwsTemporaryAccessKeyId,
    /// GitHub personal access token, classic (`ghp_`) or fine-grained (`github_pat_`).
    GithubPersonalAccessToken,
    /// GitHub OAuth access token (`gho_`).
    GithubOauthToken,
    /// GitHub App user-to-server (`ghu_`) or installation (`ghs_`) token.
    GithubAppToken,
    /// GitHub App refresh token (`ghr_`).
    GithubRefreshToken,
    /// GitLab personal access token (`glpat-`).
    GitlabPersonalAccessToken,
    /// Slack bot, user, app or refresh token (`xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`).
    SlackToken,
    /// npm access token (`npm_`).
    NpmToken,
    /// PyPI API token (`pypi-`).
    PypiToken,
    /// HashiCorp Vault service (`hvs.`) or batch (`hvb.`) token.
    VaultToken,
    /// Anthropic API key (`sk-ant-`).
    AnthropicApiKey,
    /// OpenAI API key (`sk-proj-`, `sk-svcacct-`, `sk-admin-` or plain `sk-`).
    OpenaiApiKey,
    /// Google API key (`AIza`).
    GoogleApiKey,
    /// Stripe secret key (`sk_live_`, `sk_test_`).
    StripeSecretKey,
    /// Stripe restricted key (`rk_live_`, `rk_test_`).
    StripeRestrictedKey,
    /// JSON Web Token: three base64url segments, the first two encoding JSON objects.
    Jwt,
}

impl TokenKind {
    /// Returns the name used as a credential type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwsAccessKeyId => "aws_access_key_id",
            Self::AwsTemporaryAccessKeyId => "aws_temporary_access_key_id",
            Self::GithubPersonalAccessToken => "github_personal_access_token",
            Self::GithubOauthToken => "github_oauth_token",
            Self::GithubAppToken => "github_app_token",
            Self::GithubRefreshToken => "github_refresh_token",
            Self::GitlabPersonalAccessToken => "gitlab_personal_access_token",
            Self::SlackToken => "slack_token",
            Self::NpmToken => "npm_token",
            Self::PypiToken => "pypi_token",
            Self::VaultToken => "vault_token",
            Self::AnthropicApiKey => "anthropic_api_key",
            Self::OpenaiApiKey => "openai_api_key",
            Self::GoogleApiKey => "google_api_key",
            Self::StripeSecretKey => "stripe_secret_key",
            Self::StripeRestrictedKey => "stripe_restricted_key",
            Self::Jwt => "jwt",
        }
    }

    /// Tells whether a match of this kind identifies a credential without being its secret.
    pub fn is_identifier(self) -> bool {
        matches!(self, Self::AwsAccessKeyId | Self::AwsTemporaryAccessKeyId)
    }
}

/// A token found by [`find_tokens`]: its kind and its byte range in the scanned text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenMatch {
    /// Format of the token.
    pub kind: TokenKind,
    /// Offset of the first byte.
    pub start: usize,
    /// Offset after the last byte.
    pub end: usize,
}

/// A token format recognised by its prefix. The body is the run of `body` bytes after the
/// prefix, and it must have between `min_body` and `max_body` bytes.
struct Format {
    prefix: &'static [u8],
    kind: TokenKind,
    body: fn(u8) -> bool,
    min_body: usize,
    max_body: usize,
}

const fn format(
    prefix: &'static [u8],
    kind: TokenKind,
    body: fn(u8) -> bool,
    min_body: usize,
    max_body: usize,
) -> Format {
    Format {
        prefix,
        kind,
        body,
        min_body,
        max_body,
    }
}

/// Upper bound of a body length for formats without a documented length.
const LONG: usize = 1024;

/// Token formats, tried in order, so a prefix comes before the shorter prefixes it starts with
/// (`sk-ant-` before `sk-`). The lengths follow the formats that the issuers publish and are
/// kept strict enough that random words and base64 text rarely match.
const FORMATS: &[Format] = &[
    format(
        b"AKIA",
        TokenKind::AwsAccessKeyId,
        is_upper_alphanumeric,
        16,
        16,
    ),
    format(
        b"ASIA",
        TokenKind::AwsTemporaryAccessKeyId,
        is_upper_alphanumeric,
        16,
        16,
    ),
    format(
        b"github_pat_",
        TokenKind::GithubPersonalAccessToken,
        is_word,
        70,
        255,
    ),
    format(
        b"ghp_",
        TokenKind::GithubPersonalAccessToken,
        is_alphanumeric,
        36,
        255,
    ),
    format(
        b"gho_",
        TokenKind::GithubOauthToken,
        is_alphanumeric,
        36,
        255,
    ),
    format(b"ghu_", TokenKind::GithubAppToken, is_alphanumeric, 36, 255),
    format(b"ghs_", TokenKind::GithubAppToken, is_alphanumeric, 36, 255),
    format(
        b"ghr_",
        TokenKind::GithubRefreshToken,
        is_alphanumeric,
        36,
        255,
    ),
    format(
        b"glpat-",
        TokenKind::GitlabPersonalAccessToken,
        is_base64url,
        20,
        LONG,
    ),
    format(b"xoxa-", TokenKind::SlackToken, is_slack, 10, LONG),
    format(b"xoxb-", TokenKind::SlackToken, is_slack, 10, LONG),
    format(b"xoxp-", TokenKind::SlackToken, is_slack, 10, LONG),
    format(b"xoxr-", TokenKind::SlackToken, is_slack, 10, LONG),
    format(b"npm_", TokenKind::NpmToken, is_alphanumeric, 36, 36),
    format(b"pypi-", TokenKind::PypiToken, is_base64url, 50, LONG),
    format(b"hvs.", TokenKind::VaultToken, is_base64url, 24, LONG),
    format(b"hvb.", TokenKind::VaultToken, is_base64url, 24, LONG),
    format(
        b"sk-ant-",
        TokenKind::AnthropicApiKey,
        is_base64url,
        32,
        LONG,
    ),
    format(b"sk-proj-", TokenKind::OpenaiApiKey, is_base64url, 32, LONG),
    format(
        b"sk-svcacct-",
        TokenKind::OpenaiApiKey,
        is_base64url,
        32,
        LONG,
    ),
    format(
        b"sk-admin-",
        TokenKind::OpenaiApiKey,
        is_base64url,
        32,
        LONG,
    ),
    format(b"sk-", TokenKind::OpenaiApiKey, is_alphanumeric, 32, LONG),
    format(b"AIza", TokenKind::GoogleApiKey, is_base64url, 35, 35),
    format(
        b"sk_live_",
        TokenKind::StripeSecretKey,
        is_alphanumeric,
        24,
        LONG,
    ),
    format(
        b"sk_test_",
        TokenKind::StripeSecretKey,
        is_alphanumeric,
        24,
        LONG,
    ),
    format(
        b"rk_live_",
        TokenKind::StripeRestrictedKey,
        is_alphanumeric,
        24,
        LONG,
    ),
    format(
        b"rk_test_",
        TokenKind::StripeRestrictedKey,
        is_alphanumeric,
        24,
        LONG,
    ),
];

/// Minimum length of each of the first two JWT segments. `{"a":1}` already encodes to 10.
const MIN_JWT_SEGMENT: usize = 10;

/// Finds every token of a known format in `text`, in order and without overlaps.
///
/// A token must start at the beginning of a word: the byte before it is not an ASCII letter or
/// digit, nor one of `_ - . + /`, so tokens inside identifiers, paths and base64 text are not
/// reported. It must also end there: a body longer than its format allows is no match. The
/// scan takes time linear in the length of `text`.
pub fn find_tokens(text: &[u8]) -> Vec<TokenMatch> {
    let mut matches = Vec::new();
    let mut position = 0;
    while position < text.len() {
        if !starts_token(text, position) {
            position += 1;
            continue;
        }
        match match_at(text, position) {
            Some(found) => {
                matches.push(found);
                position = found.end;
            }
            None => position += 1,
        }
    }
    matches
}

/// Returns the kind of `value` when the whole of it, without surrounding ASCII whitespace, is
/// one token of a known format.
pub fn token_kind(value: &[u8]) -> Option<TokenKind> {
    let value = value.trim_ascii();
    match match_at(value, 0) {
        Some(found) if found.end == value.len() => Some(found.kind),
        _ => None,
    }
}

fn match_at(text: &[u8], start: usize) -> Option<TokenMatch> {
    let rest = &text[start..];
    for format in FORMATS {
        if !rest.starts_with(format.prefix) {
            continue;
        }
        let body_start = start + format.prefix.len();
        let body_end = scan_while(text, body_start, format.body);
        let body_len = body_end - body_start;
        if (format.min_body..=format.max_body).contains(&body_len) && ends_token(text, body_end) {
            return Some(TokenMatch {
                kind: format.kind,
                start,
                end: body_end,
            });
        }
        // A longer prefix that matched but failed decides; `sk-ant-x` is no plain `sk-` key.
        return None;
    }
    match_jwt(text, start)
}

/// Matches `header.payload.signature` where the first two segments start with `eyJ`, the
/// base64url encoding of `{"`. The signature may be empty, as in unsecured JWTs.
fn match_jwt(text: &[u8], start: usize) -> Option<TokenMatch> {
    let header_end = jwt_segment_end(text, start)?;
    let payload_end = jwt_segment_end(text, header_end + 1)?;
    let signature_end = scan_while(text, payload_end + 1, is_base64url);
    ends_token(text, signature_end).then_some(TokenMatch {
        kind: TokenKind::Jwt,
        start,
        end: signature_end,
    })
}

/// Returns the position of the `.` after a JWT segment that starts at `start`.
fn jwt_segment_end(text: &[u8], start: usize) -> Option<usize> {
    if !text.get(start..)?.starts_with(b"eyJ") {
        return None;
    }
    let end = scan_while(text, start, is_base64url);
    (end - start >= MIN_JWT_SEGMENT && text.get(end) == Some(&b'.')).then_some(end)
}

fn starts_token(text: &[u8], position: usize) -> bool {
    position == 0 || !is_token_neighbour(text[position - 1])
}

fn ends_token(text: &[u8], end: usize) -> bool {
    text.get(end).is_none_or(|&byte| !is_token_neighbour(byte))
}

fn is_token_neighbour(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.' | b'+' | b'/')
}

fn scan_while(text: &[u8], from: usize, accept: fn(u8) -> bool) -> usize {
    let mut index = from;
    while index < text.len() && accept(text[index]) {
        index += 1;
    }
    index
}

fn is_upper_alphanumeric(byte: u8) -> bool {
    byte.is_ascii_uppercase() || byte.is_ascii_digit()
}

fn is_alphanumeric(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
}

fn is_word(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

fn is_slack(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-'
}

fn is_base64url(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

// Secret names.

use crate::process::redact::secret_name as redact_secret_name;

/// Last words of names that hold a reference to a secret, not the secret: a file, directory,
/// socket or program, as in `AWS_WEB_IDENTITY_TOKEN_FILE`, `SSH_AUTH_SOCK` and `GIT_ASKPASS`,
/// or the identifier of a key, as in `AWS_ACCESS_KEY_ID`.
const REFERENCE_LAST_WORDS: &[&str] = &[
    "file", "files", "path", "paths", "dir", "sock", "socket", "askpass", "helper", "command",
    "id", "arn",
];

/// Words that mark a value as public, as in `STRIPE_PUBLISHABLE_KEY` or `SSH_PUBLIC_KEY`.
const PUBLIC_WORDS: &[&str] = &["public", "publishable", "pub", "pubkey"];

/// Prefixes of variables that desktop sessions and D-Bus set, whose `SESSION` word is no
/// secret, such as `XDG_SESSION_ID` and `DBUS_SESSION_BUS_ADDRESS`.
const SESSION_PREFIXES: &[&str] = &["XDG_", "DBUS_", "DESKTOP_SESSION", "SESSION_MANAGER"];

/// Tells whether a variable, key or field name promises a secret value, such as `DB_PASSWORD`,
/// `GITHUB_TOKEN`, `AWS_SECRET_ACCESS_KEY`, `OPENAI_API_KEY` or `clientSecret`.
///
/// The rule is the one that command-line redaction applies: a word of the name contains a
/// term such as `password`, `secret` or `token`, or equals one such as `key`, `auth` or
/// `session`. Excluded are names that contain a reference or a public value, which end in a
/// word such as `FILE`, `PATH`, `SOCK` or `ID` or contain `PUBLIC`, and desktop session
/// variables.
pub fn is_secret_name(name: &str) -> bool {
    if !redact_secret_name(name) {
        return false;
    }
    let upper = name.to_ascii_uppercase();
    if SESSION_PREFIXES
        .iter()
        .any(|prefix| upper.starts_with(prefix))
    {
        return false;
    }

    let words = name_words(name);
    let last_is_reference = words
        .last()
        .is_some_and(|word| REFERENCE_LAST_WORDS.contains(&word.as_str()));
    let has_public_word = words
        .iter()
        .any(|word| PUBLIC_WORDS.contains(&word.as_str()));
    !last_is_reference && !has_public_word
}

/// Splits a name into lowercase words at every byte that is not an ASCII letter or digit and
/// at lower-to-upper case changes, as in `clientSecretFile`.
fn name_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        let boundary = !c.is_ascii_alphanumeric() || (previous_lower && c.is_ascii_uppercase());
        if boundary && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        if c.is_ascii_alphanumeric() {
            current.push(c.to_ascii_lowercase());
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// Values under a secret name that are settings, not secrets.
const PLACEHOLDER_VALUES: &[&str] = &[
    "true", "false", "yes", "no", "on", "off", "null", "none", "nil", "changeme", "redacted",
];

/// Minimum length of a value that [`is_plausible_secret_value`] accepts.
pub const MIN_SECRET_VALUE_LEN: usize = 8;

/// Tells whether a value found under a secret name looks like a secret and not like a setting,
/// a reference or an empty placeholder.
///
/// Rejected are values shorter than [`MIN_SECRET_VALUE_LEN`] bytes, all-digit values such as
/// timeouts, words such as `true` or `changeme`, absolute and home-relative paths, variable
/// references such as `${TOKEN}` or `$(cat file)`, and URLs without a password.
pub fn is_plausible_secret_value(value: &[u8]) -> bool {
    let value = value.trim_ascii();
    if value.len() < MIN_SECRET_VALUE_LEN || value.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let lower = value.to_ascii_lowercase();
    if PLACEHOLDER_VALUES
        .iter()
        .any(|word| lower == word.as_bytes())
    {
        return false;
    }
    if value.starts_with(b"/") || value.starts_with(b"~/") || value.starts_with(b"$") {
        return false;
    }
    match url_authority(value) {
        Some(authority) => authority_has_password(authority),
        None => true,
    }
}

/// Returns the authority of `scheme://authority/...`, or `None` when `value` is no URL.
fn url_authority(value: &[u8]) -> Option<&[u8]> {
    let separator = value.windows(3).position(|window| window == b"://")?;
    let scheme = &value[..separator];
    let is_scheme = !scheme.is_empty()
        && scheme
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.'));
    if !is_scheme {
        return None;
    }
    let rest = &value[separator + 3..];
    let end = rest
        .iter()
        .position(|&byte| matches!(byte, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

fn authority_has_password(authority: &[u8]) -> bool {
    match authority.iter().rposition(|&byte| byte == b'@') {
        Some(at) => authority[..at].contains(&b':'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        find_tokens(text.as_bytes())
            .iter()
            .map(|found| found.kind)
            .collect()
    }

    fn repeat(unit: &str, len: usize) -> String {
        unit.chars().cycle().take(len).collect()
    }

    /// One made-up token of every format, with the kind it must be found as.
    fn made_up_tokens() -> Vec<(String, TokenKind)> {
        vec![
            (
                "AKIAMADEUPEXAMPLE234".to_string(),
                TokenKind::AwsAccessKeyId,
            ),
            (
                "ASIAMADEUPEXAMPLE567".to_string(),
                TokenKind::AwsTemporaryAccessKeyId,
            ),
            (
                format!("ghp_{}", repeat("Fake0", 36)),
                TokenKind::GithubPersonalAccessToken,
            ),
            (
                format!("github_pat_{}", repeat("Fake_0", 82)),
                TokenKind::GithubPersonalAccessToken,
            ),
            (
                format!("gho_{}", repeat("Fake1", 36)),
                TokenKind::GithubOauthToken,
            ),
            (
                format!("ghs_{}", repeat("Fake2", 36)),
                TokenKind::GithubAppToken,
            ),
            (
                format!("ghu_{}", repeat("Fake3", 36)),
                TokenKind::GithubAppToken,
            ),
            (
                format!("ghr_{}", repeat("Fake4", 36)),
                TokenKind::GithubRefreshToken,
            ),
            (
                format!("glpat-{}", repeat("Fake-5", 20)),
                TokenKind::GitlabPersonalAccessToken,
            ),
            (
                format!("xoxb-{}", repeat("1234-fake", 30)),
                TokenKind::SlackToken,
            ),
            (
                format!("xoxp-{}", repeat("1234-fake", 30)),
                TokenKind::SlackToken,
            ),
            (
                format!("xoxa-{}", repeat("1234-fake", 30)),
                TokenKind::SlackToken,
            ),
            (
                format!("xoxr-{}", repeat("1234-fake", 30)),
                TokenKind::SlackToken,
            ),
            (format!("npm_{}", repeat("Fake6", 36)), TokenKind::NpmToken),
            (
                format!("pypi-AgEIcHlwaS5vcmc{}", repeat("Fake_7", 60)),
                TokenKind::PypiToken,
            ),
            (
                format!("hvs.{}", repeat("Fake-8", 90)),
                TokenKind::VaultToken,
            ),
            (
                format!("hvb.{}", repeat("Fake-8", 90)),
                TokenKind::VaultToken,
            ),
            (
                format!("sk-ant-api03-{}", repeat("Fake_9", 90)),
                TokenKind::AnthropicApiKey,
            ),
            (
                format!("sk-proj-{}", repeat("Fake_a", 120)),
                TokenKind::OpenaiApiKey,
            ),
            (
                format!("sk-{}", repeat("Fakeb", 48)),
                TokenKind::OpenaiApiKey,
            ),
            (
                format!("AIza{}", repeat("Fake_c-", 35)),
                TokenKind::GoogleApiKey,
            ),
            (
                format!("sk_live_{}", repeat("Faked", 24)),
                TokenKind::StripeSecretKey,
            ),
            (
                format!("rk_live_{}", repeat("Fakee", 24)),
                TokenKind::StripeRestrictedKey,
            ),
            (
                "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWRlLXVwIn0.bWFkZS11cA".to_string(),
                TokenKind::Jwt,
            ),
        ]
    }

    #[test]
    fn find_tokens_every_format() {
        for (token, kind) in made_up_tokens() {
            let text = format!("before {token} after");

            let found = find_tokens(text.as_bytes());

            assert_eq!(found.len(), 1, "{token}: {found:?}");
            assert_eq!(found[0].kind, kind, "{token}");
            assert_eq!(&text[found[0].start..found[0].end], token);
            assert_eq!(token_kind(token.as_bytes()), Some(kind), "{token}");
        }
    }

    #[test]
    fn find_tokens_in_assignments_and_quotes() {
        let text = "A=AKIAMADEUPEXAMPLE234\n\"key\": \"ASIAMADEUPEXAMPLE567\",token:'AKIAMADEUPEXAMPLE999'";

        assert_eq!(
            kinds(text),
            [
                TokenKind::AwsAccessKeyId,
                TokenKind::AwsTemporaryAccessKeyId,
                TokenKind::AwsAccessKeyId,
            ]
        );
    }

    #[test]
    fn find_tokens_rejects_inside_words() {
        assert!(kinds("XAKIAMADEUPEXAMPLE234").is_empty());
        assert!(kinds("/path/AKIAMADEUPEXAMPLE234").is_empty());
        assert!(kinds("task-0123456789abcdef0123456789abcdef0123").is_empty());
        assert!(kinds("base64+AKIAMADEUPEXAMPLE234").is_empty());
    }

    #[test]
    fn find_tokens_rejects_wrong_lengths() {
        assert!(kinds("AKIAMADEUPEXAMPLE23").is_empty(), "too short");
        assert!(kinds("AKIAMADEUPEXAMPLE2345").is_empty(), "too long");
        assert!(kinds("ghp_short").is_empty());
        assert!(kinds(&format!("AIza{}", repeat("x", 36))).is_empty());
        assert!(kinds("npm_install").is_empty());
        assert!(kinds("sk-learn").is_empty());
    }

    #[test]
    fn find_tokens_longer_prefix_decides() {
        // An `sk-ant-` key too short for Anthropic is not reported as an OpenAI key either.
        assert!(kinds(&format!("sk-ant-{}", repeat("a", 10))).is_empty());
    }

    #[test]
    fn find_tokens_jwt_needs_json_segments() {
        assert!(kinds("eyJhbGciOiJub25lIn0.notjson.x").is_empty());
        assert!(kinds("eyJhbGciOiJub25lIn0").is_empty());
    }

    #[test]
    fn find_tokens_several_adjacent() {
        let text = "AKIAMADEUPEXAMPLE234,AKIAMADEUPEXAMPLE567 AKIAMADEUPEXAMPLE890";

        assert_eq!(find_tokens(text.as_bytes()).len(), 3);
    }

    #[test]
    fn find_tokens_binary_input() {
        let mut text = vec![0xff, 0x00, 0x80];
        text.extend_from_slice(b"AKIAMADEUPEXAMPLE234");
        text.push(0xfe);

        let found = find_tokens(&text);

        assert_eq!(found.len(), 1);
        assert_eq!(found[0].start, 3);
    }

    #[test]
    fn token_kind_whole_value_only() {
        assert_eq!(
            token_kind(b" AKIAMADEUPEXAMPLE234\n"),
            Some(TokenKind::AwsAccessKeyId)
        );
        assert_eq!(token_kind(b"AKIAMADEUPEXAMPLE234 extra"), None);
        assert_eq!(token_kind(b""), None);
    }

    #[test]
    fn secret_names() {
        for name in [
            "DB_PASSWORD",
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "OPENAI_API_KEY",
            "CLIENT_SECRET",
            "MY_SECRET_VALUE",
            "clientSecret",
            "PGPASSWORD",
            "SECRET_KEY_BASE",
            "api-key",
        ] {
            assert!(is_secret_name(name), "{name} should be secret");
        }
    }

    #[test]
    fn non_secret_names() {
        for name in [
            "PATH",
            "HOME",
            "PWD",
            "AWS_ACCESS_KEY_ID",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "SSH_AUTH_SOCK",
            "GIT_ASKPASS",
            "PASSWORD_STORE_DIR",
            "STRIPE_PUBLISHABLE_KEY",
            "SSH_PUBLIC_KEY",
            "XDG_SESSION_ID",
            "DBUS_SESSION_BUS_ADDRESS",
            "SESSION_MANAGER",
            "KEYBOARD_LAYOUT",
            "AUTHOR",
        ] {
            assert!(!is_secret_name(name), "{name} should not be secret");
        }
    }

    #[test]
    fn plausible_secret_values() {
        for value in ["s3cr3t-made-up", "postgres://user:made-up@db/x", "0123abcd"] {
            assert!(is_plausible_secret_value(value.as_bytes()), "{value}");
        }
        for value in [
            "",
            "short",
            "300000000",
            "changeme",
            "TRUE",
            "/run/secrets/token",
            "~/.config/token",
            "${API_TOKEN}",
            "https://auth.example.test/login",
            "https://user@auth.example.test/",
        ] {
            assert!(!is_plausible_secret_value(value.as_bytes()), "{value}");
        }
    }
}
