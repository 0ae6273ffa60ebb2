//! JSON Web Tokens, decoded without verifying their signature: Kubernetes service-account
//! tokens, the projected tokens of AWS and Azure workload identity, and other JWTs.
//!
//! The material is the whole token. The native id is the `jti` claim, else the subject.

use serde_json::Value;

use super::{
    Identified, IdentifyError,
    text::{decode_base64url, string_at, utf8},
    timestamps::unix_seconds,
};
use crate::credential::fingerprint::SecretBytes;

const EXPECTED: &str = "JWT";

/// Subject prefix of Kubernetes service-account tokens, followed by `NAMESPACE:NAME`.
const SERVICE_ACCOUNT_SUBJECT: &str = "system:serviceaccount:";

/// Issuer of the Secret-based service-account tokens that Kubernetes made before 1.24.
const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

/// Identifies the token in a file that contains one JWT.
pub(super) fn identify_file(
    catalogue_type: &str,
    contents: &[u8],
) -> Result<Vec<Identified>, IdentifyError> {
    let token = utf8(contents, EXPECTED)?.trim();
    Ok(vec![decode(token, catalogue_type)?])
}

/// Decodes a JWT in compact form. `context_type` is the catalogue type or the kind of file
/// the token was found in. The projected-token types keep it as the credential type, and
/// other tokens become `kubernetes_service_account_token` or `jwt`.
pub(super) fn decode(token: &str, context_type: &str) -> Result<Identified, IdentifyError> {
    let segments: Vec<&str> = token.split('.').collect();
    if segments.len() == 5 {
        return Err(IdentifyError::invalid(
            EXPECTED,
            "the token has 5 segments, so it is an encrypted JWE, whose claims cannot be read",
        ));
    }
    if segments.len() != 3 {
        return Err(IdentifyError::invalid(
            EXPECTED,
            format!(
                "expected 3 segments separated by `.`, found {}",
                segments.len()
            ),
        ));
    }
    let header = decode_segment(segments[0], "header")?;
    let claims = decode_segment(segments[1], "payload")?;

    let service_account = ServiceAccount::from_claims(&claims);
    let credential_type = credential_type(context_type, service_account.is_some());
    let mut item = Identified::new(credential_type, SecretBytes::from_slice(token.as_bytes()));
    describe_claims(&claims, &mut item);
    item.detail_opt("algorithm", string_at(&header, "alg"));
    item.detail_opt("key_id", string_at(&header, "kid"));
    if let Some(account) = &service_account {
        account.describe(&mut item);
    }

    item.native_id = string_at(&claims, "jti")
        .or_else(|| string_at(&claims, "sub"))
        .map(str::to_string);
    item.label = match &service_account {
        Some(account) => Some(account.label()),
        None => string_at(&claims, "sub").map(str::to_string),
    };
    Ok(item)
}

fn credential_type(context_type: &str, is_service_account: bool) -> &str {
    match context_type {
        "aws_web_identity_token" | "azure_federated_token" => context_type,
        _ if is_service_account => "kubernetes_service_account_token",
        _ => "jwt",
    }
}

fn decode_segment(segment: &str, name: &str) -> Result<Value, IdentifyError> {
    let bytes = decode_base64url(segment).ok_or_else(|| {
        IdentifyError::invalid(EXPECTED, format!("the {name} segment is not base64url"))
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(IdentifyError::invalid(
            EXPECTED,
            format!("the {name} segment is not a JSON object"),
        )),
    }
}

/// Copies the registered claims. A token without `exp` never expires and is flagged
/// `legacy`, as Kubernetes made such tokens before 1.24.
fn describe_claims(claims: &Value, item: &mut Identified) {
    item.detail_opt("issuer", string_at(claims, "iss"));
    item.detail_opt("subject", string_at(claims, "sub"));
    item.detail_opt("jwt_id", string_at(claims, "jti"));
    let audience = audience(claims);
    if !audience.is_empty() {
        item.detail("audience", audience);
    }
    item.detail_opt("issued_at", claims.get("iat").and_then(unix_seconds));
    item.detail_opt("not_before", claims.get("nbf").and_then(unix_seconds));

    item.expires_at = claims.get("exp").and_then(unix_seconds);
    if item.expires_at.is_none() {
        item.detail("legacy", true);
    }
}

fn audience(claims: &Value) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(audience)) => vec![audience.clone()],
        Some(Value::Array(audiences)) => audiences
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Claims of a Kubernetes service-account token about its account and the pod it was made for.
#[derive(Default)]
struct ServiceAccount {
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
    pod_name: Option<String>,
    pod_uid: Option<String>,
    node_name: Option<String>,
    node_uid: Option<String>,
    secret_name: Option<String>,
}

impl ServiceAccount {
    /// Reads the account from the subject, the `kubernetes.io` claim of bound tokens and the
    /// flat `kubernetes.io/serviceaccount/...` claims of legacy tokens. Returns `None` for a
    /// token of no service account.
    fn from_claims(claims: &Value) -> Option<Self> {
        let mut account = Self::default();
        if let Some(rest) =
            string_at(claims, "sub").and_then(|sub| sub.strip_prefix(SERVICE_ACCOUNT_SUBJECT))
            && let Some((namespace, name)) = rest.split_once(':')
        {
            account.namespace = Some(namespace.to_string());
            account.name = Some(name.to_string());
        }

        if let Some(bound) = claims.get("kubernetes.io") {
            account.read_bound_claim(bound);
        }
        account.read_legacy_claims(claims);

        let is_legacy_issuer = string_at(claims, "iss") == Some(LEGACY_ISSUER);
        (account.name.is_some() || is_legacy_issuer).then_some(account)
    }

    fn read_bound_claim(&mut self, bound: &Value) {
        let nested = |object: &str, key: &str| {
            bound
                .get(object)
                .and_then(|value| string_at(value, key))
                .map(str::to_string)
        };
        fill(
            &mut self.namespace,
            string_at(bound, "namespace").map(str::to_string),
        );
        fill(&mut self.name, nested("serviceaccount", "name"));
        fill(&mut self.uid, nested("serviceaccount", "uid"));
        fill(&mut self.pod_name, nested("pod", "name"));
        fill(&mut self.pod_uid, nested("pod", "uid"));
        fill(&mut self.node_name, nested("node", "name"));
        fill(&mut self.node_uid, nested("node", "uid"));
        fill(&mut self.secret_name, nested("secret", "name"));
    }

    fn read_legacy_claims(&mut self, claims: &Value) {
        let flat = |key: &str| {
            string_at(claims, &format!("kubernetes.io/serviceaccount/{key}")).map(str::to_string)
        };
        fill(&mut self.namespace, flat("namespace"));
        fill(&mut self.name, flat("service-account.name"));
        fill(&mut self.uid, flat("service-account.uid"));
        fill(&mut self.secret_name, flat("secret.name"));
    }

    fn label(&self) -> String {
        format!(
            "{}/{}",
            self.namespace.as_deref().unwrap_or("?"),
            self.name.as_deref().unwrap_or("?")
        )
    }

    fn describe(&self, item: &mut Identified) {
        item.detail_opt("namespace", self.namespace.clone());
        item.detail_opt("service_account", self.name.clone());
        item.detail_opt("service_account_uid", self.uid.clone());
        item.detail_opt("pod_name", self.pod_name.clone());
        item.detail_opt("pod_uid", self.pod_uid.clone());
        item.detail_opt("node_name", self.node_name.clone());
        item.detail_opt("node_uid", self.node_uid.clone());
        item.detail_opt("secret_name", self.secret_name.clone());
    }
}

fn fill(slot: &mut Option<String>, value: Option<String>) {
    if slot.is_none() {
        *slot = value;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::credential::identify::fixtures::make_jwt;

    fn bound_token_claims() -> Value {
        json!({
            "aud": ["https://kubernetes.default.svc.cluster.local"],
            "exp": 1_900_000_000,
            "iat": 1_800_000_000,
            "nbf": 1_800_000_000,
            "iss": "https://kubernetes.default.svc.cluster.local",
            "jti": "made-up-jti-0001",
            "sub": "system:serviceaccount:payments:api-worker",
            "kubernetes.io": {
                "namespace": "payments",
                "node": {"name": "node-made-up-1", "uid": "node-uid-made-up"},
                "pod": {"name": "api-worker-7d9f", "uid": "pod-uid-made-up"},
                "serviceaccount": {"name": "api-worker", "uid": "sa-uid-made-up"},
                "warnafter": 1_800_003_607
            }
        })
    }

    #[test]
    fn bound_service_account_token() {
        let token = make_jwt(
            &json!({"alg": "RS256", "kid": "made-up-kid"}),
            &bound_token_claims(),
        );

        let found = identify_file("kubernetes_service_account_token", token.as_bytes()).unwrap();

        assert_eq!(found.len(), 1);
        let item = &found[0];
        assert_eq!(item.credential_type, "kubernetes_service_account_token");
        assert_eq!(item.native_id.as_deref(), Some("made-up-jti-0001"));
        assert_eq!(item.label.as_deref(), Some("payments/api-worker"));
        assert_eq!(item.expires_at, Some(1_900_000_000));
        assert_eq!(item.details["namespace"], "payments");
        assert_eq!(item.details["service_account"], "api-worker");
        assert_eq!(item.details["service_account_uid"], "sa-uid-made-up");
        assert_eq!(item.details["pod_name"], "api-worker-7d9f");
        assert_eq!(item.details["pod_uid"], "pod-uid-made-up");
        assert_eq!(item.details["node_name"], "node-made-up-1");
        assert_eq!(item.details["issued_at"], 1_800_000_000);
        assert_eq!(item.details["not_before"], 1_800_000_000);
        assert_eq!(
            item.details["audience"],
            json!(["https://kubernetes.default.svc.cluster.local"])
        );
        assert_eq!(item.details["algorithm"], "RS256");
        assert_eq!(item.details["key_id"], "made-up-kid");
        assert!(!item.details.contains_key("legacy"));
        assert_eq!(item.material.expose(), token.as_bytes());
    }

    #[test]
    fn legacy_service_account_token() {
        let claims = json!({
            "iss": "kubernetes/serviceaccount",
            "kubernetes.io/serviceaccount/namespace": "kube-system",
            "kubernetes.io/serviceaccount/secret.name": "deployer-token-made-up",
            "kubernetes.io/serviceaccount/service-account.name": "deployer",
            "kubernetes.io/serviceaccount/service-account.uid": "uid-made-up",
            "sub": "system:serviceaccount:kube-system:deployer"
        });
        let token = make_jwt(&json!({"alg": "RS256"}), &claims);

        let item = decode(&token, "kubernetes_service_account_token").unwrap();

        assert_eq!(item.details["legacy"], true);
        assert_eq!(item.expires_at, None);
        assert_eq!(item.details["secret_name"], "deployer-token-made-up");
        assert_eq!(item.details["service_account_uid"], "uid-made-up");
        assert_eq!(
            item.native_id.as_deref(),
            Some("system:serviceaccount:kube-system:deployer")
        );
        assert_eq!(item.label.as_deref(), Some("kube-system/deployer"));
    }

    #[test]
    fn projected_cloud_tokens_keep_type() {
        let token = make_jwt(&json!({"alg": "RS256"}), &bound_token_claims());

        let aws = decode(&token, "aws_web_identity_token").unwrap();
        let azure = decode(&token, "azure_federated_token").unwrap();

        assert_eq!(aws.credential_type, "aws_web_identity_token");
        assert_eq!(azure.credential_type, "azure_federated_token");
        assert_eq!(aws.details["namespace"], "payments");
    }

    #[test]
    fn other_jwt_string_audience() {
        let claims = json!({"sub": "user-made-up", "aud": "api.example.test", "exp": 1.9e9});
        let token = make_jwt(&json!({"alg": "ES256"}), &claims);

        let item = decode(&token, "kubernetes_service_account_token").unwrap();

        assert_eq!(item.credential_type, "jwt");
        assert_eq!(item.native_id.as_deref(), Some("user-made-up"));
        assert_eq!(item.details["audience"], json!(["api.example.test"]));
        assert_eq!(item.expires_at, Some(1_900_000_000));
    }

    #[test]
    fn rejects_malformed_tokens() {
        let cases = [
            ("not-a-token", "expected 3 segments"),
            ("a.b.c.d.e", "JWE"),
            ("!!!.e30.x", "header segment is not base64url"),
            ("e30.WzFd.x", "payload segment is not a JSON object"),
        ];
        for (token, message) in cases {
            let error = decode(token, "jwt").unwrap_err();
            assert!(error.to_string().contains(message), "{token}: {error}");
        }
    }

    #[test]
    fn binary_file_rejected() {
        let error = identify_file("kubernetes_service_account_token", b"\xff\xfe\x00").unwrap_err();

        assert!(matches!(error, IdentifyError::NotText { offset: 0, .. }));
    }
}
