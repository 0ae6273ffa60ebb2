//! The fallback for catalogue types without a parser: PEM blocks, and tokens of the formats
//! that [`find_tokens`] recognises anywhere in the file.
//!
//! The material of a token is the token, and a token that occurs several times is reported
//! once.

use std::collections::HashSet;

use super::{Identified, aws, jwt, pem, pki};
use crate::credential::{
    fingerprint::SecretBytes,
    patterns::{TokenKind, find_tokens},
};

/// Identifies the PEM credentials and tokens in a file of unknown format. Text that fails to
/// parse is skipped, so the result may be empty but is never an error.
pub(super) fn identify(contents: &[u8]) -> Vec<Identified> {
    let mut found = Vec::new();
    if let Ok(text) = std::str::from_utf8(contents)
        && pem::contains_pem(text)
        && let Ok(items) = pki::identify_pem(text, contents)
    {
        found.extend(items);
    }

    let mut seen = HashSet::new();
    for token in find_tokens(contents) {
        let bytes = &contents[token.start..token.end];
        if !seen.insert(bytes) {
            continue;
        }
        let mut item = token_item(token.kind, bytes);
        item.detail("offset", token.start);
        found.push(item);
    }
    found
}

/// Describes one token of a known format. A JWT is decoded for its claims; an AWS key id
/// gets its account.
pub(super) fn token_item(kind: TokenKind, token: &[u8]) -> Identified {
    if kind == TokenKind::Jwt
        && let Ok(text) = std::str::from_utf8(token)
        && let Ok(item) = jwt::decode(text, kind.as_str())
    {
        return item;
    }

    let mut item = Identified::new(kind.as_str(), SecretBytes::from_slice(token));
    if kind.is_identifier()
        && let Ok(key_id) = std::str::from_utf8(token)
    {
        item.native_id = Some(key_id.to_string());
        if let Some(account) = aws::account_from_key_id(key_id) {
            item.detail("account_id", account);
            item.detail("account_id_source", "access_key_id");
        }
    }
    item
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::credential::identify::fixtures::{COMMITTED_CERTIFICATE, make_jwt};

    #[test]
    fn tokens_pem_and_duplicates() {
        let jwt = make_jwt(
            &json!({"alg": "none"}),
            &json!({"sub": "made-up", "exp": 1}),
        );
        let text = format!(
            "key: AKIAMADEUPEXAMPLE234\nagain: AKIAMADEUPEXAMPLE234\nid_token: {jwt}\n{COMMITTED_CERTIFICATE}"
        );

        let found = identify(text.as_bytes());

        let types: Vec<&str> = found
            .iter()
            .map(|item| item.credential_type.as_str())
            .collect();
        assert_eq!(types, ["x509_certificate", "aws_access_key_id", "jwt"]);
        assert_eq!(found[1].native_id.as_deref(), Some("AKIAMADEUPEXAMPLE234"));
        assert_eq!(found[1].details["offset"], 5);
        assert_eq!(found[2].expires_at, Some(1));
    }

    #[test]
    fn binary_and_empty_input() {
        assert!(identify(&[0xff, 0xfe, 0x00, 0x01]).is_empty());
        assert!(identify(b"nothing to see").is_empty());
    }
}
