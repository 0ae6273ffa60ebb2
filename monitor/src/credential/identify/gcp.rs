//! Google Cloud credential files: service-account keys and application-default credentials
//! (JSON). The SQLite token stores of gcloud (`credentials.db`, `access_tokens.db`) are
//! reported as an unknown format.
//!
//! The material is the private key of a service-account key, the refresh token of an
//! authorized user, and the canonical JSON of other types, which hold no secret of their own.

use serde_json::Value;

use super::{
    Identified, IdentifyError,
    text::{canonical_json, parse_json, string_at},
};
use crate::credential::fingerprint::SecretBytes;

const CATALOGUE_TYPE: &str = "gcp_credentials";
const EXPECTED: &str = "Google Cloud credentials JSON";
const SQLITE_HEADER: &[u8] = b"SQLite format 3\0";

/// Identifies the credential of a Google Cloud credentials file.
pub(super) fn identify(contents: &[u8]) -> Result<Vec<Identified>, IdentifyError> {
    if contents.starts_with(SQLITE_HEADER) {
        return Err(unknown_format("SQLite database"));
    }
    if contents.trim_ascii_start().first() != Some(&b'{') {
        return Err(unknown_format("not JSON"));
    }
    let json = parse_json(contents, EXPECTED)?;
    Ok(vec![describe(&json)?])
}

fn unknown_format(found: &'static str) -> IdentifyError {
    IdentifyError::UnknownFormat {
        credential_type: CATALOGUE_TYPE.to_string(),
        found,
    }
}

fn describe(json: &Value) -> Result<Identified, IdentifyError> {
    let kind = string_at(json, "type")
        .ok_or_else(|| IdentifyError::invalid(EXPECTED, "the object has no string field `type`"))?;
    let mut item = match kind {
        "service_account" => service_account(json)?,
        "authorized_user" => authorized_user(json)?,
        "external_account" => external_account(json),
        "impersonated_service_account" => impersonated_service_account(json),
        _ => Identified::new("gcp_credentials", canonical_json(json)),
    };
    item.detail("type", kind);
    item.detail_opt("project_id", string_at(json, "project_id"));
    item.detail_opt("quota_project_id", string_at(json, "quota_project_id"));
    item.detail_opt("universe_domain", string_at(json, "universe_domain"));
    Ok(item)
}

fn service_account(json: &Value) -> Result<Identified, IdentifyError> {
    let private_key = string_at(json, "private_key").ok_or_else(|| {
        IdentifyError::invalid(EXPECTED, "the service-account key has no `private_key`")
    })?;
    let mut item = Identified::new(
        "gcp_service_account_key",
        SecretBytes::from_slice(private_key.as_bytes()),
    );
    item.native_id = string_at(json, "private_key_id").map(str::to_string);
    item.label = string_at(json, "client_email").map(str::to_string);
    item.detail_opt("client_email", string_at(json, "client_email"));
    item.detail_opt("client_id", string_at(json, "client_id"));
    item.detail_opt("private_key_id", string_at(json, "private_key_id"));
    Ok(item)
}

fn authorized_user(json: &Value) -> Result<Identified, IdentifyError> {
    let refresh_token = string_at(json, "refresh_token").ok_or_else(|| {
        IdentifyError::invalid(EXPECTED, "the authorized-user entry has no `refresh_token`")
    })?;
    let mut item = Identified::new(
        "gcp_authorized_user",
        SecretBytes::from_slice(refresh_token.as_bytes()),
    );
    item.label = string_at(json, "account").map(str::to_string);
    item.detail_opt("client_id", string_at(json, "client_id"));
    item.detail_opt("account", string_at(json, "account"));
    Ok(item)
}

/// Describes workload identity federation, whose file names the token source and contains no
/// secret.
fn external_account(json: &Value) -> Identified {
    let mut item = Identified::new("gcp_external_account", canonical_json(json));
    item.label = string_at(json, "audience").map(str::to_string);
    item.detail_opt("audience", string_at(json, "audience"));
    item.detail_opt("subject_token_type", string_at(json, "subject_token_type"));
    if let Some(source) = json.get("credential_source") {
        item.detail_opt("credential_source_file", string_at(source, "file"));
        item.detail_opt("credential_source_url", string_at(source, "url"));
    }
    item.detail_opt(
        "service_account",
        string_at(json, "service_account_impersonation_url").and_then(impersonated_account),
    );
    item
}

fn impersonated_service_account(json: &Value) -> Identified {
    let source = json.get("source_credentials").unwrap_or(&Value::Null);
    let mut item = Identified::new("gcp_impersonated_service_account", canonical_json(source));
    let account =
        string_at(json, "service_account_impersonation_url").and_then(impersonated_account);
    item.label = account.clone();
    item.detail_opt("service_account", account);
    item.detail_opt("source_type", string_at(source, "type"));
    item.detail_opt("source_client_id", string_at(source, "client_id"));
    item
}

/// Returns the account of `.../serviceAccounts/EMAIL:generateAccessToken`.
fn impersonated_account(url: &str) -> Option<String> {
    let rest = url.rsplit_once("/serviceAccounts/")?.1;
    let account = rest.split(':').next()?;
    (!account.is_empty()).then(|| account.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn service_account_key() {
        let json = json!({
            "type": "service_account",
            "project_id": "made-up-project",
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": "-----BEGIN PRIVATE KEY-----\nmadeup\n-----END PRIVATE KEY-----\n",
            "client_email": "robot@made-up-project.iam.gserviceaccount.com",
            "client_id": "100000000000000000001",
            "token_uri": "https://oauth2.googleapis.com/token"
        });

        let found = identify(json.to_string().as_bytes()).unwrap();

        assert_eq!(found.len(), 1);
        let item = &found[0];
        assert_eq!(item.credential_type, "gcp_service_account_key");
        assert_eq!(
            item.native_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef01234567")
        );
        assert_eq!(
            item.label.as_deref(),
            Some("robot@made-up-project.iam.gserviceaccount.com")
        );
        assert_eq!(item.details["project_id"], "made-up-project");
        assert_eq!(item.details["client_id"], "100000000000000000001");
        assert!(
            item.material
                .expose()
                .starts_with(b"-----BEGIN PRIVATE KEY-----")
        );
    }

    #[test]
    fn authorized_user_adc() {
        let json = json!({
            "type": "authorized_user",
            "client_id": "made-up.apps.googleusercontent.com",
            "client_secret": "made-up-client-secret",
            "refresh_token": "1//made-up-refresh-token",
            "quota_project_id": "made-up-project"
        });

        let item = &identify(json.to_string().as_bytes()).unwrap()[0];

        assert_eq!(item.credential_type, "gcp_authorized_user");
        assert_eq!(
            item.details["client_id"],
            "made-up.apps.googleusercontent.com"
        );
        assert_eq!(item.details["quota_project_id"], "made-up-project");
        assert_eq!(item.material.expose(), b"1//made-up-refresh-token");
    }

    #[test]
    fn external_account_federation() {
        let json = json!({
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "credential_source": {"file": "/var/run/secrets/tokens/gcp"},
            "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/robot@p.iam.gserviceaccount.com:generateAccessToken"
        });

        let item = &identify(json.to_string().as_bytes()).unwrap()[0];

        assert_eq!(item.credential_type, "gcp_external_account");
        assert_eq!(
            item.details["credential_source_file"],
            "/var/run/secrets/tokens/gcp"
        );
        assert_eq!(
            item.details["service_account"],
            "robot@p.iam.gserviceaccount.com"
        );
    }

    #[test]
    fn sqlite_store_is_unknown_format() {
        let mut contents = SQLITE_HEADER.to_vec();
        contents.extend_from_slice(&[0x10, 0x00, 0x01, 0x01]);

        let error = identify(&contents).unwrap_err();

        assert!(error.is_unknown_format());
        assert!(error.to_string().contains("SQLite database"), "{error}");
    }

    #[test]
    fn other_text_is_unknown_format() {
        let error = identify(b"[Credentials]\ngs_oauth2_refresh_token = made-up\n").unwrap_err();

        assert!(error.is_unknown_format());
    }

    #[test]
    fn json_without_type_is_invalid() {
        let error = identify(b"{\"client_email\": \"x\"}").unwrap_err();

        assert!(!error.is_unknown_format());
        assert!(error.to_string().contains("`type`"), "{error}");
    }
}
