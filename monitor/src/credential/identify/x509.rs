//! X.509 certificates: subject, issuer, serial number, validity, subject alternative names and
//! public key.
//!
//! The material is the certificate's DER, and the native id its serial number in uppercase
//! hex, as `openssl x509 -serial` prints it.

use std::net::{Ipv4Addr, Ipv6Addr};

use sha2::{Digest as _, Sha256};
use x509_parser::{
    asn1_rs::Oid,
    certificate::X509Certificate,
    extensions::{GeneralName, ParsedExtension},
    public_key::PublicKey,
    x509::SubjectPublicKeyInfo,
};

use super::{Identified, keys, sshwire, text::hex};
use crate::credential::fingerprint::SecretBytes;

/// Credential type of every certificate.
pub(super) const CREDENTIAL_TYPE: &str = "x509_certificate";

/// Describes the DER certificate `der`. Returns `None` when it is no valid X.509 certificate
/// or has bytes after its end.
pub(super) fn describe(der: &[u8]) -> Option<Identified> {
    let (rest, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    if !rest.is_empty() {
        return None;
    }

    let mut item = Identified::new(CREDENTIAL_TYPE, SecretBytes::from_slice(der));
    let serial = hex(certificate.raw_serial()).to_ascii_uppercase();
    item.native_id = Some(serial.clone());
    item.label =
        Some(common_name(&certificate).unwrap_or_else(|| certificate.subject().to_string()));
    item.expires_at = Some(certificate.validity().not_after.timestamp());

    item.detail("subject", certificate.subject().to_string());
    item.detail("issuer", certificate.issuer().to_string());
    item.detail("serial", serial);
    item.detail("not_before", certificate.validity().not_before.timestamp());
    item.detail("not_after", certificate.validity().not_after.timestamp());
    item.detail("self_signed", is_self_signed(&certificate));
    item.detail("is_ca", certificate.is_ca());
    item.detail("sha256_fingerprint", hex(&Sha256::digest(der)));
    let names = subject_alternative_names(&certificate);
    if !names.is_empty() {
        item.detail("subject_alternative_names", names);
    }
    describe_public_key(certificate.public_key(), &mut item);
    Some(item)
}

fn common_name(certificate: &X509Certificate<'_>) -> Option<String> {
    certificate
        .subject()
        .iter_common_name()
        .next()
        .and_then(|name| name.as_str().ok())
        .map(str::to_string)
}

/// Tells whether the certificate names itself as issuer and, when it has both key identifier
/// extensions, whether they agree. The signature is not verified.
fn is_self_signed(certificate: &X509Certificate<'_>) -> bool {
    if certificate.subject().as_raw() != certificate.issuer().as_raw() {
        return false;
    }
    let mut subject_key_id = None;
    let mut authority_key_id = None;
    for extension in certificate.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => subject_key_id = Some(id.0),
            ParsedExtension::AuthorityKeyIdentifier(authority) => {
                authority_key_id = authority.key_identifier.as_ref().map(|id| id.0);
            }
            _ => {}
        }
    }
    match (subject_key_id, authority_key_id) {
        (Some(subject), Some(authority)) => subject == authority,
        _ => true,
    }
}

/// Returns the names as OpenSSL abbreviates their kinds: `DNS:`, `IP:`, `email:`, `URI:`.
fn subject_alternative_names(certificate: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(extension)) = certificate.subject_alternative_name() else {
        return Vec::new();
    };
    extension
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(format!("DNS:{dns}")),
            GeneralName::RFC822Name(email) => Some(format!("email:{email}")),
            GeneralName::URI(uri) => Some(format!("URI:{uri}")),
            GeneralName::IPAddress(bytes) => ip_address(bytes).map(|ip| format!("IP:{ip}")),
            _ => None,
        })
        .collect()
}

fn ip_address(bytes: &[u8]) -> Option<String> {
    if let Ok(octets) = <[u8; 4]>::try_from(bytes) {
        return Some(Ipv4Addr::from(octets).to_string());
    }
    let octets = <[u8; 16]>::try_from(bytes).ok()?;
    Some(Ipv6Addr::from(octets).to_string())
}

fn describe_public_key(key: &SubjectPublicKeyInfo<'_>, item: &mut Identified) {
    let oid = key.algorithm.algorithm.to_id_string();
    let algorithm = keys::algorithm_name(&oid).unwrap_or(oid.as_str());
    item.detail("key_algorithm", algorithm);

    let curve = key
        .algorithm
        .parameters
        .as_ref()
        .and_then(|parameters| Oid::try_from(parameters).ok())
        .and_then(|curve| keys::curve_by_oid(&curve.to_id_string()));
    let bits = match key.parsed() {
        Ok(PublicKey::RSA(rsa)) => Some(sshwire::bit_length(rsa.modulus)),
        Ok(PublicKey::EC(_)) => curve.map(|curve| curve.bits),
        Ok(PublicKey::DSA(_)) => None,
        _ => keys::fixed_bits(algorithm),
    };
    item.detail_opt("key_bits", bits);
    item.detail_opt("key_curve", curve.map(|curve| curve.name));
}
