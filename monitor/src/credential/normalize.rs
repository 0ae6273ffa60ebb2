//! Lexical path normalisation for file-open events.
//!
//! The eBPF probes capture the path argument of `open`, `openat` and `openat2` exactly as
//! the process passed it. This module turns that argument into the absolute, normalised
//! path that events report and that the credential catalogue matches against.
//!
//! Every step is lexical and nothing here reads the filesystem. Symlinks are therefore not
//! resolved, except for two links whose targets are fixed by convention and which are
//! rewritten by name:
//!
//! - Kubernetes volumes for secrets, config maps and projected tokens are written by the
//!   kubelet atomic writer. It stores the files in a timestamped directory such as
//!   `..2026_12_04_19_50_00.123456789` and points a `..data` symlink at it. Both segments are
//!   dropped, so every path to a token file reports as `<volume>/token`.
//! - FHS 3.0 allows `/var/run` to be a symlink to `/run`, and current distributions make it
//!   one, so paths under `/var/run` report under `/run`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Directory that a relative path argument of an open call is resolved against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base<'a> {
    /// No base directory applies, so a relative path cannot be resolved.
    Absolute,
    /// Working directory of the process (`open`, or `openat` with `AT_FDCWD`).
    /// `None` means it could not be read.
    Cwd(Option<&'a Path>),
    /// Directory that the `dirfd` argument of `openat` or `openat2` refers to.
    /// `None` means it could not be read.
    DirFd(Option<&'a Path>),
}

impl<'a> Base<'a> {
    fn directory(self) -> Option<&'a Path> {
        match self {
            Base::Absolute => None,
            Base::Cwd(directory) | Base::DirFd(directory) => directory,
        }
    }
}

/// Normalised path of one open call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// Path with empty, `.` and `..` segments resolved, the Kubernetes atomic-writer segments
    /// dropped and `/var/run` rewritten to `/run`.
    pub path: PathBuf,
    /// Whether `path` is absolute. It is false when a relative path had no base directory
    /// (or a relative one), so `path` is the raw path cleaned but still relative.
    pub resolved: bool,
}

/// Normalises the raw path argument of an open call.
///
/// An absolute `raw` ignores `base`. A relative `raw` is appended to the base directory.
/// When the base directory is missing, as with [`Base::Absolute`] or a `None` directory,
/// the result is `raw` cleaned lexically with `resolved: false`.
pub fn normalize(raw: &[u8], base: Base<'_>) -> Normalized {
    let joined = join_to_base(raw, base.directory());
    let path = clean(&joined);
    let resolved = path.is_absolute();

    Normalized { path, resolved }
}

/// Normalises a path by the same lexical rules as [`normalize`].
///
/// A relative path stays relative. Its leading `..` segments are kept because nothing
/// above its first segment is known. An empty path becomes `.`.
pub fn normalize_lexically(path: &Path) -> PathBuf {
    clean(path.as_os_str().as_bytes())
}

fn join_to_base(raw: &[u8], directory: Option<&Path>) -> Vec<u8> {
    let directory = match directory {
        Some(directory) if !raw.starts_with(b"/") => directory,
        _ => return raw.to_vec(),
    };

    let mut joined = directory.as_os_str().as_bytes().to_vec();
    joined.push(b'/');
    joined.extend_from_slice(raw);
    joined
}

fn clean(path: &[u8]) -> PathBuf {
    let absolute = path.starts_with(b"/");

    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in path.split(|&byte| byte == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => pop_parent(&mut segments, absolute),
            _ => segments.push(segment),
        }
        // The kernel follows the `/var/run` link as soon as it reaches it, so a later `..`
        // climbs out of `/run`, not out of `/var/run`.
        if absolute {
            rewrite_var_run(&mut segments);
        }
    }

    // The atomic-writer segments are dropped only after `..` is applied. `..data` links to
    // a sibling directory, so `<volume>/..data/../x` really is `<volume>/x`.
    segments.retain(|segment| !is_atomic_writer_segment(segment));

    assemble(absolute, &segments)
}

fn pop_parent(segments: &mut Vec<&[u8]>, absolute: bool) {
    match segments.last() {
        Some(&last) if last != b".." => {
            segments.pop();
        }
        // `/..` is `/` in every Linux path lookup.
        _ if absolute => {}
        // A relative path without a base keeps its leading `..`, because what it climbs
        // out of is unknown.
        _ => segments.push(b".."),
    }
}

fn is_atomic_writer_segment(segment: &[u8]) -> bool {
    segment == b"..data" || is_atomic_writer_timestamp(segment)
}

/// Matches the directory name that the kubelet atomic writer creates with Go's
/// `os.MkdirTemp(dir, "..2006_01_02_15_04_05.")`: `..`, a UTC timestamp and the random
/// number that `MkdirTemp` appends. Go 1.16 and older append 9 zero-padded digits, and
/// Go 1.17 and newer append a decimal `uint32`, which is 1 to 10 digits.
fn is_atomic_writer_timestamp(segment: &[u8]) -> bool {
    const LAYOUT: &[u8] = b"dddd_dd_dd_dd_dd_dd.";
    const MAX_RANDOM_DIGITS: usize = 10;

    let Some(name) = segment.strip_prefix(b"..") else {
        return false;
    };
    if name.len() <= LAYOUT.len() {
        return false;
    }

    let (timestamp, random) = name.split_at(LAYOUT.len());
    let timestamp_matches = timestamp.iter().zip(LAYOUT).all(|(&byte, &expected)| {
        if expected == b'd' {
            byte.is_ascii_digit()
        } else {
            byte == expected
        }
    });

    timestamp_matches && random.len() <= MAX_RANDOM_DIGITS && random.iter().all(u8::is_ascii_digit)
}

/// Rewrites `/var/run` and paths below it to `/run`, the target of the compatibility symlink
/// that FHS 3.0 allows.
fn rewrite_var_run(segments: &mut Vec<&[u8]>) {
    if segments.len() == 2 && segments[0] == b"var" && segments[1] == b"run" {
        segments.remove(0);
    }
}

fn assemble(absolute: bool, segments: &[&[u8]]) -> PathBuf {
    let mut bytes: Vec<u8> = Vec::new();
    if absolute {
        bytes.push(b'/');
    }

    for (index, segment) in segments.iter().enumerate() {
        if index > 0 {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(segment);
    }

    if bytes.is_empty() {
        bytes.push(b'.');
    }
    PathBuf::from(OsStr::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "/run/secrets/kubernetes.io/serviceaccount/token";

    fn normalized_path(raw: &str, base: Base<'_>) -> PathBuf {
        normalize(raw.as_bytes(), base).path
    }

    fn assert_absolute_cases(cases: &[(&str, &str)]) {
        for &(raw, expected) in cases {
            assert_eq!(
                normalized_path(raw, Base::Absolute),
                Path::new(expected),
                "raw path {raw:?}"
            );
        }
    }

    #[test]
    fn absolute_path_ignores_base() {
        let cwd = Path::new("/home/alice");
        let result = normalize(b"/etc/shadow", Base::Cwd(Some(cwd)));

        assert_eq!(result.path, Path::new("/etc/shadow"));
        assert!(result.resolved);
    }

    #[test]
    fn relative_path_joins_cwd() {
        let cwd = Path::new("/home/alice");
        let result = normalize(b".aws/credentials", Base::Cwd(Some(cwd)));

        assert_eq!(result.path, Path::new("/home/alice/.aws/credentials"));
        assert!(result.resolved);
    }

    #[test]
    fn relative_path_joins_dirfd() {
        let directory = Path::new("/var/run/secrets/kubernetes.io/serviceaccount/");
        let result = normalize(b"token", Base::DirFd(Some(directory)));

        assert_eq!(result.path, Path::new(TOKEN));
        assert!(result.resolved);
    }

    #[test]
    fn missing_base_is_unresolved() {
        let cases = [
            Base::Absolute,
            Base::Cwd(None),
            Base::DirFd(None),
            Base::Cwd(Some(Path::new("relative/base"))),
        ];

        for base in cases {
            let result = normalize(b"./.ssh//id_ed25519", base);
            assert!(!result.resolved, "base {base:?}");
        }
        let result = normalize(b"./.ssh//id_ed25519/", Base::Cwd(None));
        assert_eq!(result.path, Path::new(".ssh/id_ed25519"));
    }

    #[test]
    fn unresolved_path_keeps_leading_parents() {
        let result = normalize(b"../../etc/./shadow", Base::DirFd(None));

        assert_eq!(result.path, Path::new("../../etc/shadow"));
    }

    #[test]
    fn empty_relative_path_is_dot() {
        assert_eq!(normalize_lexically(Path::new("")), Path::new("."));
        assert_eq!(normalize_lexically(Path::new("a/..")), Path::new("."));
    }

    #[test]
    fn parent_segments_pop() {
        assert_absolute_cases(&[
            ("/home/alice/../bob/.ssh/id_rsa", "/home/bob/.ssh/id_rsa"),
            ("/a/b/c/../../d", "/a/d"),
            ("/a/b/..", "/a"),
        ]);
        let cwd = Path::new("/home/alice/project");
        let result = normalize(b"../.aws/config", Base::Cwd(Some(cwd)));
        assert_eq!(result.path, Path::new("/home/alice/.aws/config"));
    }

    #[test]
    fn parent_above_root_stays_at_root() {
        assert_absolute_cases(&[
            ("/..", "/"),
            ("/../../etc/shadow", "/etc/shadow"),
            ("/etc/../../../root/.netrc", "/root/.netrc"),
        ]);
        let cwd = Path::new("/home");
        let result = normalize(b"../../../../etc/shadow", Base::Cwd(Some(cwd)));
        assert_eq!(result.path, Path::new("/etc/shadow"));
    }

    #[test]
    fn empty_and_dot_segments_removed() {
        assert_absolute_cases(&[
            ("//etc///shadow", "/etc/shadow"),
            ("/./etc/./shadow/.", "/etc/shadow"),
            ("/", "/"),
            ("//", "/"),
            ("/.", "/"),
        ]);
    }

    #[test]
    fn trailing_slash_dropped() {
        assert_absolute_cases(&[
            ("/etc/ssl/private/", "/etc/ssl/private"),
            ("/etc//", "/etc"),
        ]);
    }

    #[test]
    fn data_symlink_dropped() {
        assert_absolute_cases(&[
            (
                "/var/run/secrets/kubernetes.io/serviceaccount/..data/token",
                TOKEN,
            ),
            (
                "/run/secrets/kubernetes.io/serviceaccount/..data/token",
                TOKEN,
            ),
            ("/etc/config/..data", "/etc/config"),
        ]);
    }

    #[test]
    fn timestamp_directory_dropped() {
        assert_absolute_cases(&[
            (
                "/var/run/secrets/kubernetes.io/serviceaccount/..2026_12_04_19_50_00.123456789/token",
                TOKEN,
            ),
            (
                "/etc/config/..2026_12_04_19_50_00.1/app.yaml",
                "/etc/config/app.yaml",
            ),
            (
                "/etc/config/..2026_12_04_19_50_00.4294967295/app.yaml",
                "/etc/config/app.yaml",
            ),
        ]);
    }

    #[test]
    fn timestamp_lookalikes_kept() {
        assert_absolute_cases(&[
            ("/v/..2026_12_04_19_50_00./f", "/v/..2026_12_04_19_50_00./f"),
            (
                "/v/..2026_12_04_19_50_00.12345678901/f",
                "/v/..2026_12_04_19_50_00.12345678901/f",
            ),
            (
                "/v/..2026_12_04_19_50_00.12a/f",
                "/v/..2026_12_04_19_50_00.12a/f",
            ),
            (
                "/v/..2026-12-04_19_50_00.1/f",
                "/v/..2026-12-04_19_50_00.1/f",
            ),
            ("/v/..2026_12_04_19_50.1/f", "/v/..2026_12_04_19_50.1/f"),
            ("/v/.2026_12_04_19_50_00.1/f", "/v/.2026_12_04_19_50_00.1/f"),
        ]);
    }

    #[test]
    fn data_segment_not_parent() {
        assert_absolute_cases(&[
            ("/etc/config/..data/app.yaml", "/etc/config/app.yaml"),
            (
                "/etc/config/..2026_12_04_19_50_00.123/app.yaml",
                "/etc/config/app.yaml",
            ),
        ]);
    }

    #[test]
    fn parent_after_data_leaves_volume() {
        assert_absolute_cases(&[
            ("/etc/config/..data/../app.yaml", "/etc/config/app.yaml"),
            ("/etc/config/..data/sub/../app.yaml", "/etc/config/app.yaml"),
        ]);
    }

    #[test]
    fn other_dot_dot_names_kept() {
        assert_absolute_cases(&[
            ("/srv/.../secret", "/srv/.../secret"),
            ("/srv/..hidden/secret", "/srv/..hidden/secret"),
            (
                "/etc/config/..data_tmp/app.yaml",
                "/etc/config/..data_tmp/app.yaml",
            ),
            ("/srv/..datax/key", "/srv/..datax/key"),
        ]);
    }

    #[test]
    fn var_run_rewritten() {
        assert_absolute_cases(&[
            ("/var/run", "/run"),
            ("/var/run/", "/run"),
            ("/var/run/../tmp/x", "/tmp/x"),
            ("/var/run/foo/../../etc/x", "/etc/x"),
            ("/var/lib/../run/x", "/run/x"),
            ("/var/run/docker.sock", "/run/docker.sock"),
            ("/var/lib/../run/x", "/run/x"),
            ("//var//./run/secrets", "/run/secrets"),
        ]);
    }

    #[test]
    fn var_runner_kept() {
        assert_absolute_cases(&[
            ("/var/runner/token", "/var/runner/token"),
            ("/var/running", "/var/running"),
            ("/srv/var/run/x", "/srv/var/run/x"),
            ("/var", "/var"),
        ]);
        let result = normalize(b"var/run/x", Base::Cwd(None));
        assert_eq!(result.path, Path::new("var/run/x"));
    }

    #[test]
    fn non_utf8_preserved() {
        let raw = b"/home/\xffuser/./.aws/\xc3(creds";
        let result = normalize(raw, Base::Absolute);

        assert_eq!(
            result.path.as_os_str().as_bytes(),
            b"/home/\xffuser/.aws/\xc3(creds"
        );
    }

    #[test]
    fn lexically_matches_normalize() {
        let raw = "/var/run/secrets/../secrets/kubernetes.io/serviceaccount/..data/token";
        let expected = normalized_path(raw, Base::Absolute);

        assert_eq!(normalize_lexically(Path::new(raw)), expected);
        assert_eq!(expected, Path::new(TOKEN));
    }
}
