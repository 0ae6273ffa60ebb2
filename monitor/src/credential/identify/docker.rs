//! Registry credentials of Docker, Podman and the kubelet: `config.json`, `auth.json` and the
//! older `.dockercfg` layout without the `auths` wrapper.
//!
//! One credential per registry with a stored `auth` or identity token. The material is the
//! registry name, a newline and the stored value, so the same login on two registries gets two
//! ids. Registries served by a credential helper store nothing here; the helper is listed in
//! the details of the stored credentials.

use serde_json::{Map, Value};

use super::{
    Identified, IdentifyError,
    text::{decode_base64, parse_json, string_at},
};
use crate::credential::fingerprint::SecretBytes;

const EXPECTED: &str = "Docker config JSON";

/// Identifies the stored registry credentials of a Docker or Podman config file.
pub(super) fn identify(contents: &[u8]) -> Result<Vec<Identified>, IdentifyError> {
    let config = parse_json(contents, EXPECTED)?;
    let Value::Object(config) = &config else {
        return Err(IdentifyError::invalid(
            EXPECTED,
            "expected a JSON object at the top level",
        ));
    };
    let registries = match config.get("auths") {
        Some(Value::Object(auths)) => auths,
        Some(_) => return Err(IdentifyError::invalid(EXPECTED, "`auths` is not an object")),
        // The .dockercfg layout maps registries to entries at the top level.
        None => config,
    };

    let default_helper = config.get("credsStore").and_then(Value::as_str);
    let helpers = config.get("credHelpers").and_then(Value::as_object);
    let mut found = Vec::new();
    for (registry, entry) in registries {
        for mut item in identify_entry(registry, entry) {
            let helper = helpers
                .and_then(|helpers| helpers.get(registry))
                .and_then(Value::as_str)
                .or(default_helper);
            item.detail_opt("credential_helper", helper);
            found.push(item);
        }
    }
    if let Some(helpers) = helpers {
        add_helper_list(&mut found, helpers);
    }
    Ok(found)
}

fn identify_entry(registry: &str, entry: &Value) -> Vec<Identified> {
    let mut found = Vec::new();
    if let Some(auth) = string_at(entry, "auth") {
        let mut item = Identified::new("docker_registry_auth", material(registry, auth));
        let username = string_at(entry, "username")
            .map(str::to_string)
            .or_else(|| username_from_auth(auth));
        item.native_id = username.as_ref().map(|user| format!("{user}@{registry}"));
        item.detail_opt("username", username);
        found.push(item);
    }
    for field in ["identitytoken", "registrytoken"] {
        if let Some(token) = string_at(entry, field) {
            let mut item = Identified::new("docker_registry_token", material(registry, token));
            item.detail("token_field", field);
            found.push(item);
        }
    }
    for item in &mut found {
        item.label = Some(registry.to_string());
        item.detail("registry", registry);
    }
    found
}

fn material(registry: &str, value: &str) -> SecretBytes {
    SecretBytes::from(format!("{registry}\n{value}"))
}

/// Returns the user name of `auth`, the base64 of `user:password`.
fn username_from_auth(auth: &str) -> Option<String> {
    let decoded = decode_base64(auth)?;
    let text = std::str::from_utf8(decoded.expose()).ok()?;
    let (user, _) = text.split_once(':')?;
    (!user.is_empty()).then(|| user.to_string())
}

/// Maximum number of per-registry helpers listed on each credential.
const MAX_LISTED_HELPERS: usize = 32;

/// Lists the per-registry helpers on every stored credential, so they are not lost when the
/// file stores no credential for their registry. At most [`MAX_LISTED_HELPERS`] are listed,
/// which bounds the output of a file with thousands of entries.
fn add_helper_list(found: &mut [Identified], helpers: &Map<String, Value>) {
    let listed: Vec<String> = helpers
        .iter()
        .filter_map(|(registry, helper)| Some(format!("{registry}={}", helper.as_str()?)))
        .take(MAX_LISTED_HELPERS)
        .collect();
    if listed.is_empty() {
        return;
    }
    for item in found {
        item.detail("credential_helpers", listed.clone());
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use serde_json::json;

    use super::*;

    fn auth(user: &str, password: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    }

    #[test]
    fn auths_with_helpers() {
        let config = json!({
            "auths": {
                "registry.example.test": {"auth": auth("builder", "made-up-password")},
                "ghcr.io": {"auth": auth("someone", "made-up-token")},
                "helper-only.example.test": {},
                "azurecr.example.test": {"identitytoken": "made-up-identity-token"}
            },
            "credsStore": "desktop",
            "credHelpers": {"123.dkr.ecr.example.test": "ecr-login"}
        });

        let found = identify(config.to_string().as_bytes()).unwrap();

        assert_eq!(found.len(), 3);
        let token = &found[0];
        assert_eq!(token.credential_type, "docker_registry_token");
        assert_eq!(token.label.as_deref(), Some("azurecr.example.test"));
        let ghcr = &found[1];
        assert_eq!(ghcr.credential_type, "docker_registry_auth");
        assert_eq!(ghcr.native_id.as_deref(), Some("someone@ghcr.io"));
        assert_eq!(ghcr.details["username"], "someone");
        assert_eq!(ghcr.details["credential_helper"], "desktop");
        assert_eq!(
            ghcr.details["credential_helpers"],
            json!(["123.dkr.ecr.example.test=ecr-login"])
        );
        let expected = format!("ghcr.io\n{}", auth("someone", "made-up-token"));
        assert_eq!(ghcr.material.expose(), expected.as_bytes());
        assert_eq!(found[2].label.as_deref(), Some("registry.example.test"));
    }

    #[test]
    fn legacy_dockercfg() {
        let config = json!({"https://index.docker.io/v1/": {"auth": auth("old", "made-up"), "email": "x@example.test"}});

        let found = identify(config.to_string().as_bytes()).unwrap();

        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].native_id.as_deref(),
            Some("old@https://index.docker.io/v1/")
        );
    }

    #[test]
    fn invalid_config() {
        assert!(
            identify(b"[1]")
                .unwrap_err()
                .to_string()
                .contains("JSON object")
        );
        assert!(
            identify(b"{\"auths\": 3}")
                .unwrap_err()
                .to_string()
                .contains("`auths`")
        );
        let syntax = identify(b"{\"auths\": {").unwrap_err().to_string();
        assert!(syntax.contains("JSON syntax error at line 1"), "{syntax}");
    }
}
