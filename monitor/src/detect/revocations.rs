//! The revocation list: credential ids and native ids that must no longer be used.
//!
//! The file contains one id per line: a credwatch id (`cw1:...`) or an issuer's id such as an AWS
//! access key id or a certificate fingerprint. Blank lines and text after `#` are ignored. The
//! file is read again when its modification time, size or inode changes, so a revocation
//! takes effect without a restart. A file that turns unreadable keeps the last list.

use std::{
    collections::HashSet,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Largest revocation file read.
const MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Shortest time between two checks of the file for a change.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The revoked ids and the version of the file they came from.
#[derive(Debug)]
pub struct Revocations {
    path: PathBuf,
    ids: HashSet<String>,
    version: Option<(i64, u64, u64)>,
    last_check: Option<Instant>,
    failing: bool,
}

impl Revocations {
    /// Reads the list at `path`. The error names the file and the fix.
    pub fn load(path: &Path) -> Result<Self, String> {
        let mut revocations = Self {
            path: path.to_path_buf(),
            ids: HashSet::new(),
            version: None,
            last_check: None,
            failing: false,
        };
        revocations.reload()?;
        Ok(revocations)
    }

    /// Returns whether `id` is revoked, after reading the file again if it changed.
    pub fn contains(&mut self, id: &str) -> bool {
        self.refresh();
        self.ids.contains(id)
    }

    /// Returns the file the list comes from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn refresh(&mut self) {
        if self
            .last_check
            .is_some_and(|last| last.elapsed() < CHECK_EVERY)
        {
            return;
        }
        match self.reload() {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(path = %self.path.display(), ids = self.ids.len(), "read the revocation list again");
            }
            Ok(()) => {}
            Err(error) if !self.failing => {
                self.failing = true;
                tracing::warn!(%error, kept = self.ids.len(), "failed to read the revocation list; the last list read stays in force");
            }
            Err(_) => {}
        }
    }

    /// Reads the file when its version changed.
    fn reload(&mut self) -> Result<(), String> {
        self.last_check = Some(Instant::now());
        let path = self.path.display();
        let metadata = fs::metadata(&self.path).map_err(|error| {
            format!("detection.revocation_file {path}: {error}; create it, or remove the setting")
        })?;
        let version = (
            metadata.mtime_nsec() + metadata.mtime() * 1_000_000_000,
            metadata.len(),
            metadata.ino(),
        );
        if self.version == Some(version) {
            return Ok(());
        }
        if metadata.len() > MAX_BYTES {
            return Err(format!(
                "detection.revocation_file {path} is larger than {} MiB",
                MAX_BYTES >> 20
            ));
        }
        let text = fs::read_to_string(&self.path).map_err(|error| {
            format!(
                "detection.revocation_file {path}: {error}; it must be UTF-8 text, one id per line"
            )
        })?;
        self.ids = parse(&text);
        self.version = Some(version);
        tracing::debug!(path = %path, ids = self.ids.len(), "read the revocation list");
        Ok(())
    }
}

/// Reads one id per line, ignoring blank lines and comments.
fn parse(text: &str) -> HashSet<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_skip_comments_and_blank_lines() {
        let ids = parse(
            "# revoked 2026-12-01\ncw1:aa\n\n  AKIAMADEUPEXAMPLE234  # leaked in CI\n#cw1:bb\n",
        );
        assert_eq!(ids.len(), 2);
        assert!(ids.contains("cw1:aa"));
        assert!(ids.contains("AKIAMADEUPEXAMPLE234"));
    }

    #[test]
    fn changed_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked.txt");
        fs::write(&path, "cw1:aa\n").unwrap();
        let mut revocations = Revocations::load(&path).unwrap();
        assert!(revocations.contains("cw1:aa"));
        assert!(!revocations.contains("cw1:bb"));

        // A new file (another inode) takes the place of the old one, as editors write it.
        let replacement = dir.path().join("revoked.txt.new");
        fs::write(&replacement, "cw1:aa\ncw1:bb\n").unwrap();
        fs::rename(&replacement, &path).unwrap();
        revocations.last_check = None;

        assert!(revocations.contains("cw1:bb"));
    }

    #[test]
    fn missing_file_keeps_the_last_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked.txt");
        let error = Revocations::load(&path).unwrap_err();
        assert!(error.contains("detection.revocation_file"), "{error}");
        assert!(error.contains("revoked.txt"), "{error}");

        fs::write(&path, "cw1:aa\n").unwrap();
        let mut revocations = Revocations::load(&path).unwrap();
        fs::remove_file(&path).unwrap();
        revocations.last_check = None;
        assert!(revocations.contains("cw1:aa"));
        assert!(revocations.failing);
    }
}
