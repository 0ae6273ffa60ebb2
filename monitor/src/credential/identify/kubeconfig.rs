//! kubeconfig files: one credential per authentication method of each `users[]` entry.
//!
//! The material is the bearer token, the client certificate's DER or the basic-auth password.
//! Exec plugins, auth providers and references to files hold no secret in the kubeconfig, so
//! their material is the canonical JSON of the entry's `user` mapping.

use std::collections::HashMap;

use serde_json::Value;

use super::{
    Identified, IdentifyError, jwt, pem,
    text::{canonical_json, decode_base64, parse_yaml, string_at},
    x509,
};
use crate::{credential::fingerprint::SecretBytes, process::redact};

const EXPECTED: &str = "kubeconfig";

/// Identifies the credentials of every user in a kubeconfig.
pub(super) fn identify(contents: &[u8]) -> Result<Vec<Identified>, IdentifyError> {
    let config = parse_yaml(contents, EXPECTED)?;
    if !config.is_object() {
        return Err(IdentifyError::invalid(
            EXPECTED,
            "expected a mapping with `users`, `clusters` and `contexts` at the top level",
        ));
    }
    let users = match config.get("users") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(users)) => users,
        Some(_) => return Err(IdentifyError::invalid(EXPECTED, "`users` is not a list")),
    };

    let servers = servers_by_user(&config);
    let mut found = Vec::new();
    for (index, entry) in users.iter().enumerate() {
        let name = string_at(entry, "name");
        let Some(user) = entry.get("user").filter(|user| user.is_object()) else {
            continue;
        };
        let user_servers: Option<&Vec<&str>> = name.and_then(|name| servers.get(name));
        for mut item in identify_user(user)? {
            item.label = name.map(str::to_string);
            item.detail_opt("user", name);
            item.detail("user_index", index);
            item.detail_opt("servers", user_servers.cloned());
            found.push(item);
        }
    }
    Ok(found)
}

fn identify_user(user: &Value) -> Result<Vec<Identified>, IdentifyError> {
    let mut found = Vec::new();
    if let Some(token) = string_at(user, "token") {
        found.push(bearer_token(token.trim()));
    }
    if let Some(data) = string_at(user, "client-certificate-data") {
        let mut item = client_certificate(data)?;
        item.detail(
            "has_client_key",
            string_at(user, "client-key-data").is_some(),
        );
        found.push(item);
    } else if let Some(path) = string_at(user, "client-certificate") {
        let mut item = Identified::new("kubernetes_client_certificate", canonical_json(user));
        item.detail("client_certificate_path", path);
        item.detail_opt("client_key_path", string_at(user, "client-key"));
        found.push(item);
    }
    if let Some(path) = string_at(user, "tokenFile") {
        let mut item = Identified::new("kubernetes_token_file", canonical_json(user));
        item.detail("token_file", path);
        found.push(item);
    }
    if let Some(exec) = user.get("exec").filter(|exec| exec.is_object()) {
        found.push(exec_plugin(user, exec));
    }
    if let Some(provider) = user
        .get("auth-provider")
        .filter(|provider| provider.is_object())
    {
        let mut item = Identified::new("kubernetes_auth_provider", canonical_json(user));
        item.detail_opt("provider", string_at(provider, "name"));
        found.push(item);
    }
    if let Some(password) = string_at(user, "password") {
        let mut item = Identified::new(
            "kubernetes_basic_auth",
            SecretBytes::from_slice(password.as_bytes()),
        );
        item.native_id = string_at(user, "username").map(str::to_string);
        item.detail_opt("username", string_at(user, "username"));
        found.push(item);
    }
    Ok(found)
}

/// Returns the id of a bootstrap token, whose form is a public 6-character id, `.`, and a
/// 16-character secret.
fn bootstrap_token_id(token: &str) -> Option<&str> {
    let (id, secret) = token.split_once('.')?;
    let is_part = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
    };
    (is_part(id, 6) && is_part(secret, 16)).then_some(id)
}

fn bearer_token(token: &str) -> Identified {
    if token.starts_with("eyJ")
        && let Ok(mut item) = jwt::decode(token, EXPECTED)
    {
        if item.credential_type == "jwt" {
            item.credential_type = "kubernetes_bearer_token".to_string();
        }
        return item;
    }
    let material = SecretBytes::from_slice(token.as_bytes());
    match bootstrap_token_id(token) {
        Some(id) => {
            let mut item = Identified::new("kubernetes_bootstrap_token", material);
            item.native_id = Some(id.to_string());
            item
        }
        None => Identified::new("kubernetes_bearer_token", material),
    }
}

/// Describes `client-certificate-data`, the base64 of a PEM certificate (or of its DER).
fn client_certificate(data: &str) -> Result<Identified, IdentifyError> {
    let invalid = || {
        IdentifyError::invalid(
            EXPECTED,
            "`client-certificate-data` is not base64 of a PEM or DER certificate",
        )
    };
    let decoded = decode_base64(data).ok_or_else(invalid)?;
    let mut item = match std::str::from_utf8(decoded.expose()) {
        Ok(text) => {
            let blocks = pem::parse_blocks(text, EXPECTED)?;
            let certificate = blocks
                .iter()
                .find(|block| block.label == "CERTIFICATE")
                .ok_or_else(invalid)?;
            x509::describe(certificate.der.expose()).ok_or_else(invalid)?
        }
        Err(_) => x509::describe(decoded.expose()).ok_or_else(invalid)?,
    };
    item.credential_type = "kubernetes_client_certificate".to_string();
    Ok(item)
}

/// Describes an exec plugin by its command, its arguments with secret-looking values redacted,
/// and the names (not the values) of the environment variables it gets.
fn exec_plugin(user: &Value, exec: &Value) -> Identified {
    let mut item = Identified::new("kubernetes_exec_plugin", canonical_json(user));
    item.detail_opt("command", string_at(exec, "command"));
    item.detail_opt("api_version", string_at(exec, "apiVersion"));
    if let Some(Value::Array(args)) = exec.get("args") {
        let args: Vec<String> = args
            .iter()
            .map(|arg| arg.as_str().map_or_else(|| arg.to_string(), str::to_string))
            .collect();
        item.detail("args", redact::redact_args(&args));
    }
    if let Some(Value::Array(env)) = exec.get("env") {
        let names: Vec<&str> = env
            .iter()
            .filter_map(|pair| string_at(pair, "name"))
            .collect();
        item.detail("env_names", names);
    }
    item
}

/// Maps each user name to the servers of the clusters that its contexts point at.
fn servers_by_user(config: &Value) -> HashMap<&str, Vec<&str>> {
    let list = |key: &str| config.get(key).and_then(Value::as_array);
    let cluster_servers: HashMap<&str, &str> = list("clusters")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let server = string_at(entry.get("cluster")?, "server")?;
            Some((string_at(entry, "name")?, server))
        })
        .collect();

    let mut servers: HashMap<&str, Vec<&str>> = HashMap::new();
    for context in list("contexts")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get("context"))
    {
        let (Some(user), Some(cluster)) =
            (string_at(context, "user"), string_at(context, "cluster"))
        else {
            continue;
        };
        let Some(&server) = cluster_servers.get(cluster) else {
            continue;
        };
        let user_servers = servers.entry(user).or_default();
        if !user_servers.contains(&server) {
            user_servers.push(server);
        }
    }
    servers
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::credential::identify::fixtures::{self, COMMITTED_CERTIFICATE};

    fn kubeconfig(users: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://192.0.2.10:6443\n\
             contexts:\n- name: admin@prod\n  context:\n    cluster: prod\n    user: admin\n\
             current-context: admin@prod\nusers:\n{users}"
        )
    }

    #[test]
    fn token_user() {
        let text = kubeconfig("- name: admin\n  user:\n    token: made-up-opaque-token-value\n");

        let found = identify(text.as_bytes()).unwrap();

        assert_eq!(found.len(), 1);
        assert_eq!(found[0].credential_type, "kubernetes_bearer_token");
        assert_eq!(found[0].label.as_deref(), Some("admin"));
        assert_eq!(
            found[0].details["servers"],
            json!(["https://192.0.2.10:6443"])
        );
        assert_eq!(found[0].material.expose(), b"made-up-opaque-token-value");
    }

    #[test]
    fn service_account_token_user() {
        let token = fixtures::make_jwt(
            &json!({"alg": "RS256"}),
            &json!({"sub": "system:serviceaccount:ci:deployer", "exp": 1_900_000_000}),
        );
        let text = kubeconfig(&format!("- name: admin\n  user:\n    token: {token}\n"));

        let found = identify(text.as_bytes()).unwrap();

        assert_eq!(found[0].credential_type, "kubernetes_service_account_token");
        assert_eq!(found[0].details["namespace"], "ci");
        assert_eq!(found[0].expires_at, Some(1_900_000_000));
        assert_eq!(found[0].label.as_deref(), Some("admin"));
    }

    #[test]
    fn bootstrap_token_user() {
        let text =
            kubeconfig("- name: tls-bootstrap\n  user:\n    token: abcdef.0123456789abcdef\n");

        let found = identify(text.as_bytes()).unwrap();

        assert_eq!(found[0].credential_type, "kubernetes_bootstrap_token");
        assert_eq!(found[0].native_id.as_deref(), Some("abcdef"));
    }

    #[test]
    fn client_certificate_user() {
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(COMMITTED_CERTIFICATE);
        let text = kubeconfig(&format!(
            "- name: admin\n  user:\n    client-certificate-data: {data}\n    client-key-data: bWFkZS11cA==\n"
        ));

        let found = identify(text.as_bytes()).unwrap();

        assert_eq!(found.len(), 1);
        let item = &found[0];
        assert_eq!(item.credential_type, "kubernetes_client_certificate");
        assert_eq!(item.details["subject"], "CN=made-up.example.test");
        assert_eq!(item.details["has_client_key"], true);
        assert!(item.expires_at.is_some());
        assert_eq!(item.material.expose()[0], 0x30, "material is DER");
    }

    #[test]
    fn exec_plugin_user() {
        let text = kubeconfig(
            "- name: admin\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n\
             \x20     command: aws\n      args: [eks, get-token, --cluster-name, prod, --client-secret=made-up-secret]\n\
             \x20     env:\n      - name: AWS_PROFILE\n        value: made-up-profile\n",
        );

        let found = identify(text.as_bytes()).unwrap();

        assert_eq!(found.len(), 1);
        let item = &found[0];
        assert_eq!(item.credential_type, "kubernetes_exec_plugin");
        assert_eq!(item.details["command"], "aws");
        assert_eq!(
            item.details["args"],
            json!([
                "eks",
                "get-token",
                "--cluster-name",
                "prod",
                "--client-secret=[REDACTED]"
            ])
        );
        assert_eq!(item.details["env_names"], json!(["AWS_PROFILE"]));
    }

    #[test]
    fn basic_auth_and_several_users() {
        let text = kubeconfig(
            "- name: admin\n  user:\n    username: root\n    password: made-up-password\n\
             - name: other\n  user:\n    client-certificate: /etc/k/cert.pem\n    client-key: /etc/k/key.pem\n\
             - name: oidc\n  user:\n    auth-provider:\n      name: oidc\n      config:\n        id-token: made-up\n\
             - name: empty\n  user: {}\n",
        );

        let found = identify(text.as_bytes()).unwrap();

        assert_eq!(found.len(), 3);
        assert_eq!(found[0].credential_type, "kubernetes_basic_auth");
        assert_eq!(found[0].native_id.as_deref(), Some("root"));
        assert_eq!(found[0].material.expose(), b"made-up-password");
        assert_eq!(
            found[1].details["client_certificate_path"],
            "/etc/k/cert.pem"
        );
        assert_eq!(found[2].details["provider"], "oidc");
    }

    #[test]
    fn canonical_material_ignores_key_order() {
        let first =
            kubeconfig("- name: a\n  user:\n    exec:\n      command: x\n      apiVersion: v1\n");
        let second =
            kubeconfig("- name: a\n  user:\n    exec:\n      apiVersion: v1\n      command: x\n");

        let first = identify(first.as_bytes()).unwrap();
        let second = identify(second.as_bytes()).unwrap();

        assert_eq!(first[0].material.expose(), second[0].material.expose());
    }

    #[test]
    fn invalid_documents() {
        assert!(
            identify(b"users: 5\n")
                .unwrap_err()
                .to_string()
                .contains("not a list")
        );
        assert!(
            identify(b"- a\n- b\n")
                .unwrap_err()
                .to_string()
                .contains("mapping")
        );
        let syntax = identify(b"users: [\n").unwrap_err().to_string();
        assert!(syntax.contains("YAML syntax error at line"), "{syntax}");
        assert!(identify(b"clusters: []\n").unwrap().is_empty());
    }
}
