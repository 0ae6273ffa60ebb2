//! AWS shared credentials and config files: one credential per profile with an access key id.
//!
//! The material is the secret access key, or the access key id when a profile has no secret,
//! so the key gets the same id here as in an environment variable.

use super::{
    Identified, IdentifyError,
    ini::{self, EQUALS_OR_COLON, Section},
    text::utf8,
    timestamps::parse_rfc3339,
};
use crate::credential::fingerprint::SecretBytes;

const EXPECTED: &str = "AWS credentials file";

/// Credential type of every access key.
pub(super) const CREDENTIAL_TYPE: &str = "aws_access_key";

/// Settings that tools such as aws-vault and saml2aws use for the expiry of temporary keys.
const EXPIRATION_KEYS: &[&str] = &["aws_expiration", "expiration", "x_security_token_expires"];

/// Sections of the config file that are no profile.
const NON_PROFILE_PREFIXES: &[&str] = &["sso-session ", "services ", "plugins", "preview"];

/// Identifies the access keys of an AWS credentials or config file.
pub(super) fn identify(contents: &[u8]) -> Result<Vec<Identified>, IdentifyError> {
    let text = utf8(contents, EXPECTED)?;
    let sections = ini::parse(text, EQUALS_OR_COLON);
    if sections.len() == 1 {
        return Err(IdentifyError::invalid(
            EXPECTED,
            "no `[profile]` section header found",
        ));
    }

    Ok(sections
        .iter()
        .filter_map(|section| {
            let profile = profile_name(section.name)?;
            identify_profile(profile, section)
        })
        .collect())
}

/// Returns the profile name of a section, which is `dev` for both `[dev]` in the credentials
/// file and `[profile dev]` in the config file, or `None` for a section of no profile.
fn profile_name(section: &str) -> Option<&str> {
    if section.is_empty()
        || NON_PROFILE_PREFIXES
            .iter()
            .any(|prefix| section.starts_with(prefix))
    {
        return None;
    }
    Some(section.strip_prefix("profile ").map_or(section, str::trim))
}

fn identify_profile(profile: &str, section: &Section<'_>) -> Option<Identified> {
    let key_id = section.get("aws_access_key_id")?;
    let mut item = describe_access_key(
        key_id,
        section.get("aws_secret_access_key"),
        section.get("aws_session_token").is_some(),
    );
    item.label = Some(profile.to_string());
    item.detail("profile", profile);
    item.detail("line", section.line);
    item.detail_opt("region", section.get("region"));

    if let Some(account) = section.get("aws_account_id").filter(|id| is_account_id(id)) {
        item.detail("account_id", account);
        item.detail("account_id_source", "aws_account_id");
    } else if !item.details.contains_key("account_id") {
        let configured = section
            .get("sso_account_id")
            .filter(|id| is_account_id(id))
            .map(|id| (id.to_string(), "sso_account_id"))
            .or_else(|| {
                let arn = section.get("role_arn")?;
                Some((account_from_arn(arn)?, "role_arn"))
            });
        if let Some((account, source)) = configured {
            item.detail("account_id", account);
            item.detail("account_id_source", source);
        }
    }

    item.expires_at = EXPIRATION_KEYS
        .iter()
        .find_map(|key| section.get(key))
        .and_then(parse_rfc3339);
    Some(item)
}

/// Describes an access key from its id, its secret and whether a session token goes with it.
/// Used for files and for pairs of environment variables alike.
pub(super) fn describe_access_key(
    key_id: &str,
    secret_access_key: Option<&str>,
    has_session_token: bool,
) -> Identified {
    let material = secret_access_key.unwrap_or(key_id);
    let mut item = Identified::new(
        CREDENTIAL_TYPE,
        SecretBytes::from_slice(material.as_bytes()),
    );
    item.native_id = Some(key_id.to_string());
    item.detail("key_type", key_type(key_id));
    item.detail("has_secret_access_key", secret_access_key.is_some());
    item.detail("has_session_token", has_session_token);
    if let Some(account) = account_from_key_id(key_id) {
        item.detail("account_id", account);
        item.detail("account_id_source", "access_key_id");
    }
    item
}

/// Returns `long_term` for `AKIA` ids, `temporary` for `ASIA` ids (keys from STS) and
/// `unknown` otherwise.
fn key_type(key_id: &str) -> &'static str {
    if key_id.starts_with("AKIA") {
        "long_term"
    } else if key_id.starts_with("ASIA") {
        "temporary"
    } else {
        "unknown"
    }
}

/// Derives the AWS account id from an access key id.
///
/// AWS documents only the 4-character prefix. The 16 characters after it are base32 (RFC 4648
/// alphabet `A-Z2-7`), 80 bits. Public analyses of many key ids, the most complete by
/// WithSecure Labs ("A bitwise analysis of AWS access key identifiers"), found that the first
/// of these bits marks the current generation of ids, and that in such ids the next 40 bits
/// are the account number. Returns `None` for an id of the older generation, which encodes no
/// account, and for an id that is not 20 characters of that alphabet after `AKIA` or `ASIA`.
pub(super) fn account_from_key_id(key_id: &str) -> Option<String> {
    let body = key_id
        .strip_prefix("AKIA")
        .or_else(|| key_id.strip_prefix("ASIA"))?;
    if body.len() != 16 {
        return None;
    }
    let mut bits: u128 = 0;
    for byte in body.bytes() {
        bits = (bits << 5) | u128::from(base32_value(byte)?);
    }
    let is_current_generation = bits >> 79 == 1;
    if !is_current_generation {
        return None;
    }
    let account = (bits >> 39) & ((1 << 40) - 1);
    Some(format!("{account:012}"))
}

fn base32_value(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'2'..=b'7' => Some(byte - b'2' + 26),
        _ => None,
    }
}

/// Returns the account of an ARN, `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
fn account_from_arn(arn: &str) -> Option<String> {
    let account = arn.split(':').nth(4)?;
    is_account_id(account).then(|| account.to_string())
}

fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|byte| byte.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::identify::fixtures::aws_key_id_for_account;

    const SECRET: &str = "made/up+Secret0AccessKey0Value0000000000";

    #[test]
    fn account_from_key_id_round_trip() {
        for account in ["123456789012", "000000000001", "999999999999"] {
            let key_id = aws_key_id_for_account("AKIA", account);

            assert_eq!(key_id.len(), 20);
            assert_eq!(
                account_from_key_id(&key_id).as_deref(),
                Some(account),
                "{key_id}"
            );
        }
    }

    #[test]
    fn account_from_key_id_rejects_other_ids() {
        assert_eq!(account_from_key_id("AKIA0000000000000000"), None);
        // `I` is 01000 in base32, so this id is of the older generation.
        assert_eq!(account_from_key_id("AKIAIMADEUPEXAMPLEAA"), None);
        assert_eq!(account_from_key_id("AKIASHORT"), None);
        assert_eq!(account_from_key_id("AROAAAAAAAAAAAAAAAAA"), None);
    }

    #[test]
    fn profiles_in_credentials_file() {
        let long_term = aws_key_id_for_account("AKIA", "123456789012");
        let temporary = aws_key_id_for_account("ASIA", "210987654321");
        let text = format!(
            "[default]\naws_access_key_id = {long_term}\naws_secret_access_key = {SECRET}\nregion = eu-west-1\n\n\
             [session]\naws_access_key_id={temporary}\naws_secret_access_key={SECRET}\n\
             aws_session_token=made-up-session-token\naws_expiration = 2030-01-02T03:04:05Z\n\n\
             [sso-only]\nsso_account_id = 111122223333\n"
        );

        let found = identify(text.as_bytes()).unwrap();

        assert_eq!(found.len(), 2);
        let default = &found[0];
        assert_eq!(default.credential_type, "aws_access_key");
        assert_eq!(default.native_id.as_deref(), Some(long_term.as_str()));
        assert_eq!(default.label.as_deref(), Some("default"));
        assert_eq!(default.details["key_type"], "long_term");
        assert_eq!(default.details["has_session_token"], false);
        assert_eq!(default.details["account_id"], "123456789012");
        assert_eq!(default.details["account_id_source"], "access_key_id");
        assert_eq!(default.details["region"], "eu-west-1");
        assert_eq!(default.material.expose(), SECRET.as_bytes());

        let session = &found[1];
        assert_eq!(session.details["key_type"], "temporary");
        assert_eq!(session.details["has_session_token"], true);
        assert_eq!(session.details["account_id"], "210987654321");
        assert_eq!(session.expires_at, Some(1_893_553_445));
    }

    #[test]
    fn config_file_accounts_from_settings() {
        let text = "[profile admin]\naws_access_key_id = AKIA0MADEUP000000001\n\
                    role_arn = arn:aws:iam::444455556666:role/admin\n\n\
                    [profile sso]\naws_access_key_id = AKIA0MADEUP000000002\nsso_account_id = 777788889999\n\n\
                    [profile explicit]\naws_access_key_id = AKIA0MADEUP000000003\naws_account_id = 123412341234\n";

        let found = identify(text.as_bytes()).unwrap();

        assert_eq!(found.len(), 3);
        assert_eq!(found[0].label.as_deref(), Some("admin"));
        assert_eq!(found[0].details["account_id"], "444455556666");
        assert_eq!(found[0].details["account_id_source"], "role_arn");
        assert_eq!(found[0].details["has_secret_access_key"], false);
        assert_eq!(found[0].material.expose(), b"AKIA0MADEUP000000001");
        assert_eq!(found[1].details["account_id"], "777788889999");
        assert_eq!(found[1].details["account_id_source"], "sso_account_id");
        assert_eq!(found[2].details["account_id"], "123412341234");
        assert_eq!(found[2].details["account_id_source"], "aws_account_id");
    }

    #[test]
    fn file_without_sections_is_invalid() {
        let error = identify(b"{\"not\": \"ini\"}").unwrap_err();

        assert!(
            error.to_string().contains("no `[profile]` section"),
            "{error}"
        );
    }
}
