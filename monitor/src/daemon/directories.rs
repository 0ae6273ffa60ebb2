//! Directories of relative opens, between their directory record and their open record.

use std::{collections::HashMap, ffi::OsStr, os::unix::ffi::OsStrExt as _, path::PathBuf};

use crate::sensor::decode::DirectoryEvent;

/// Maximum number of entries. A directory record whose open record was lost stays until the
/// map is full and cleared, which only sends later opens of those threads to `/proc`.
const MAX_PENDING: usize = 4096;

/// Directories waiting for the open record of their thread.
#[derive(Debug, Default)]
pub struct PendingDirectories {
    by_thread: HashMap<u32, Option<PathBuf>>,
}

impl PendingDirectories {
    /// Stores the directory of the next relative open of `directory.tid`.
    pub fn remember(&mut self, directory: DirectoryEvent) {
        if self.by_thread.len() >= MAX_PENDING {
            tracing::debug!(
                entries = self.by_thread.len(),
                "clearing directories whose opens never arrived"
            );
            self.by_thread.clear();
        }
        let path = directory
            .path
            .map(|bytes| PathBuf::from(OsStr::from_bytes(&bytes)));
        self.by_thread.insert(directory.tid, path);
    }

    /// Takes the directory stored for a thread. `None` when there is none, or when the kernel
    /// could not walk it.
    pub fn take(&mut self, tid: u32) -> Option<PathBuf> {
        self.by_thread.remove(&tid).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(tid: u32, path: Option<&[u8]>) -> DirectoryEvent {
        DirectoryEvent {
            pid: 1,
            tid,
            from_fd: false,
            path: path.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn directory_is_taken_once() {
        let mut pending = PendingDirectories::default();
        pending.remember(event(5, Some(b"/srv")));
        assert_eq!(pending.take(5), Some(PathBuf::from("/srv")));
        assert_eq!(pending.take(5), None);
    }

    #[test]
    fn failed_walk_gives_none() {
        let mut pending = PendingDirectories::default();
        pending.remember(event(6, None));
        assert_eq!(pending.take(6), None);
    }

    #[test]
    fn full_map_is_cleared() {
        let mut pending = PendingDirectories::default();
        for tid in 0..MAX_PENDING as u32 + 1 {
            pending.remember(event(tid, Some(b"/x")));
        }
        assert!(pending.by_thread.len() <= MAX_PENDING);
        assert_eq!(pending.take(MAX_PENDING as u32), Some(PathBuf::from("/x")));
    }
}
