//! TLS and Kubernetes PKI files: PEM bundles of certificates and private keys, single DER
//! certificates or keys, and PKCS#12 archives.
//!
//! A certificate's material is its DER (see [`super::x509`]). A private key's material is its
//! DER as stored, the secret itself. PKCS#12 archives are encrypted, so their material is the
//! whole file. Public keys, certificate requests, CRLs and parameters are no credentials and
//! are skipped.

use super::{
    Identified, IdentifyError,
    keys::{self, KeyFacts},
    pem::{self, Block},
    ssh, sshwire, text, x509,
};
use crate::credential::fingerprint::SecretBytes;

const EXPECTED: &str = "PEM or DER certificate or private key";

/// Credential type of every private key that is not an SSH key.
const PRIVATE_KEY_TYPE: &str = "private_key";

/// Object identifier 1.2.840.113549.1.7 (PKCS#7 content types), DER-encoded with its tag and
/// length, followed by the last arc of the type.
const PKCS7_CONTENT_TYPE_PREFIX: &[u8] =
    &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07];

/// Identifies the certificates and private keys of a PEM or DER file.
pub(super) fn identify(contents: &[u8]) -> Result<Vec<Identified>, IdentifyError> {
    if let Ok(text) = std::str::from_utf8(contents)
        && pem::contains_pem(text)
    {
        return identify_pem(text, contents);
    }
    identify_der(contents)
}

/// Identifies every certificate and private key block of a PEM text. `file` is the whole
/// file, the material of keys that are encrypted.
pub(super) fn identify_pem(text: &str, file: &[u8]) -> Result<Vec<Identified>, IdentifyError> {
    let mut found = Vec::new();
    for block in pem::parse_blocks(text, EXPECTED)? {
        found.extend(describe_block(&block, file)?);
    }
    Ok(found)
}

fn describe_block(block: &Block, file: &[u8]) -> Result<Vec<Identified>, IdentifyError> {
    match block.label.as_str() {
        "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => {
            let der = certificate_der(block);
            let mut item = x509::describe(der).ok_or_else(|| {
                IdentifyError::invalid(
                    EXPECTED,
                    format!(
                        "the certificate block on line {} is no valid X.509 certificate",
                        block.line
                    ),
                )
            })?;
            item.detail("line", block.line);
            Ok(vec![item])
        }
        "OPENSSH PRIVATE KEY" => ssh::describe_block("ssh_private_key", block, file),
        label if keys::is_private_key_label(label) => {
            let facts = keys::describe_block(block).ok_or_else(|| {
                IdentifyError::invalid(
                    EXPECTED,
                    format!(
                        "the private key block on line {} does not contain a valid key of its label",
                        block.line
                    ),
                )
            })?;
            let material = if facts.encrypted {
                SecretBytes::from_slice(file)
            } else {
                block.der.clone()
            };
            let mut item = describe_private_key(&facts, material);
            item.detail("line", block.line);
            Ok(vec![item])
        }
        _ => Ok(Vec::new()),
    }
}

/// Returns the certificate of a block. OpenSSL's `TRUSTED CERTIFICATE` appends trust settings
/// after it, which the length in the certificate's own header leaves out.
fn certificate_der(block: &Block) -> &[u8] {
    let der = block.der.expose();
    match der_element_len(der) {
        Some(len) if block.label == "TRUSTED CERTIFICATE" => &der[..len],
        _ => der,
    }
}

fn describe_private_key(facts: &KeyFacts, material: SecretBytes) -> Identified {
    let mut item = Identified::new(PRIVATE_KEY_TYPE, material);
    item.detail("key_algorithm", facts.algorithm.clone());
    item.detail_opt("key_bits", facts.bits);
    item.detail_opt("key_curve", facts.curve);
    item.detail("format", facts.format);
    item.detail("encrypted", facts.encrypted);
    if let Some(blob) = &facts.ssh_blob {
        // The SSH fingerprint links the key to the same key used for SSH.
        item.detail("ssh_fingerprint", sshwire::fingerprint(blob));
    }
    item
}

fn identify_der(contents: &[u8]) -> Result<Vec<Identified>, IdentifyError> {
    if let Some(item) = x509::describe(contents) {
        return Ok(vec![item]);
    }
    if let Some(facts) = keys::describe_der(contents) {
        return Ok(vec![describe_private_key(
            &facts,
            SecretBytes::from_slice(contents),
        )]);
    }
    if is_pkcs12(contents) {
        let mut item = Identified::new("pkcs12", SecretBytes::from_slice(contents));
        item.detail("format", "pkcs12");
        item.detail("encrypted", true);
        return Ok(vec![item]);
    }
    match text::utf8(contents, EXPECTED) {
        Ok(_) => Err(IdentifyError::invalid(
            EXPECTED,
            "the text contains no PEM block",
        )),
        Err(_) => Err(IdentifyError::invalid(
            EXPECTED,
            "the binary data is no DER certificate, private key or PKCS#12 archive",
        )),
    }
}

/// Tells whether `der` starts like a PKCS#12 archive (RFC 7292): SEQUENCE { INTEGER 3,
/// ContentInfo SEQUENCE { OBJECT IDENTIFIER of a PKCS#7 content type, ... } }.
fn is_pkcs12(der: &[u8]) -> bool {
    let Some(header) = der_header_len(der) else {
        return false;
    };
    let Some(rest) = der.get(header..) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix(&[0x02, 0x01, 0x03]) else {
        return false;
    };
    if rest.first() != Some(&0x30) {
        return false;
    }
    let Some(content_info_header) = der_header_len(rest) else {
        return false;
    };
    rest.get(content_info_header..)
        .is_some_and(|content| content.starts_with(PKCS7_CONTENT_TYPE_PREFIX))
}

/// Returns the length of the tag and length octets of a DER element of tag SEQUENCE.
fn der_header_len(der: &[u8]) -> Option<usize> {
    if der.first() != Some(&0x30) {
        return None;
    }
    let first = *der.get(1)?;
    if first < 0x80 {
        return Some(2);
    }
    let octets = usize::from(first & 0x7f);
    (1..=4).contains(&octets).then_some(2 + octets)
}

/// Returns the total length of the DER SEQUENCE at the start of `der`, when it fits.
fn der_element_len(der: &[u8]) -> Option<usize> {
    let header = der_header_len(der)?;
    let first = *der.get(1)?;
    let content = if first < 0x80 {
        usize::from(first)
    } else {
        der.get(2..header)?
            .iter()
            .fold(0_usize, |len, &byte| (len << 8) | usize::from(byte))
    };
    let total = header.checked_add(content)?;
    (total <= der.len()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::identify::fixtures::{
        COMMITTED_CERTIFICATE, COMMITTED_CERTIFICATE_SERIAL, COMMITTED_EC_KEY, KeyTool,
    };

    #[test]
    fn committed_certificate() {
        let found = identify(COMMITTED_CERTIFICATE.as_bytes()).unwrap();

        assert_eq!(found.len(), 1);
        let item = &found[0];
        assert_eq!(item.credential_type, "x509_certificate");
        assert_eq!(
            item.native_id.as_deref(),
            Some(COMMITTED_CERTIFICATE_SERIAL)
        );
        assert_eq!(item.label.as_deref(), Some("made-up.example.test"));
        assert_eq!(item.details["subject"], "CN=made-up.example.test");
        assert_eq!(item.details["issuer"], "CN=made-up.example.test");
        assert_eq!(item.details["self_signed"], true);
        assert_eq!(item.details["key_algorithm"], "EC");
        assert_eq!(item.details["key_curve"], "P-256");
        assert_eq!(item.details["key_bits"], 256);
        assert_eq!(
            item.details["subject_alternative_names"],
            serde_json::json!(["DNS:made-up.example.test", "IP:192.0.2.7"])
        );
        assert_eq!(item.expires_at, item.details["not_after"].as_i64());
        assert!(item.expires_at > item.details["not_before"].as_i64());
    }

    #[test]
    fn committed_key_and_certificate_bundle() {
        let bundle = format!("{COMMITTED_EC_KEY}{COMMITTED_CERTIFICATE}{COMMITTED_CERTIFICATE}");

        let found = identify(bundle.as_bytes()).unwrap();

        assert_eq!(found.len(), 3);
        assert_eq!(found[0].credential_type, "private_key");
        assert_eq!(found[0].details["key_algorithm"], "EC");
        assert_eq!(found[0].details["key_curve"], "P-256");
        assert_eq!(found[0].details["key_bits"], 256);
        assert_eq!(found[0].details["encrypted"], false);
        assert_eq!(found[1].credential_type, "x509_certificate");
        assert_eq!(found[2].credential_type, "x509_certificate");
    }

    #[test]
    fn public_key_and_request_skipped() {
        let text = "-----BEGIN PUBLIC KEY-----\nbWFkZS11cA==\n-----END PUBLIC KEY-----\n";

        assert!(identify(text.as_bytes()).unwrap().is_empty());
    }

    #[test]
    fn generated_certificates_and_keys() {
        let Some(tool) = KeyTool::new_openssl() else {
            eprintln!("skipped: openssl is not installed");
            return;
        };
        let Some(generated) = tool.openssl_rsa_chain() else {
            eprintln!("skipped: openssl failed");
            return;
        };

        let found = identify(generated.bundle.as_bytes()).unwrap();

        assert_eq!(found.len(), 2, "a leaf and its CA");
        let leaf = &found[0];
        assert_eq!(leaf.details["key_algorithm"], "RSA");
        assert_eq!(leaf.details["key_bits"], 2048);
        assert_eq!(leaf.details["self_signed"], false);
        assert_eq!(leaf.details["is_ca"], false);
        assert_eq!(
            leaf.native_id.as_deref(),
            Some(generated.leaf_serial.as_str())
        );
        assert_eq!(leaf.expires_at, Some(generated.leaf_not_after));
        assert_eq!(leaf.details["issuer"], "CN=Made-up CA");
        assert_eq!(
            leaf.details["subject_alternative_names"],
            serde_json::json!([
                "DNS:leaf.example.test",
                "DNS:*.leaf.example.test",
                "IP:2001:db8::1"
            ])
        );
        assert_eq!(found[1].details["self_signed"], true);
        assert_eq!(found[1].details["is_ca"], true);

        for (name, key, algorithm, bits) in [
            ("rsa traditional", &generated.rsa_pkcs1, "RSA", 2048),
            ("rsa pkcs8", &generated.rsa_pkcs8, "RSA", 2048),
            ("ec sec1", &generated.ec_sec1, "EC", 384),
            ("ed25519", &generated.ed25519, "Ed25519", 256),
        ] {
            let found = identify(key).unwrap();
            assert_eq!(found.len(), 1, "{name}");
            assert_eq!(found[0].details["key_algorithm"], algorithm, "{name}");
            assert_eq!(found[0].details["key_bits"], bits, "{name}");
        }

        let der = identify(&generated.leaf_der).unwrap();
        assert_eq!(der[0].native_id, leaf.native_id, "DER certificate");
        let der_key = identify(&generated.rsa_pkcs8_der).unwrap();
        assert_eq!(der_key[0].details["key_algorithm"], "RSA", "DER key");

        let encrypted = identify(&generated.rsa_encrypted_pkcs8).unwrap();
        assert_eq!(encrypted[0].details["encrypted"], true);
        assert_eq!(
            encrypted[0].material.expose(),
            generated.rsa_encrypted_pkcs8.as_slice()
        );

        let pkcs12 = identify(&generated.pkcs12).unwrap();
        assert_eq!(pkcs12[0].credential_type, "pkcs12");
    }

    #[test]
    fn text_without_pem_is_invalid() {
        let error = identify(b"not a key").unwrap_err();

        assert!(error.to_string().contains("no PEM block"), "{error}");
    }

    #[test]
    fn binary_garbage_is_invalid() {
        let error = identify(&[0x30, 0x03, 0x02, 0x01, 0xff]).unwrap_err();

        assert!(error.to_string().contains("no DER certificate"), "{error}");
    }
}
