//! The owner of a credential file, for `orphaned_use`: the pod a token is bound to, or the
//! systemd unit whose credential directory contains the file.

use std::path::Path;

use super::identity::FileIdentity;
use crate::workload::pods::PodDirectory;

/// Directory where systemd places the credentials of each running unit (`LoadCredential=`).
const SYSTEMD_CREDENTIALS: &str = "/run/credentials/";

/// Returns the owner of the file in words when it is gone, or None when it exists or cannot be
/// known.
pub fn gone_owner(
    identity: &FileIdentity,
    path: &Path,
    pods: &mut PodDirectory,
    cgroup_root: Option<&Path>,
) -> Option<String> {
    for credential in &identity.credentials {
        let Some((uid, name)) = &credential.bound_pod else {
            continue;
        };
        if pods.is_gone(uid) == Some(true) {
            return Some(match name {
                Some(name) => format!("pod {name} ({uid})"),
                None => format!("pod {uid}"),
            });
        }
    }
    let unit = credential_unit(path)?;
    (!unit_has_cgroup(cgroup_root?, unit)).then(|| format!("systemd unit {unit}"))
}

/// Returns the unit of a file below `/run/credentials/<unit>/`.
fn credential_unit(path: &Path) -> Option<&str> {
    let rest = path.to_str()?.strip_prefix(SYSTEMD_CREDENTIALS)?;
    let (unit, file) = rest.split_once('/')?;
    let is_unit = unit.contains('.') && !unit.starts_with('.') && !file.is_empty();
    is_unit.then_some(unit)
}

/// Returns whether `unit` has a cgroup at the top of the hierarchy or in one of its slices,
/// where systemd places every running service.
fn unit_has_cgroup(root: &Path, unit: &str) -> bool {
    if root.join(unit).is_dir() {
        return true;
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        // An unreadable hierarchy proves nothing, so the unit counts as present.
        return true;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        name.to_str().is_some_and(|name| name.ends_with(".slice"))
            && entry.path().join(unit).is_dir()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_comes_from_credential_path() {
        let unit = credential_unit(Path::new("/run/credentials/cart.service/token"));
        assert_eq!(unit, Some("cart.service"));
        assert_eq!(
            credential_unit(Path::new("/run/credentials/cart.service")),
            None
        );
        assert_eq!(credential_unit(Path::new("/etc/cart/token")), None);
        assert_eq!(
            credential_unit(Path::new("/run/credentials/../x/token")),
            None
        );
    }

    #[test]
    fn unit_cgroup_is_found_in_slices() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("system.slice/cart.service")).unwrap();
        std::fs::create_dir_all(root.path().join("init.scope")).unwrap();

        assert!(unit_has_cgroup(root.path(), "cart.service"));
        assert!(unit_has_cgroup(root.path(), "init.scope"));
        assert!(!unit_has_cgroup(root.path(), "gone.service"));
    }
}
