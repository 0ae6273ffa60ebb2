//! Azure CLI credential files: the MSAL token cache, the older ADAL `accessTokens.json` and
//! the service-principal entries. The encrypted `.bin` caches are reported as an unknown
//! format.
//!
//! The material is the token or client secret. Certificate-based service principals, which
//! store only a path, use the canonical JSON of their entry.

use serde_json::Value;

use super::{
    Identified, IdentifyError,
    text::{canonical_json, parse_json, string_at},
    timestamps::unix_seconds,
};
use crate::credential::fingerprint::SecretBytes;

const CATALOGUE_TYPE: &str = "azure_credentials";
const EXPECTED: &str = "Azure CLI token cache JSON";

/// Identifies the tokens and service principals of an Azure CLI credential file.
pub(super) fn identify(contents: &[u8]) -> Result<Vec<Identified>, IdentifyError> {
    if !matches!(contents.trim_ascii_start().first(), Some(b'{' | b'[')) {
        return Err(IdentifyError::UnknownFormat {
            credential_type: CATALOGUE_TYPE.to_string(),
            found: "not JSON, as in an encrypted token cache",
        });
    }
    let json = parse_json(contents, EXPECTED)?;
    match &json {
        Value::Object(_) => Ok(msal_cache(&json)),
        Value::Array(entries) => Ok(entries.iter().flat_map(array_entry).collect()),
        _ => Err(IdentifyError::invalid(
            EXPECTED,
            "expected a JSON object or array at the top level",
        )),
    }
}

// MSAL token cache.

fn msal_cache(cache: &Value) -> Vec<Identified> {
    let mut found = Vec::new();
    for (section, credential_type) in [
        ("AccessToken", "azure_access_token"),
        ("RefreshToken", "azure_refresh_token"),
    ] {
        let Some(Value::Object(entries)) = cache.get(section) else {
            continue;
        };
        for (cache_key, entry) in entries {
            if let Some(item) = msal_entry(cache, cache_key, entry, credential_type) {
                found.push(item);
            }
        }
    }
    found
}

fn msal_entry(
    cache: &Value,
    cache_key: &str,
    entry: &Value,
    credential_type: &str,
) -> Option<Identified> {
    let secret = string_at(entry, "secret")?;
    let mut item = Identified::new(credential_type, SecretBytes::from_slice(secret.as_bytes()));
    // The cache key joins account, environment, type, client, tenant and scopes; no secret.
    item.native_id = Some(cache_key.to_string());
    item.expires_at = entry.get("expires_on").and_then(unix_seconds);

    let home_account_id = string_at(entry, "home_account_id");
    let username = home_account_id.and_then(|id| msal_username(cache, id));
    item.label = username
        .or(home_account_id)
        .or_else(|| string_at(entry, "client_id"))
        .map(str::to_string);
    item.detail_opt("username", username);
    item.detail_opt("home_account_id", home_account_id);
    item.detail_opt("client_id", string_at(entry, "client_id"));
    item.detail_opt("environment", string_at(entry, "environment"));
    item.detail_opt("tenant_id", string_at(entry, "realm"));
    item.detail_opt("target", string_at(entry, "target"));
    item.detail_opt("family_id", string_at(entry, "family_id"));
    item.detail_opt("cached_at", entry.get("cached_at").and_then(unix_seconds));
    Some(item)
}

fn msal_username<'a>(cache: &'a Value, home_account_id: &str) -> Option<&'a str> {
    let Value::Object(accounts) = cache.get("Account")? else {
        return None;
    };
    accounts
        .values()
        .find(|account| string_at(account, "home_account_id") == Some(home_account_id))
        .and_then(|account| string_at(account, "username"))
}

// Arrays: service-principal entries and the ADAL cache.

fn array_entry(entry: &Value) -> Vec<Identified> {
    if let Some(client_id) = string_at(entry, "client_id") {
        return vec![service_principal(
            entry,
            client_id,
            string_at(entry, "tenant"),
        )];
    }
    if let Some(client_id) = string_at(entry, "servicePrincipalId") {
        // ADAL kept a service principal's client secret under `accessToken`.
        let mut item = service_principal_secret(
            entry,
            client_id,
            string_at(entry, "servicePrincipalTenant"),
            string_at(entry, "accessToken"),
        );
        item.detail("format", "adal");
        return vec![item];
    }
    adal_tokens(entry)
}

fn service_principal(entry: &Value, client_id: &str, tenant: Option<&str>) -> Identified {
    let mut item =
        service_principal_secret(entry, client_id, tenant, string_at(entry, "client_secret"));
    item.detail_opt("certificate_path", string_at(entry, "client_certificate"));
    item
}

fn service_principal_secret(
    entry: &Value,
    client_id: &str,
    tenant: Option<&str>,
    secret: Option<&str>,
) -> Identified {
    let material = secret.map_or_else(
        || canonical_json(entry),
        |secret| SecretBytes::from_slice(secret.as_bytes()),
    );
    let mut item = Identified::new("azure_service_principal", material);
    item.native_id = Some(client_id.to_string());
    item.label = Some(client_id.to_string());
    item.detail("client_id", client_id);
    item.detail_opt("tenant_id", tenant);
    item.detail(
        "authentication",
        if secret.is_some() {
            "secret"
        } else {
            "certificate"
        },
    );
    item
}

/// Describes the access token and the refresh token of an ADAL entry, each a credential.
fn adal_tokens(entry: &Value) -> Vec<Identified> {
    let mut found = Vec::new();
    for (field, credential_type) in [
        ("accessToken", "azure_access_token"),
        ("refreshToken", "azure_refresh_token"),
    ] {
        let Some(secret) = string_at(entry, field) else {
            continue;
        };
        let mut item = Identified::new(credential_type, SecretBytes::from_slice(secret.as_bytes()));
        item.label = string_at(entry, "userId").map(str::to_string);
        item.detail("format", "adal");
        item.detail_opt("username", string_at(entry, "userId"));
        item.detail_opt("client_id", string_at(entry, "_clientId"));
        item.detail_opt("resource", string_at(entry, "resource"));
        item.detail_opt("authority", string_at(entry, "_authority"));
        // NOTE: ADAL writes `expiresOn` in local time without a zone, so it is kept as text.
        if field == "accessToken" {
            item.detail_opt("expires_on", string_at(entry, "expiresOn"));
        }
        found.push(item);
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn msal_cache_tokens() {
        let cache = json!({
            "AccessToken": {
                "uid.utid-login.microsoftonline.com-accesstoken-client-tenant-scope": {
                    "credential_type": "AccessToken",
                    "secret": "made-up-access-token",
                    "home_account_id": "uid.utid",
                    "environment": "login.microsoftonline.com",
                    "client_id": "04b07795-0000-0000-0000-made00up0000",
                    "target": "https://management.core.windows.net//.default",
                    "realm": "tenant-made-up",
                    "cached_at": "1800000000",
                    "expires_on": "1800003600"
                }
            },
            "RefreshToken": {
                "uid.utid-login.microsoftonline.com-refreshtoken-client--": {
                    "credential_type": "RefreshToken",
                    "secret": "made-up-refresh-token",
                    "home_account_id": "uid.utid",
                    "client_id": "04b07795-0000-0000-0000-made00up0000",
                    "family_id": "1"
                }
            },
            "Account": {
                "uid.utid-login.microsoftonline.com-tenant": {
                    "home_account_id": "uid.utid",
                    "username": "someone@example.test"
                }
            }
        });

        let found = identify(cache.to_string().as_bytes()).unwrap();

        assert_eq!(found.len(), 2);
        let access = &found[0];
        assert_eq!(access.credential_type, "azure_access_token");
        assert_eq!(access.expires_at, Some(1_800_003_600));
        assert_eq!(access.label.as_deref(), Some("someone@example.test"));
        assert_eq!(
            access.details["client_id"],
            "04b07795-0000-0000-0000-made00up0000"
        );
        assert_eq!(access.details["home_account_id"], "uid.utid");
        assert_eq!(access.details["tenant_id"], "tenant-made-up");
        assert_eq!(access.material.expose(), b"made-up-access-token");
        let refresh = &found[1];
        assert_eq!(refresh.credential_type, "azure_refresh_token");
        assert_eq!(refresh.details["family_id"], "1");
        assert_eq!(refresh.expires_at, None);
    }

    #[test]
    fn service_principal_entries() {
        let entries = json!([
            {"client_id": "sp-made-up-1", "tenant": "tenant-1", "client_secret": "made-up-secret"},
            {"client_id": "sp-made-up-2", "tenant": "tenant-2", "client_certificate": "/home/u/sp.pem"}
        ]);

        let found = identify(entries.to_string().as_bytes()).unwrap();

        assert_eq!(found.len(), 2);
        assert_eq!(found[0].credential_type, "azure_service_principal");
        assert_eq!(found[0].native_id.as_deref(), Some("sp-made-up-1"));
        assert_eq!(found[0].details["authentication"], "secret");
        assert_eq!(found[0].material.expose(), b"made-up-secret");
        assert_eq!(found[1].details["authentication"], "certificate");
        assert_eq!(found[1].details["certificate_path"], "/home/u/sp.pem");
    }

    #[test]
    fn adal_access_tokens() {
        let entries = json!([{
            "tokenType": "Bearer",
            "expiresOn": "2030-01-01 00:00:00.000000",
            "resource": "https://management.core.windows.net/",
            "accessToken": "made-up-access",
            "refreshToken": "made-up-refresh",
            "userId": "someone@example.test",
            "_clientId": "04b07795-0000-0000-0000-made00up0000"
        }]);

        let found = identify(entries.to_string().as_bytes()).unwrap();

        assert_eq!(found.len(), 2);
        assert_eq!(found[0].credential_type, "azure_access_token");
        assert_eq!(found[0].details["expires_on"], "2030-01-01 00:00:00.000000");
        assert_eq!(found[1].credential_type, "azure_refresh_token");
    }

    #[test]
    fn encrypted_cache_is_unknown_format() {
        let error = identify(b"\x01\x00\x00\x00\xd0\x8c\x9d\xdf").unwrap_err();

        assert!(error.is_unknown_format());
    }
}
