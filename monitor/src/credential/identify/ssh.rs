//! SSH private keys in the OpenSSH format (`openssh-key-v1`) and in PEM (PKCS#1, SEC1, DSA,
//! PKCS#8).
//!
//! The material is the public key blob, so a key keeps its id across formats and passphrase
//! changes, and the native id is its SHA-256 fingerprint as `ssh-keygen -l` prints it. An
//! OpenSSH key shows its public key even when encrypted. An encrypted PEM key shows nothing,
//! so its material is the whole file. The same applies to a PEM key without its public half,
//! such as an Ed25519 PKCS#8 key of version 1.

use super::{
    Identified, IdentifyError,
    keys::{self, KeyFacts},
    pem::{self, Block},
    sshwire::{self, Reader},
    text::utf8,
};
use crate::credential::fingerprint::SecretBytes;

const EXPECTED: &str = "SSH private key";
const OPENSSH_LABEL: &str = "OPENSSH PRIVATE KEY";
const OPENSSH_MAGIC: &[u8] = b"openssh-key-v1\0";

/// Keys per OpenSSH file beyond which the count is taken for corruption. OpenSSH writes one.
const MAX_OPENSSH_KEYS: u32 = 16;

/// Identifies the private keys of an SSH key file. `credential_type` is the catalogue type,
/// `ssh_private_key` or `ssh_host_key`, and becomes the type of every key found.
pub(super) fn identify(
    credential_type: &str,
    contents: &[u8],
) -> Result<Vec<Identified>, IdentifyError> {
    let text = utf8(contents, EXPECTED)?;
    let mut found = Vec::new();
    for block in pem::parse_blocks(text, EXPECTED)? {
        found.extend(describe_block(credential_type, &block, contents)?);
    }
    if found.is_empty() {
        return Err(IdentifyError::invalid(
            EXPECTED,
            "no OpenSSH or PEM private key block found",
        ));
    }
    Ok(found)
}

/// Describes an OpenSSH or PEM private key block; other blocks give an empty list. `file` is
/// the whole file, the material of keys that show no public key.
pub(super) fn describe_block(
    credential_type: &str,
    block: &Block,
    file: &[u8],
) -> Result<Vec<Identified>, IdentifyError> {
    if block.label == OPENSSH_LABEL {
        return describe_openssh(credential_type, block);
    }
    if !keys::is_private_key_label(&block.label) {
        return Ok(Vec::new());
    }
    let facts = keys::describe_block(block).ok_or_else(|| invalid_block(block))?;
    Ok(vec![describe_pem_key(credential_type, &facts, file)])
}

fn invalid_block(block: &Block) -> IdentifyError {
    IdentifyError::invalid(
        EXPECTED,
        format!(
            "the PEM block on line {} does not contain a valid key of its label",
            block.line
        ),
    )
}

fn describe_pem_key(credential_type: &str, facts: &KeyFacts, file: &[u8]) -> Identified {
    let material = facts
        .ssh_blob
        .as_deref()
        .map_or_else(|| SecretBytes::from_slice(file), SecretBytes::from_slice);
    let mut item = Identified::new(credential_type, material);
    item.detail("format", format!("pem-{}", facts.format));
    item.detail("encrypted", facts.encrypted);
    match facts
        .ssh_blob
        .as_deref()
        .and_then(|blob| Some((blob, sshwire::describe_blob(blob)?)))
    {
        Some((blob, (key_type, bits))) => {
            let fingerprint = sshwire::fingerprint(blob);
            item.native_id = Some(fingerprint.clone());
            item.detail("fingerprint", fingerprint);
            item.detail("algorithm", key_type);
            item.detail_opt("key_bits", bits);
        }
        None => {
            item.detail("algorithm", facts.algorithm.clone());
            item.detail_opt("key_bits", facts.bits);
        }
    }
    item
}

// The OpenSSH format: magic, cipher name, KDF name, KDF options, key count, the public key
// blobs, then the private section, encrypted unless the cipher is `none`.

struct OpenSshKeys<'a> {
    cipher: String,
    kdf: String,
    public_blobs: Vec<&'a [u8]>,
    comments: Vec<Option<String>>,
}

fn describe_openssh(
    credential_type: &str,
    block: &Block,
) -> Result<Vec<Identified>, IdentifyError> {
    let keys = parse_openssh(block.der.expose()).ok_or_else(|| {
        IdentifyError::invalid(
            EXPECTED,
            format!(
                "the OpenSSH key block on line {} is truncated or not in openssh-key-v1 format",
                block.line
            ),
        )
    })?;

    let encrypted = keys.cipher != "none";
    let mut found = Vec::new();
    for (index, blob) in keys.public_blobs.iter().enumerate() {
        let mut item = Identified::new(credential_type, SecretBytes::from_slice(blob));
        let fingerprint = sshwire::fingerprint(blob);
        item.native_id = Some(fingerprint.clone());
        item.detail("fingerprint", fingerprint);
        if let Some((key_type, bits)) = sshwire::describe_blob(blob) {
            item.detail("algorithm", key_type);
            item.detail_opt("key_bits", bits);
        }
        item.detail("format", "openssh");
        item.detail("encrypted", encrypted);
        if encrypted {
            item.detail("cipher", keys.cipher.clone());
            item.detail("kdf", keys.kdf.clone());
        }
        let comment = keys.comments.get(index).cloned().flatten();
        item.detail_opt("comment", comment.clone());
        item.label = comment;
        found.push(item);
    }
    Ok(found)
}

fn parse_openssh(bytes: &[u8]) -> Option<OpenSshKeys<'_>> {
    let mut reader = Reader::new(bytes.strip_prefix(OPENSSH_MAGIC)?);
    let cipher = String::from_utf8_lossy(reader.read_string()?).into_owned();
    let kdf = String::from_utf8_lossy(reader.read_string()?).into_owned();
    reader.read_string()?;
    let count = reader.read_u32()?;
    if count == 0 || count > MAX_OPENSSH_KEYS {
        return None;
    }
    let mut public_blobs = Vec::new();
    for _ in 0..count {
        public_blobs.push(reader.read_string()?);
    }

    let private_section = reader.read_string()?;
    let comments = if cipher == "none" {
        private_comments(private_section, public_blobs.len())
    } else {
        Vec::new()
    };
    Some(OpenSshKeys {
        cipher,
        kdf,
        public_blobs,
        comments,
    })
}

/// Reads the comment of each key from an unencrypted private section: two equal check
/// numbers, then per key its type, its type's fields and the comment. A key of an unknown
/// type ends the reading, because its fields cannot be skipped.
fn private_comments(section: &[u8], count: usize) -> Vec<Option<String>> {
    let mut comments = Vec::new();
    let mut reader = Reader::new(section);
    let (Some(check), Some(again)) = (reader.read_u32(), reader.read_u32()) else {
        return comments;
    };
    if check != again {
        return comments;
    }
    for _ in 0..count {
        match read_private_key_comment(&mut reader) {
            Some(comment) => comments.push((!comment.is_empty()).then_some(comment)),
            None => break,
        }
    }
    comments
}

fn read_private_key_comment(reader: &mut Reader<'_>) -> Option<String> {
    let key_type = reader.read_string()?;
    match key_type {
        b"ssh-ed25519" => reader.skip_strings(2)?,
        b"ssh-rsa" => reader.skip_strings(6)?,
        b"ssh-dss" => reader.skip_strings(5)?,
        b"ecdsa-sha2-nistp256" | b"ecdsa-sha2-nistp384" | b"ecdsa-sha2-nistp521" => {
            reader.skip_strings(3)?;
        }
        b"sk-ssh-ed25519@openssh.com" => skip_security_key(reader, 1)?,
        b"sk-ecdsa-sha2-nistp256@openssh.com" => skip_security_key(reader, 2)?,
        _ => return None,
    }
    let comment = reader.read_string()?;
    Some(String::from_utf8_lossy(comment).into_owned())
}

/// Skips the fields of a FIDO security-key entry: the public key (`key_strings` strings),
/// application, flags byte, key handle and reserved string.
fn skip_security_key(reader: &mut Reader<'_>, key_strings: usize) -> Option<()> {
    reader.skip_strings(key_strings + 1)?;
    reader.read_u8()?;
    reader.skip_strings(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::identify::fixtures::{
        self, COMMITTED_ED25519_FINGERPRINT, COMMITTED_ED25519_KEY, KeyTool,
    };

    #[test]
    fn committed_openssh_key() {
        let found = identify("ssh_private_key", COMMITTED_ED25519_KEY.as_bytes()).unwrap();

        assert_eq!(found.len(), 1);
        let item = &found[0];
        assert_eq!(item.credential_type, "ssh_private_key");
        assert_eq!(
            item.native_id.as_deref(),
            Some(COMMITTED_ED25519_FINGERPRINT)
        );
        assert_eq!(item.details["algorithm"], "ssh-ed25519");
        assert_eq!(item.details["key_bits"], 256);
        assert_eq!(item.details["encrypted"], false);
        assert_eq!(item.details["comment"], "made-up@example.test");
        assert_eq!(item.label.as_deref(), Some("made-up@example.test"));
    }

    #[test]
    fn host_key_type_kept() {
        let found = identify("ssh_host_key", COMMITTED_ED25519_KEY.as_bytes()).unwrap();

        assert_eq!(found[0].credential_type, "ssh_host_key");
    }

    /// Generates keys of every type with ssh-keygen and compares the fingerprints.
    #[test]
    fn generated_openssh_keys_match_ssh_keygen() {
        let Some(tool) = KeyTool::new() else {
            eprintln!("skipped: ssh-keygen is not installed");
            return;
        };
        for (key_type, bits) in [
            ("ed25519", 256),
            ("rsa", 2048),
            ("ecdsa", 384),
            ("ecdsa", 521),
        ] {
            for passphrase in ["", "made-up passphrase"] {
                let Some(key) = tool.ssh_keygen(key_type, bits, passphrase, "made-up comment")
                else {
                    eprintln!("skipped: ssh-keygen failed for {key_type}");
                    continue;
                };

                let found = identify("ssh_private_key", &key.private_key).unwrap();

                assert_eq!(found.len(), 1, "{key_type}");
                let item = &found[0];
                let case = format!("{key_type} {bits} encrypted={}", !passphrase.is_empty());
                assert_eq!(
                    item.native_id.as_deref(),
                    Some(key.fingerprint.as_str()),
                    "{case}"
                );
                assert_eq!(item.details["key_bits"], bits, "{case}");
                assert_eq!(item.details["encrypted"], !passphrase.is_empty(), "{case}");
                if passphrase.is_empty() {
                    assert_eq!(item.label.as_deref(), Some("made-up comment"), "{case}");
                } else {
                    assert_eq!(item.details["cipher"], "aes256-ctr", "{case}");
                    assert_eq!(item.label, None, "{case}");
                }
            }
        }
    }

    /// Converts generated keys to PEM and compares the fingerprints with ssh-keygen's.
    #[test]
    fn generated_pem_keys_match_ssh_keygen() {
        let Some(tool) = KeyTool::new() else {
            eprintln!("skipped: ssh-keygen is not installed");
            return;
        };
        for (key_type, bits, format) in [
            ("rsa", 2048, "PEM"),
            ("rsa", 2048, "PKCS8"),
            ("ecdsa", 256, "PEM"),
            ("ecdsa", 384, "PKCS8"),
            ("dsa", 1024, "PEM"),
        ] {
            let Some(key) = tool.ssh_keygen_pem(key_type, bits, format) else {
                eprintln!("skipped: ssh-keygen failed for {key_type} {format}");
                continue;
            };

            let found = identify("ssh_private_key", &key.private_key).unwrap();

            let case = format!("{key_type} {bits} {format}");
            assert_eq!(found.len(), 1, "{case}");
            assert_eq!(
                found[0].native_id.as_deref(),
                Some(key.fingerprint.as_str()),
                "{case}"
            );
            assert_eq!(found[0].details["key_bits"], bits, "{case}");
            assert_eq!(found[0].details["encrypted"], false, "{case}");
        }
    }

    #[test]
    fn same_key_same_material_across_formats() {
        let Some(tool) = KeyTool::new() else {
            eprintln!("skipped: ssh-keygen is not installed");
            return;
        };
        let Some((openssh, pem)) = tool.ssh_keygen_both_formats() else {
            eprintln!("skipped: ssh-keygen could not convert a key");
            return;
        };

        let from_openssh = identify("ssh_private_key", &openssh).unwrap();
        let from_pem = identify("ssh_private_key", &pem).unwrap();

        assert_eq!(
            from_openssh[0].material.expose(),
            from_pem[0].material.expose()
        );
    }

    #[test]
    fn encrypted_pem_uses_file_as_material() {
        let text = fixtures::ENCRYPTED_PEM_RSA_HEADER_ONLY;

        let found = identify("ssh_private_key", text.as_bytes()).unwrap();

        assert_eq!(found[0].details["encrypted"], true);
        assert_eq!(found[0].details["algorithm"], "RSA");
        assert_eq!(found[0].native_id, None);
        assert_eq!(found[0].material.expose(), text.as_bytes());
    }

    #[test]
    fn truncated_openssh_key_is_invalid() {
        let text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";

        let error = identify("ssh_private_key", text.as_bytes()).unwrap_err();

        assert!(error.to_string().contains("truncated"), "{error}");
    }

    #[test]
    fn public_key_file_is_invalid() {
        let error = identify("ssh_private_key", b"ssh-ed25519 AAAAC3Nz made-up\n").unwrap_err();

        assert!(
            error.to_string().contains("no OpenSSH or PEM private key"),
            "{error}"
        );
    }
}
