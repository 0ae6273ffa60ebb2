//! Credential formats: prefixed tokens, JWTs and PEM blocks.

use super::{
    REDACTED,
    bytes::{scan_while, starts_word},
};

/// A credential format recognised by its prefix.
struct TokenFormat {
    prefix: &'static str,
    body: fn(u8) -> bool,
    /// Body length in bytes that a complete token has at least.
    min_body_len: usize,
}

const fn token_format(
    prefix: &'static str,
    body: fn(u8) -> bool,
    min_body_len: usize,
) -> TokenFormat {
    TokenFormat {
        prefix,
        body,
        min_body_len,
    }
}

/// Credential formats found anywhere in an argument. JWTs and PEM blocks have their own
/// matchers.
const TOKEN_FORMATS: &[TokenFormat] = &[
    // AWS access key IDs for long-term and temporary credentials.
    token_format("AKIA", is_upper_alphanumeric, 16),
    token_format("ASIA", is_upper_alphanumeric, 16),
    // GitHub tokens.
    token_format("ghp_", is_alphanumeric, 10),
    token_format("gho_", is_alphanumeric, 10),
    token_format("ghu_", is_alphanumeric, 10),
    token_format("ghs_", is_alphanumeric, 10),
    token_format("ghr_", is_alphanumeric, 10),
    token_format("github_pat_", is_word_byte, 10),
    // Slack tokens.
    token_format("xoxa-", is_slack_byte, 8),
    token_format("xoxb-", is_slack_byte, 8),
    token_format("xoxp-", is_slack_byte, 8),
    token_format("xoxr-", is_slack_byte, 8),
    token_format("xoxs-", is_slack_byte, 8),
    token_format("xapp-", is_slack_byte, 8),
    // Google API keys.
    token_format("AIza", is_base64url, 35),
    // HashiCorp Vault service and batch tokens.
    token_format("hvs.", is_base64url, 20),
    token_format("hvb.", is_base64url, 20),
    // GitLab, Stripe, Hugging Face, npm and age.
    token_format("glpat-", is_base64url, 20),
    token_format("sk_live_", is_alphanumeric, 10),
    token_format("sk_test_", is_alphanumeric, 10),
    token_format("rk_live_", is_alphanumeric, 10),
    token_format("hf_", is_alphanumeric, 30),
    token_format("npm_", is_alphanumeric, 36),
    token_format("AGE-SECRET-KEY-1", is_upper_alphanumeric, 10),
];

/// Redacts values in [`TOKEN_FORMATS`] and JWTs wherever they start a word. With
/// `may_be_truncated`, a prefix that runs into the end of the text is redacted even when
/// the rest of the token is missing.
pub(super) fn redact_token_formats(text: &str, may_be_truncated: bool) -> String {
    let bytes = text.as_bytes();
    let mut output = String::with_capacity(text.len());
    let mut copied = 0;
    let mut position = 0;
    // Positions before this cannot start a JWT, as `match_jwt` explains.
    let mut jwt_blocked_until = 0;

    while position < bytes.len() {
        if !starts_word(bytes, position) {
            position += 1;
            continue;
        }

        let mut token_end = match_token_format(bytes, position, may_be_truncated);
        if token_end.is_none() && position >= jwt_blocked_until {
            match match_jwt(bytes, position, may_be_truncated) {
                Ok(end) => token_end = Some(end),
                Err(blocked_until) => jwt_blocked_until = blocked_until,
            }
        }

        match token_end {
            Some(end) => {
                output.push_str(&text[copied..position]);
                output.push_str(REDACTED);
                copied = end;
                position = end;
            }
            None => position += 1,
        }
    }

    output.push_str(&text[copied..]);
    output
}

/// Returns the end of a token in one of [`TOKEN_FORMATS`] that starts at `start`.
fn match_token_format(bytes: &[u8], start: usize, may_be_truncated: bool) -> Option<usize> {
    let rest = &bytes[start..];
    TOKEN_FORMATS.iter().find_map(|format| {
        if !rest.starts_with(format.prefix.as_bytes()) {
            return None;
        }
        let body_start = start + format.prefix.len();
        let body_end = scan_while(bytes, body_start, format.body);
        let complete = body_end - body_start >= format.min_body_len;
        let truncated = may_be_truncated && body_end == bytes.len() && body_end > body_start;
        (complete || truncated).then_some(body_end)
    })
}

/// Matches a JWT, three base64url segments separated by dots, the first starting with
/// `eyJ` (`{"` encoded). The third segment may be empty for unsigned tokens. With
/// `may_be_truncated`, a token cut off by the end of the text matches too.
///
/// On failure, returns the first position after `start` where a JWT could still start.
/// That is the end of the first segment: a start inside it has the same segment ends, so
/// it fails the same way.
fn match_jwt(bytes: &[u8], start: usize, may_be_truncated: bool) -> Result<usize, usize> {
    if !bytes[start..].starts_with(b"eyJ") {
        return Err(start + 1);
    }

    let first_end = scan_while(bytes, start, is_base64url);
    if first_end == bytes.len() {
        return if may_be_truncated {
            Ok(first_end)
        } else {
            Err(first_end)
        };
    }
    if bytes[first_end] != b'.' {
        return Err(first_end);
    }

    let second_end = scan_while(bytes, first_end + 1, is_base64url);
    if second_end == bytes.len() {
        return if may_be_truncated {
            Ok(second_end)
        } else {
            Err(first_end)
        };
    }
    if second_end == first_end + 1 || bytes[second_end] != b'.' {
        return Err(first_end);
    }

    Ok(scan_while(bytes, second_end + 1, is_base64url))
}

/// Replaces PEM blocks from `-----BEGIN` through their `-----END ...-----` line. A block
/// without an end runs to the end of the text.
pub(super) fn redact_pem_blocks(text: &str) -> String {
    const BEGIN: &str = "-----BEGIN";
    const END: &str = "-----END";
    const DASHES: &str = "-----";

    let mut output = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(begin) = rest.find(BEGIN) {
        output.push_str(&rest[..begin]);
        output.push_str(REDACTED);

        let block = &rest[begin + BEGIN.len()..];
        rest = match block.find(END) {
            Some(end) => {
                let label = &block[end + END.len()..];
                label
                    .find(DASHES)
                    .map_or("", |dashes| &label[dashes + DASHES.len()..])
            }
            None => "",
        };
    }
    output.push_str(rest);
    output
}

fn is_upper_alphanumeric(byte: u8) -> bool {
    byte.is_ascii_uppercase() || byte.is_ascii_digit()
}

fn is_alphanumeric(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

fn is_slack_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-'
}

fn is_base64url(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}
