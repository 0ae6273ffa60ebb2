//! Identification of the credentials inside a credential file, without exposing their secrets.
//!
//! [`identify`] takes the bytes of a file and the `type` of the catalogue entry that matched
//! it. It returns one [`Identified`] per credential found, with its specific type, the
//! identifier that its issuer uses for it, its expiry, a label and non-secret metadata. The
//! secret itself only travels as [`SecretBytes`] in [`Identified::material`], the input of
//! [`CredentialKey::credential_id`](super::fingerprint::CredentialKey::credential_id).
//!
//! The material is the secret in its canonical form wherever the format allows, so the same
//! credential gets the same id in every file and format that contains it. It is the token of a
//! bearer token, the secret access key of an AWS key, the password of a login, and the DER
//! bytes of a certificate or TLS private key. For an SSH key it is the public key blob, which
//! also keeps the id when the passphrase changes. Formats without a single secret, such as a
//! kubeconfig exec plugin, use a canonical text of their entry. Each parser documents its
//! choice.
//!
//! Every function here is pure and does no I/O. Input of more than [`MAX_INPUT_BYTES`] is
//! rejected. The parsers check every index and length instead of panicking, which a test
//! exercises with damaged versions of every fixture, and no error message contains file
//! content.

mod arguments;
mod aws;
mod azure;
mod docker;
mod dotenv;
mod gcp;
mod git_credentials;
mod ini;
mod jwt;
mod keys;
mod kubeconfig;
mod netrc;
mod npmrc;
mod pem;
mod pki;
mod pypirc;
mod scan;
mod ssh;
mod sshwire;
mod terraform;
mod text;
mod timestamps;
mod vault;
mod x509;

pub(crate) use text::flow_depth_exceeded;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde_json::Value;

use super::fingerprint::SecretBytes;

/// Maximum size of a credential file that [`identify`] reads, in bytes. Credential files are
/// a few kilobytes; a CA bundle of a few hundred certificates stays well below this.
pub const MAX_INPUT_BYTES: usize = 1 << 20;

/// One credential found in a file.
#[derive(Clone, Debug)]
pub struct Identified {
    /// Specific type, such as `aws_access_key`, `kubernetes_service_account_token` or
    /// `x509_certificate`.
    pub credential_type: String,
    /// Identifier that the issuer uses for the credential, such as an AWS access key id,
    /// a JWT id, a GCP private key id or a certificate serial number.
    pub native_id: Option<String>,
    /// Expiry in seconds since the Unix epoch.
    pub expires_at: Option<i64>,
    /// Short human-readable name: a profile, kubeconfig user, registry, host or subject.
    pub label: Option<String>,
    /// Non-secret metadata, keyed by snake_case names.
    pub details: BTreeMap<String, Value>,
    /// Input of the credential id. The module documentation lists what each format uses.
    pub material: SecretBytes,
}

impl Identified {
    fn new(credential_type: impl Into<String>, material: SecretBytes) -> Self {
        Self {
            credential_type: credential_type.into(),
            native_id: None,
            expires_at: None,
            label: None,
            details: BTreeMap::new(),
            material,
        }
    }

    fn detail(&mut self, key: &str, value: impl Into<Value>) {
        self.details.insert(key.to_string(), value.into());
    }

    fn detail_opt(&mut self, key: &str, value: Option<impl Into<Value>>) {
        if let Some(value) = value {
            self.detail(key, value);
        }
    }
}

/// Failure to identify a file. Messages name the expected format and the position of the
/// problem, never the file's content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentifyError {
    /// The input is larger than [`MAX_INPUT_BYTES`].
    #[error(
        "credential file has {len} bytes, more than the limit of {max}; read at most \
         MAX_INPUT_BYTES bytes and skip larger files"
    )]
    TooLarge {
        /// Size of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input is not UTF-8 text but the format is a text format.
    #[error(
        "invalid {expected}: not UTF-8 text at byte {offset}; the file may be binary or damaged"
    )]
    NotText {
        /// The expected format.
        expected: &'static str,
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The input does not follow its format.
    #[error("invalid {expected}: {problem}")]
    Invalid {
        /// The expected format.
        expected: &'static str,
        /// Description of the problem and its position, in words that contain no file content.
        problem: String,
    },
    /// The file is in a format that is not read, such as the SQLite token stores of gcloud.
    /// Callers record the file without identities; this is not a failure of the file.
    #[error(
        "unsupported format for {credential_type}: {found}; the file is recorded without identities"
    )]
    UnknownFormat {
        /// The catalogue type.
        credential_type: String,
        /// Kind of data found, such as `SQLite database`.
        found: &'static str,
    },
}

impl IdentifyError {
    /// Tells whether the error only means that the format is not read, as opposed to a file
    /// that is damaged or does not match its catalogue entry.
    pub fn is_unknown_format(&self) -> bool {
        matches!(self, Self::UnknownFormat { .. })
    }

    fn invalid(expected: &'static str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            expected,
            problem: problem.into(),
        }
    }
}

/// Identifies the credentials in `contents`, a file that matched a catalogue entry of type
/// `credential_type`.
///
/// Known types go to their parser; any other type is scanned for PEM blocks and for tokens of
/// the formats that [`super::patterns::find_tokens`] recognises. An empty or blank file yields an
/// empty list. A file that does not follow the format of its type yields an error.
pub fn identify(credential_type: &str, contents: &[u8]) -> Result<Vec<Identified>, IdentifyError> {
    if contents.len() > MAX_INPUT_BYTES {
        return Err(IdentifyError::TooLarge {
            len: contents.len(),
            max: MAX_INPUT_BYTES,
        });
    }
    if contents.trim_ascii().is_empty() {
        return Ok(Vec::new());
    }

    match credential_type {
        "kubernetes_service_account_token" | "aws_web_identity_token" | "azure_federated_token" => {
            jwt::identify_file(credential_type, contents)
        }
        "aws_credentials" => aws::identify(contents),
        "gcp_credentials" => gcp::identify(contents),
        "azure_credentials" => azure::identify(contents),
        "kubeconfig" => kubeconfig::identify(contents),
        "docker_config" => docker::identify(contents),
        "ssh_private_key" | "ssh_host_key" => ssh::identify(credential_type, contents),
        "tls_private_key" | "kubernetes_pki" => pki::identify(contents),
        "netrc" => netrc::identify(contents),
        "git_credentials" => git_credentials::identify(contents),
        "vault_token" => vault::identify(contents),
        "npm_config" => npmrc::identify(contents),
        "pypi_config" => pypirc::identify(contents),
        "terraform_credentials" => terraform::identify(contents),
        "dotenv" => dotenv::identify(contents),
        _ => Ok(scan::identify(contents)),
    }
}

/// Identifies the secrets in a process environment (`/proc/PID/environ`): variables with a
/// secret name and a plausible value, and values in a known token format. The label of each
/// credential is its variable name. AWS key ids without their secret are left out, because
/// they are no secret. At most [`MAX_INPUT_BYTES`] are read.
pub fn identify_environment(environ: &[u8]) -> Vec<Identified> {
    let environ = &environ[..environ.len().min(MAX_INPUT_BYTES)];
    dotenv::identify_environment(environ)
        .into_iter()
        .filter(|item| !is_bare_identifier(item))
        .map(|mut item| {
            if item.credential_type == dotenv::SECRET_TYPE {
                item.credential_type = ENVIRONMENT_SECRET_TYPE.to_string();
            }
            // An AWS key is named after the variable that contains its secret.
            if item.credential_type == "aws_access_key" {
                item.label = Some(dotenv::AWS_SECRET.to_string());
            }
            // The number of an environment entry is its position, not a line.
            if let Some(position) = item.details.remove("line") {
                item.details.insert("position".to_string(), position);
            }
            item
        })
        .collect()
}

/// Type of a secret found by its variable name only, in a process environment.
pub const ENVIRONMENT_SECRET_TYPE: &str = "environment_secret";

/// Identifies the secrets in a process's arguments, as [`arguments::identify`] describes.
/// Returns the index of the argument that contains each one.
pub fn identify_arguments(args: &[String]) -> Vec<(usize, Identified)> {
    arguments::identify(args)
        .into_iter()
        .filter(|(_, item)| !is_bare_identifier(item))
        .collect()
}

/// Tells whether a credential is only an identifier, such as an AWS key id found alone.
fn is_bare_identifier(item: &Identified) -> bool {
    super::patterns::token_kind(item.material.expose()).is_some_and(|kind| kind.is_identifier())
}
