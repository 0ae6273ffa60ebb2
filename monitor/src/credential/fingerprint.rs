//! Keyed credential ids and the secret byte buffers they are computed from.
//!
//! A credential id is an HMAC of the credential's material under a key that never leaves the
//! host (or the fleet). Two sightings of the same credential get the same id, and the id
//! reveals nothing about the secret to anyone without the key. The key is either random per
//! installation ([`CredentialKey::load_or_create`]) or derived from a secret shared by a fleet
//! ([`CredentialKey::from_fleet_secret`]), which makes ids comparable across hosts.

use std::{
    fmt,
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Write as _},
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Text that `Debug` and `Display` print in place of a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Size of a credential key in bytes.
pub const KEY_LEN: usize = 32;

/// Name of the per-installation key file inside the state directory.
pub const KEY_FILE_NAME: &str = "install.key";

/// Minimum length of a fleet secret in bytes, so that it carries at least 128 bits when random.
pub const MIN_FLEET_SECRET_LEN: usize = 16;

/// Prefix of every credential id. The `1` is the scheme version: HMAC-SHA-256 of the material,
/// truncated to 128 bits. A later scheme gets a new prefix, so ids of two schemes never collide.
pub const CREDENTIAL_ID_PREFIX: &str = "cw1:";

/// Number of HMAC output bytes kept in a credential id. 128 bits keep the chance of any
/// collision among 10^12 credentials below 10^-14.
const CREDENTIAL_ID_BYTES: usize = 16;

/// Message that turns a fleet secret into a key. Binding the derivation to this purpose means a
/// fleet secret that is also used elsewhere still yields an unrelated key here.
const FLEET_KEY_CONTEXT: &[u8] = b"credwatch credential-id key v1";

/// Bytes of a secret that are zeroed when dropped and never printed.
///
/// `Debug` and `Display` print `[REDACTED]`, and the type implements no `Serialize`, so a
/// secret cannot reach a log line or an event by accident. Read the bytes with
/// [`SecretBytes::expose`].
#[derive(Clone, Default)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps `bytes`, taking ownership so that no unzeroed copy stays behind.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Copies `bytes` into a new secret.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }

    /// Returns the secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Returns the length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Tells whether the secret has no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl From<String> for SecretBytes {
    fn from(text: String) -> Self {
        Self::new(text.into_bytes())
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(REDACTED)
    }
}

impl fmt::Display for SecretBytes {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(REDACTED)
    }
}

/// Errors of loading, creating or deriving a [`CredentialKey`].
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file system operation on the key file or its directory failed.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// Action that failed, such as `read the credential key file`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system error.
        source: io::Error,
    },
    /// The key file is readable or writable by users other than its owner.
    #[error(
        "credential key file {path} has mode {mode:04o}, so users other than its owner can \
         access it; run `chmod 600 {path}`, or delete it to make a new key (credential ids \
         then change)"
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file does not have [`KEY_LEN`] bytes.
    #[error(
        "credential key file {path} has {len} bytes, expected {KEY_LEN}; delete it to make a \
         new key (credential ids then change)"
    )]
    WrongSize {
        /// The key file.
        path: PathBuf,
        /// Its size in bytes.
        len: u64,
    },
    /// The key path exists but is not a regular file.
    #[error(
        "credential key path {path} is not a regular file; move it away so a key file can be created"
    )]
    NotRegularFile {
        /// The path.
        path: PathBuf,
    },
    /// The fleet secret is shorter than [`MIN_FLEET_SECRET_LEN`].
    #[error(
        "the fleet secret has {len} bytes, but at least {MIN_FLEET_SECRET_LEN} are required; \
         use a random value such as the output of `openssl rand -hex 32`"
    )]
    FleetSecretTooShort {
        /// Its length in bytes.
        len: usize,
    },
    /// The operating system's random number generator failed.
    #[error("failed to read random bytes for a new credential key: {0}")]
    Random(getrandom::Error),
}

/// The key that credential ids are computed under. It is zeroed when dropped and never printed.
pub struct CredentialKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for CredentialKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "CredentialKey({REDACTED})")
    }
}

impl CredentialKey {
    /// Loads the per-installation key from `state_dir/install.key`, creating the directory
    /// (mode 0700) and the key (32 random bytes, mode 0600) on first use.
    ///
    /// A new key is written to a temporary file and then linked to its final name. Unlike a
    /// rename, the link fails when another process created the key at the same moment, and
    /// then both use that process's key. An existing key file is rejected when group or others
    /// have any permission on it or when its size is not [`KEY_LEN`].
    pub fn load_or_create(state_dir: &Path) -> Result<Self, KeyError> {
        let path = state_dir.join(KEY_FILE_NAME);
        match load_key_file(&path) {
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            result => return result,
        }

        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|source| KeyError::Io {
                action: "create the state directory",
                path: state_dir.to_path_buf(),
                source,
            })?;

        let mut key = Zeroizing::new([0_u8; KEY_LEN]);
        getrandom::fill(key.as_mut()).map_err(KeyError::Random)?;
        match create_key_file(state_dir, &path, &key) {
            Ok(()) => Ok(Self(key)),
            Err(source) if source.kind() == io::ErrorKind::AlreadyExists => load_key_file(&path),
            Err(source) => Err(KeyError::Io {
                action: "create the credential key file",
                path,
                source,
            }),
        }
    }

    /// Derives the key from a secret that every host of a fleet shares, so that the same
    /// credential gets the same id on every host.
    ///
    /// The key is HMAC-SHA-256 of a fixed context string under `secret`. The secret must have
    /// at least [`MIN_FLEET_SECRET_LEN`] bytes and should be random. Callers strip a trailing
    /// newline from a secret read from a file, because the bytes are used exactly as given.
    pub fn from_fleet_secret(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_FLEET_SECRET_LEN {
            return Err(KeyError::FleetSecretTooShort { len: secret.len() });
        }
        let mut key = Zeroizing::new([0_u8; KEY_LEN]);
        key.copy_from_slice(&hmac_sha256(secret, FLEET_KEY_CONTEXT));
        Ok(Self(key))
    }

    /// Returns a value that identifies this key without revealing it: the id of a fixed,
    /// public text. The state database keeps it to notice a change of key.
    pub fn check_value(&self) -> String {
        self.credential_id(&SecretBytes::from_slice(b"credwatch credential key check"))
    }

    /// Returns the id of the credential whose material is `material`: [`CREDENTIAL_ID_PREFIX`]
    /// followed by the first 32 lowercase hex digits (128 bits) of HMAC-SHA-256 under this key.
    pub fn credential_id(&self, material: &SecretBytes) -> String {
        let tag = Zeroizing::new(hmac_sha256(self.0.as_ref(), material.expose()));
        let mut id = String::with_capacity(CREDENTIAL_ID_PREFIX.len() + 2 * CREDENTIAL_ID_BYTES);
        id.push_str(CREDENTIAL_ID_PREFIX);
        for byte in &tag[..CREDENTIAL_ID_BYTES] {
            id.push_str(&format!("{byte:02x}"));
        }
        id
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC (RFC 2104) takes keys of any length, so `new_from_slice` of `Hmac` never fails.
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Reads and checks an existing key file.
fn load_key_file(path: &Path) -> Result<CredentialKey, KeyError> {
    let io_error = |action| {
        move |source| KeyError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };

    // O_NOFOLLOW keeps a symbolic link planted at the key path from pointing the key elsewhere.
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_error("open the credential key file"))?;
    let metadata = file
        .metadata()
        .map_err(io_error("read the metadata of the credential key file"))?;
    check_key_metadata(path, &metadata)?;

    let mut key = Zeroizing::new([0_u8; KEY_LEN]);
    file.read_exact(key.as_mut())
        .map_err(io_error("read the credential key file"))?;
    Ok(CredentialKey(key))
}

fn check_key_metadata(path: &Path, metadata: &fs::Metadata) -> Result<(), KeyError> {
    if !metadata.is_file() {
        return Err(KeyError::NotRegularFile {
            path: path.to_path_buf(),
        });
    }
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    if metadata.len() != KEY_LEN as u64 {
        return Err(KeyError::WrongSize {
            path: path.to_path_buf(),
            len: metadata.len(),
        });
    }
    Ok(())
}

/// Writes `key` to a temporary file of mode 0600 in `dir` and links it to `path`. Returns an
/// error of kind `AlreadyExists` when `path` exists.
fn create_key_file(dir: &Path, path: &Path, key: &[u8; KEY_LEN]) -> io::Result<()> {
    // The random part keeps two threads or processes from sharing a temporary file.
    let suffix = getrandom::u64().map_err(io::Error::other)?;
    let temporary = dir.join(format!(
        ".{KEY_FILE_NAME}.{}.{suffix:016x}.tmp",
        std::process::id()
    ));

    let result = write_new_file(&temporary, key).and_then(|()| fs::hard_link(&temporary, path));
    let removed = fs::remove_file(&temporary);
    result?;
    removed?;

    // Make the new directory entry durable, so a crash cannot bring back a state without it.
    File::open(dir)?.sync_all()
}

fn write_new_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn load_or_create_makes_private_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");

        let first = CredentialKey::load_or_create(&state).unwrap();
        let second = CredentialKey::load_or_create(&state).unwrap();

        let key_path = state.join(KEY_FILE_NAME);
        assert_eq!(mode_of(&key_path), 0o600);
        assert_eq!(mode_of(&state), 0o700);
        assert_eq!(fs::metadata(&key_path).unwrap().len(), KEY_LEN as u64);
        let material = SecretBytes::from_slice(b"made-up material");
        assert_eq!(
            first.credential_id(&material),
            second.credential_id(&material)
        );
        let leftovers: Vec<_> = fs::read_dir(&state).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
    }

    #[test]
    fn load_or_create_keys_differ_per_install() {
        let first_dir = tempfile::tempdir().unwrap();
        let second_dir = tempfile::tempdir().unwrap();
        let material = SecretBytes::from_slice(b"made-up material");

        let first = CredentialKey::load_or_create(first_dir.path()).unwrap();
        let second = CredentialKey::load_or_create(second_dir.path()).unwrap();

        assert_ne!(
            first.credential_id(&material),
            second.credential_id(&material)
        );
    }

    #[test]
    fn load_rejects_group_readable_key() {
        let dir = tempfile::tempdir().unwrap();
        CredentialKey::load_or_create(dir.path()).unwrap();
        let key_path = dir.path().join(KEY_FILE_NAME);
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o640)).unwrap();

        let error = CredentialKey::load_or_create(dir.path()).unwrap_err();

        assert!(matches!(error, KeyError::Permissions { mode: 0o640, .. }));
        let message = error.to_string();
        assert!(
            message.contains(&key_path.display().to_string()),
            "{message}"
        );
        assert!(message.contains("chmod 600"), "{message}");
    }

    #[test]
    fn load_rejects_wrong_size_key() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join(KEY_FILE_NAME);
        write_new_file(&key_path, &[7; 16]).unwrap();

        let error = CredentialKey::load_or_create(dir.path()).unwrap_err();

        assert!(matches!(error, KeyError::WrongSize { len: 16, .. }));
        assert!(error.to_string().contains("delete it"), "{error}");
    }

    #[test]
    fn load_rejects_symbolic_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        write_new_file(&target, &[7; KEY_LEN]).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(KEY_FILE_NAME)).unwrap();

        let error = CredentialKey::load_or_create(dir.path()).unwrap_err();

        assert!(matches!(error, KeyError::Io { .. }), "{error}");
    }

    #[test]
    fn load_reads_existing_key() {
        let dir = tempfile::tempdir().unwrap();
        write_new_file(&dir.path().join(KEY_FILE_NAME), &[7; KEY_LEN]).unwrap();

        let key = CredentialKey::load_or_create(dir.path()).unwrap();

        let material = SecretBytes::from_slice(b"made-up material");
        let expected = CredentialKey(Zeroizing::new([7; KEY_LEN])).credential_id(&material);
        assert_eq!(key.credential_id(&material), expected);
    }

    #[test]
    fn credential_id_format() {
        let key = CredentialKey::from_fleet_secret(b"made-up fleet secret 0123456789").unwrap();

        let id = key.credential_id(&SecretBytes::from_slice(b"made-up material"));

        assert!(id.starts_with(CREDENTIAL_ID_PREFIX), "{id}");
        let hex = &id[CREDENTIAL_ID_PREFIX.len()..];
        assert_eq!(hex.len(), 32);
        assert!(
            hex.bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
        );
    }

    #[test]
    fn credential_id_known_answer() {
        // HMAC-SHA-256 test case 2 of RFC 4231: key "Jefe", data "what do ya want for nothing?".
        let mut key = [0_u8; KEY_LEN];
        key[..4].copy_from_slice(b"Jefe");
        let tag = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            tag[..4],
            [0x5b, 0xdc, 0xc1, 0x46],
            "HMAC-SHA-256 does not match RFC 4231"
        );

        // HMAC pads short keys with zeros, so the zero-padded 32-byte key gives the same tag.
        let id = CredentialKey(Zeroizing::new(key))
            .credential_id(&SecretBytes::from_slice(b"what do ya want for nothing?"));
        assert_eq!(id, "cw1:5bdcc146bf60754e6a042426089575c7");
    }

    #[test]
    fn credential_id_differs_per_material() {
        let key = CredentialKey::from_fleet_secret(b"made-up fleet secret 0123456789").unwrap();

        let first = key.credential_id(&SecretBytes::from_slice(b"made-up one"));
        let second = key.credential_id(&SecretBytes::from_slice(b"made-up two"));

        assert_ne!(first, second);
    }

    #[test]
    fn fleet_secret_is_deterministic() {
        let secret = b"made-up fleet secret 0123456789";
        let material = SecretBytes::from_slice(b"made-up material");

        let first = CredentialKey::from_fleet_secret(secret).unwrap();
        let second = CredentialKey::from_fleet_secret(secret).unwrap();

        assert_eq!(
            first.credential_id(&material),
            second.credential_id(&material)
        );
    }

    #[test]
    fn fleet_secret_too_short() {
        let error = CredentialKey::from_fleet_secret(b"short").unwrap_err();

        assert!(matches!(error, KeyError::FleetSecretTooShort { len: 5 }));
    }

    #[test]
    fn secrets_print_redacted() {
        let secret = SecretBytes::from_slice(b"made-up-canary-value");
        let key = CredentialKey::from_fleet_secret(b"made-up-canary-fleet-secret").unwrap();

        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(format!("{secret}"), REDACTED);
        assert_eq!(format!("{key:?}"), "CredentialKey([REDACTED])");
        assert_eq!(secret.expose(), b"made-up-canary-value");
    }
}
