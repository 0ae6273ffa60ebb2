//! The Vault CLI token file `.vault-token`, which contains one token.
//!
//! The material is the token. Its kind follows from its prefix: `hvs.`, `hvb.` and `hvr.` for
//! service, batch and recovery tokens since Vault 1.10, and `s.`, `b.` and `r.` before.

use super::{Identified, IdentifyError, text::utf8};
use crate::credential::fingerprint::SecretBytes;

const EXPECTED: &str = "Vault token file";

/// Token prefixes, the kind they mark, and whether the prefix is the format before Vault 1.10.
const PREFIXES: &[(&str, &str, bool)] = &[
    ("hvs.", "service", false),
    ("hvb.", "batch", false),
    ("hvr.", "recovery", false),
    ("s.", "service", true),
    ("b.", "batch", true),
    ("r.", "recovery", true),
];

/// Identifies the token of a `.vault-token` file.
pub(super) fn identify(contents: &[u8]) -> Result<Vec<Identified>, IdentifyError> {
    let token = utf8(contents, EXPECTED)?.trim();
    if token.contains(char::is_whitespace) {
        return Err(IdentifyError::invalid(
            EXPECTED,
            "the file contains several words, but a token file contains one token",
        ));
    }

    let mut item = Identified::new("vault_token", SecretBytes::from_slice(token.as_bytes()));
    match PREFIXES
        .iter()
        .find(|(prefix, _, _)| token.starts_with(prefix))
    {
        Some((_, kind, legacy)) => {
            item.detail("token_kind", *kind);
            item.detail("legacy_format", *legacy);
        }
        None => item.detail("token_kind", "unknown"),
    }
    Ok(vec![item])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_kinds() {
        for (token, kind, legacy) in [
            ("hvs.CAESIMadeUpMadeUpMadeUpMadeUp\n", "service", false),
            ("hvb.AAAAAQMadeUpMadeUp", "batch", false),
            ("s.MadeUpMadeUpMadeUpMadeUp12", "service", true),
        ] {
            let found = identify(token.as_bytes()).unwrap();

            assert_eq!(found.len(), 1);
            assert_eq!(found[0].credential_type, "vault_token");
            assert_eq!(found[0].details["token_kind"], kind, "{token}");
            assert_eq!(found[0].details["legacy_format"], legacy, "{token}");
            assert_eq!(found[0].material.expose(), token.trim().as_bytes());
        }
    }

    #[test]
    fn unknown_prefix_and_several_words() {
        let found = identify(b"made-up-root-token").unwrap();
        assert_eq!(found[0].details["token_kind"], "unknown");

        let error = identify(b"two words").unwrap_err();
        assert!(error.to_string().contains("several words"), "{error}");
    }
}
