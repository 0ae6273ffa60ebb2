//! Choosing the key that credential ids are computed under: the fleet key from the
//! configuration, or the per-installation key in the state directory.

use std::{
    fs,
    io::Read as _,
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use thiserror::Error;
use zeroize::Zeroizing;

use super::fingerprint::{CredentialKey, KeyError};

/// Largest fleet key file read, in bytes.
const MAX_FLEET_KEY_BYTES: u64 = 4096;

/// The credential key could not be loaded.
#[derive(Debug, Error)]
pub enum LoadKeyError {
    /// The fleet key file could not be read.
    #[error("failed to read the fleet key file {path} (credentials.fleet_key_file)")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The fleet key file is unusable.
    #[error("invalid fleet key file {path} (credentials.fleet_key_file): {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The problem, described without the file's content.
        problem: String,
    },
    /// The install key could not be loaded or created.
    #[error("failed to load the install key in {state_dir}")]
    Install {
        /// The state directory.
        state_dir: PathBuf,
        /// The cause.
        #[source]
        source: KeyError,
    },
}

/// Loads the fleet key from `fleet_key_file` when it is set, else the install key of
/// `state_dir` (created on first use).
pub fn load_key(
    fleet_key_file: Option<&Path>,
    state_dir: &Path,
) -> Result<CredentialKey, LoadKeyError> {
    match fleet_key_file {
        Some(path) => load_fleet_key(path),
        None => CredentialKey::load_or_create(state_dir).map_err(|source| LoadKeyError::Install {
            state_dir: state_dir.to_path_buf(),
            source,
        }),
    }
}

/// Checks that a fleet key file can be read and is long enough, as `check-config` does.
pub fn check_fleet_key(path: &Path) -> Result<(), LoadKeyError> {
    load_fleet_key(path).map(drop)
}

/// Reads a fleet key file. One trailing line end is dropped, so a file written with `echo`
/// gives the same key as one written without. A file that group or others may read is used
/// with a warning, because the key is what keeps ids from being matched against guesses.
fn load_fleet_key(path: &Path) -> Result<CredentialKey, LoadKeyError> {
    let read_error = |source| LoadKeyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(read_error)?;
    let metadata = file.metadata().map_err(read_error)?;
    if !metadata.is_file() {
        return Err(invalid(
            path,
            "it is not a regular file; point the setting at a file with a random secret",
        ));
    }
    if metadata.mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", metadata.mode() & 0o777),
            "the fleet key file is readable by group or others; restrict it with chmod 600"
        );
    }
    let mut secret = Zeroizing::new(Vec::new());
    file.take(MAX_FLEET_KEY_BYTES + 1)
        .read_to_end(&mut secret)
        .map_err(read_error)?;
    if secret.len() as u64 > MAX_FLEET_KEY_BYTES {
        return Err(invalid(
            path,
            &format!(
                "it is larger than {MAX_FLEET_KEY_BYTES} bytes; a secret of 32 random bytes \
                 is enough"
            ),
        ));
    }
    let trimmed = strip_line_end(&secret);
    CredentialKey::from_fleet_secret(trimmed).map_err(|error| invalid(path, &error.to_string()))
}

fn strip_line_end(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

fn invalid(path: &Path, problem: &str) -> LoadKeyError {
    LoadKeyError::Invalid {
        path: path.to_path_buf(),
        problem: problem.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::credential::fingerprint::SecretBytes;

    fn write(path: &Path, contents: &[u8]) {
        fs::write(path, contents).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn fleet_key_ignores_one_line_end() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        let newline = dir.path().join("newline");
        write(&plain, b"made-up fleet secret 0123456789");
        write(&newline, b"made-up fleet secret 0123456789\n");
        let material = SecretBytes::from_slice(b"made-up token");

        let first = load_key(Some(&plain), dir.path()).unwrap();
        let second = load_key(Some(&newline), dir.path()).unwrap();

        assert_eq!(
            first.credential_id(&material),
            second.credential_id(&material)
        );
        assert!(!dir.path().join("install.key").exists());
    }

    #[test]
    fn fleet_key_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        write(&short, b"too short\n");
        let missing = dir.path().join("missing");

        let short_error = load_key(Some(&short), dir.path()).unwrap_err().to_string();
        let missing_error = load_key(Some(&missing), dir.path())
            .unwrap_err()
            .to_string();
        let directory_error = load_key(Some(dir.path()), dir.path())
            .unwrap_err()
            .to_string();

        assert!(short_error.contains("short"), "{short_error}");
        assert!(short_error.contains("at least 16"), "{short_error}");
        assert!(
            !short_error.contains("too short"),
            "the content leaked: {short_error}"
        );
        assert!(missing_error.contains("missing"), "{missing_error}");
        assert!(
            directory_error.contains("regular file"),
            "{directory_error}"
        );
    }

    #[test]
    fn install_key_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let material = SecretBytes::from_slice(b"made-up token");

        let first = load_key(None, dir.path()).unwrap();
        let second = load_key(None, dir.path()).unwrap();

        assert_eq!(
            first.credential_id(&material),
            second.credential_id(&material)
        );
        let mode = fs::metadata(dir.path().join("install.key")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
