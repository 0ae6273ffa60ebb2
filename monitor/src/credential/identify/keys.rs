//! Private keys in PKCS#8, PKCS#1 (RSA), SEC1 (EC) and OpenSSL's DSA format: algorithm, size
//! and, where the key contains its public half, the SSH public key blob.

use der::{
    Decode as _,
    asn1::{ObjectIdentifier, UintRef},
};

use super::{pem::Block, sshwire};

/// Facts about a private key that reveal nothing of its secret.
pub(super) struct KeyFacts {
    /// `RSA`, `RSA-PSS`, `EC`, `DSA`, `Ed25519`, `Ed448`, `X25519`, `X448`, or the dotted
    /// object identifier of another algorithm.
    pub(super) algorithm: String,
    /// Key size in bits, when known.
    pub(super) bits: Option<usize>,
    /// Named curve of an EC key.
    pub(super) curve: Option<&'static str>,
    /// `pkcs8`, `pkcs1`, `sec1` or `dsa`.
    pub(super) format: &'static str,
    /// Whether the key is encrypted, in which case only the PEM label gave the algorithm.
    pub(super) encrypted: bool,
    /// SSH public key blob, when the key contains its public half in a type that SSH supports.
    pub(super) ssh_blob: Option<Vec<u8>>,
}

impl KeyFacts {
    fn new(algorithm: &str, format: &'static str) -> Self {
        Self {
            algorithm: algorithm.to_string(),
            bits: None,
            curve: None,
            format,
            encrypted: false,
            ssh_blob: None,
        }
    }
}

/// A named elliptic curve.
pub(super) struct Curve {
    oid: &'static str,
    pub(super) name: &'static str,
    pub(super) bits: usize,
    /// SSH key type and curve identifier, for curves that SSH supports.
    ssh: Option<(&'static str, &'static str)>,
}

const CURVES: &[Curve] = &[
    Curve {
        oid: "1.2.840.10045.3.1.7",
        name: "P-256",
        bits: 256,
        ssh: Some(("ecdsa-sha2-nistp256", "nistp256")),
    },
    Curve {
        oid: "1.3.132.0.34",
        name: "P-384",
        bits: 384,
        ssh: Some(("ecdsa-sha2-nistp384", "nistp384")),
    },
    Curve {
        oid: "1.3.132.0.35",
        name: "P-521",
        bits: 521,
        ssh: Some(("ecdsa-sha2-nistp521", "nistp521")),
    },
    Curve {
        oid: "1.3.132.0.10",
        name: "secp256k1",
        bits: 256,
        ssh: None,
    },
];

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_DSA: &str = "1.2.840.10040.4.1";
const OID_X25519: &str = "1.3.101.110";
const OID_X448: &str = "1.3.101.111";
const OID_ED25519: &str = "1.3.101.112";
const OID_ED448: &str = "1.3.101.113";

/// Returns the name of a public key algorithm, or `None` for one not listed here.
pub(super) fn algorithm_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        OID_RSA => "RSA",
        OID_RSA_PSS => "RSA-PSS",
        OID_EC => "EC",
        OID_DSA => "DSA",
        OID_X25519 => "X25519",
        OID_X448 => "X448",
        OID_ED25519 => "Ed25519",
        OID_ED448 => "Ed448",
        _ => return None,
    })
}

/// Returns the curve with the dotted object identifier `oid`.
pub(super) fn curve_by_oid(oid: &str) -> Option<&'static Curve> {
    CURVES.iter().find(|curve| curve.oid == oid)
}

/// Returns the size in bits of keys of a fixed-size algorithm.
pub(super) fn fixed_bits(algorithm: &str) -> Option<usize> {
    match algorithm {
        "Ed25519" | "X25519" => Some(256),
        "Ed448" | "X448" => Some(456),
        _ => None,
    }
}

/// Tells whether a PEM label is that of a private key that this module reads.
pub(super) fn is_private_key_label(label: &str) -> bool {
    matches!(
        label,
        "PRIVATE KEY"
            | "ENCRYPTED PRIVATE KEY"
            | "RSA PRIVATE KEY"
            | "EC PRIVATE KEY"
            | "DSA PRIVATE KEY"
    )
}

/// Describes a private key PEM block. Returns `None` when the block is no private key of a
/// known label or its DER does not match its label.
pub(super) fn describe_block(block: &Block) -> Option<KeyFacts> {
    let der = block.der.expose();
    let (algorithm, format) = match block.label.as_str() {
        "PRIVATE KEY" => return from_pkcs8(der),
        "ENCRYPTED PRIVATE KEY" => ("unknown", "pkcs8"),
        "RSA PRIVATE KEY" => ("RSA", "pkcs1"),
        "EC PRIVATE KEY" => ("EC", "sec1"),
        "DSA PRIVATE KEY" => ("DSA", "dsa"),
        _ => return None,
    };
    if block.label == "ENCRYPTED PRIVATE KEY" || block.is_encrypted() {
        let mut facts = KeyFacts::new(algorithm, format);
        facts.encrypted = true;
        return Some(facts);
    }
    match format {
        "pkcs1" => from_pkcs1(der),
        "sec1" => from_sec1(der, None),
        _ => from_dsa(der),
    }
}

/// Describes a DER private key of any format that this module reads.
pub(super) fn describe_der(der: &[u8]) -> Option<KeyFacts> {
    from_pkcs8(der)
        .or_else(|| from_pkcs1(der))
        .or_else(|| from_sec1(der, None))
        .or_else(|| from_dsa(der))
}

fn from_pkcs8(der: &[u8]) -> Option<KeyFacts> {
    let info = pkcs8::PrivateKeyInfoRef::try_from(der).ok()?;
    let oid = info.algorithm.oid.to_string();
    let private_key = info.private_key.as_bytes();
    let mut facts = match oid.as_str() {
        OID_RSA | OID_RSA_PSS => from_pkcs1(private_key)?,
        OID_EC => {
            let curve = info
                .algorithm
                .parameters
                .and_then(|parameters| parameters.decode_as::<ObjectIdentifier>().ok());
            from_sec1(private_key, curve)?
        }
        OID_DSA => {
            let mut facts = KeyFacts::new("DSA", "pkcs8");
            // Dss-Parms is SEQUENCE { p, q, g }. The public value is not stored.
            facts.bits = info
                .algorithm
                .parameters
                .and_then(|parameters| parameters.decode_as::<Vec<UintRef<'_>>>().ok())
                .and_then(|numbers| numbers.first().map(|p| sshwire::bit_length(p.as_bytes())));
            facts
        }
        _ => {
            let name = algorithm_name(&oid).unwrap_or(oid.as_str());
            let mut facts = KeyFacts::new(name, "pkcs8");
            facts.bits = fixed_bits(name);
            let public_key = info.public_key.and_then(|key| key.as_bytes());
            facts.ssh_blob = match (oid.as_str(), public_key) {
                (OID_ED25519, Some(public_key)) if public_key.len() == 32 => {
                    Some(simple_blob("ssh-ed25519", public_key))
                }
                _ => None,
            };
            facts
        }
    };
    if let Some(name) = algorithm_name(&oid) {
        facts.algorithm = name.to_string();
    }
    facts.format = "pkcs8";
    Some(facts)
}

fn from_pkcs1(der: &[u8]) -> Option<KeyFacts> {
    let key = pkcs1::RsaPrivateKeyRef::try_from(der).ok()?;
    let modulus = key.modulus.as_bytes();
    let mut blob = Vec::new();
    sshwire::write_string(&mut blob, b"ssh-rsa");
    sshwire::write_mpint(&mut blob, key.public_exponent.as_bytes());
    sshwire::write_mpint(&mut blob, modulus);

    let mut facts = KeyFacts::new("RSA", "pkcs1");
    facts.bits = Some(sshwire::bit_length(modulus));
    facts.ssh_blob = Some(blob);
    Some(facts)
}

/// Reads a SEC1 key. PKCS#8 stores the curve outside, and passes it as `outer_curve`.
fn from_sec1(der: &[u8], outer_curve: Option<ObjectIdentifier>) -> Option<KeyFacts> {
    let key = sec1::EcPrivateKey::try_from(der).ok()?;
    let curve_oid = key
        .parameters
        .and_then(|parameters| parameters.named_curve())
        .or(outer_curve);
    let curve = curve_oid.and_then(|oid| curve_by_oid(&oid.to_string()));

    let mut facts = KeyFacts::new("EC", "sec1");
    facts.curve = curve.map(|curve| curve.name);
    facts.bits = curve.map(|curve| curve.bits);
    if let (Some((key_type, curve_id)), Some(point)) =
        (curve.and_then(|curve| curve.ssh), key.public_key)
    {
        let mut blob = Vec::new();
        sshwire::write_string(&mut blob, key_type.as_bytes());
        sshwire::write_string(&mut blob, curve_id.as_bytes());
        sshwire::write_string(&mut blob, point);
        facts.ssh_blob = Some(blob);
    }
    Some(facts)
}

/// Reads OpenSSL's DSA key, SEQUENCE { version, p, q, g, y, x }.
fn from_dsa(der: &[u8]) -> Option<KeyFacts> {
    let numbers = Vec::<UintRef<'_>>::from_der(der).ok()?;
    let [_version, p, q, g, y, _x] = numbers.as_slice() else {
        return None;
    };
    let mut blob = Vec::new();
    sshwire::write_string(&mut blob, b"ssh-dss");
    for number in [p, q, g, y] {
        sshwire::write_mpint(&mut blob, number.as_bytes());
    }

    let mut facts = KeyFacts::new("DSA", "dsa");
    facts.bits = Some(sshwire::bit_length(p.as_bytes()));
    facts.ssh_blob = Some(blob);
    Some(facts)
}

fn simple_blob(key_type: &str, public_key: &[u8]) -> Vec<u8> {
    let mut blob = Vec::new();
    sshwire::write_string(&mut blob, key_type.as_bytes());
    sshwire::write_string(&mut blob, public_key);
    blob
}
