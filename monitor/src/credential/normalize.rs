//! TEMPORARY until the real module lands.
use std::path::{Path, PathBuf};
pub enum Base<'a> { Absolute, Cwd(Option<&'a Path>), DirFd(Option<&'a Path>) }
pub struct Normalized { pub path: PathBuf, pub resolved: bool }
pub fn normalize(raw: &[u8], base: Base<'_>) -> Normalized {
    use std::os::unix::ffi::OsStrExt;
    let raw = Path::new(std::ffi::OsStr::from_bytes(raw));
    let (joined, resolved) = match base {
        Base::Absolute => (raw.to_path_buf(), true),
        Base::Cwd(Some(b)) | Base::DirFd(Some(b)) => (b.join(raw), true),
        _ => (raw.to_path_buf(), false),
    };
    Normalized { path: normalize_lexically(&joined), resolved }
}
pub fn normalize_lexically(path: &Path) -> PathBuf { path.to_path_buf() }
