//! Containers, pods and systemd units, read from a cgroup v2 path.
//!
//! Container runtimes and the kubelet name cgroups after what runs in them. With the systemd
//! cgroup driver a container is a scope such as `cri-containerd-<id>.scope`,
//! `crio-<id>.scope`, `docker-<id>.scope` or `libpod-<id>.scope`, inside a pod slice such as
//! `kubepods-burstable-pod<uid>.slice`, where the pod uid has `_` in place of `-`. With the
//! cgroupfs driver the container is a directory named by its id, inside `pod<uid>`. A kind node
//! or another nested runtime adds a second container level, so the innermost container and
//! the pod above it are taken. A path without a container names a systemd unit or a login
//! session instead.
//!
//! systemd delegates the subtree below `user@<uid>.service` to that user, who may create
//! cgroups there with any name. A pod is therefore taken only below a `kubepods` cgroup and
//! outside such a subtree, and containers and units inside one carry the user's uid.

/// Workload facts that a cgroup path gives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupWorkload {
    /// Container runtime: `containerd`, `cri-o`, `docker`, `podman`, or `unknown` for a bare
    /// container id.
    pub runtime: Option<&'static str>,
    /// Full container id.
    pub container_id: Option<String>,
    /// Kubernetes pod uid, with dashes.
    pub pod_uid: Option<String>,
    /// systemd unit of a process outside containers, such as `nginx.service`.
    pub systemd_unit: Option<String>,
    /// Login session scope, such as `session-3.scope`.
    pub session: Option<String>,
    /// The user whose systemd manager owns the subtree (`user@<uid>.service`): rootless
    /// containers and user units. Names in such a subtree are the user's choice.
    pub delegated_uid: Option<u32>,
}

/// Scope prefixes of container runtimes with the systemd driver, and the runtime each names.
const SCOPE_PREFIXES: [(&str, &str); 4] = [
    ("cri-containerd-", "containerd"),
    ("crio-", "cri-o"),
    ("docker-", "docker"),
    ("libpod-", "podman"),
];

/// Reads a cgroup v2 path such as `/kubepods.slice/.../cri-containerd-<id>.scope`.
pub fn parse(path: &str) -> CgroupWorkload {
    let segments: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    let mut workload = CgroupWorkload {
        delegated_uid: segments
            .iter()
            .find_map(|segment| user_manager_uid(segment)),
        ..CgroupWorkload::default()
    };

    let container = segments
        .iter()
        .enumerate()
        .rev()
        .find_map(|(index, segment)| {
            container_of(&segments[..index], segment).map(|found| (index, found))
        });
    let Some((index, (runtime, id))) = container else {
        workload.systemd_unit = segments
            .iter()
            .rev()
            .find(|segment| segment.ends_with(".service"))
            .map(|unit| (*unit).to_owned());
        workload.session = segments
            .iter()
            .rev()
            .find(|segment| segment.starts_with("session-") && segment.ends_with(".scope"))
            .map(|scope| (*scope).to_owned());
        return workload;
    };
    workload.runtime = Some(runtime);
    workload.container_id = Some(id);
    if workload.delegated_uid.is_none() {
        workload.pod_uid = (0..index).rev().find_map(|position| {
            let below_kubepods = segments[..position]
                .iter()
                .any(|ancestor| ancestor.contains("kubepods"));
            below_kubepods
                .then(|| pod_uid(segments[position]))
                .flatten()
        });
    }
    workload
}

/// Returns the uid of a user manager's unit, `user@<uid>.service`.
fn user_manager_uid(segment: &str) -> Option<u32> {
    segment
        .strip_prefix("user@")?
        .strip_suffix(".service")?
        .parse()
        .ok()
}

/// Returns the runtime and id of a container segment. `ancestors` are the segments above it,
/// which name the runtime of a bare id.
fn container_of(ancestors: &[&str], segment: &str) -> Option<(&'static str, String)> {
    if let Some(name) = segment.strip_suffix(".scope") {
        for (prefix, runtime) in SCOPE_PREFIXES {
            if let Some(id) = name.strip_prefix(prefix)
                && is_container_id(id)
            {
                return Some((runtime, id.to_owned()));
            }
        }
        return None;
    }
    if !is_container_id(segment) {
        return None;
    }
    let under = |word: &str| ancestors.iter().any(|ancestor| ancestor.contains(word));
    let runtime = if under("docker") {
        "docker"
    } else if under("libpod") {
        "podman"
    } else if under("crio") {
        "cri-o"
    } else {
        "unknown"
    };
    Some((runtime, segment.to_owned()))
}

/// Tells whether `text` is a container id: 64 lowercase hex digits, as every runtime here
/// writes it.
fn is_container_id(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// Returns the pod uid in a pod segment: `kubepods-<qos>-pod<uid>.slice` or
/// `kubepods-pod<uid>.slice` (systemd driver, `_` for `-`) or `pod<uid>` (cgroupfs driver).
fn pod_uid(segment: &str) -> Option<String> {
    let name = segment.strip_suffix(".slice").unwrap_or(segment);
    let start = name.rfind("pod")?;
    let before = &name[..start];
    if !(before.is_empty() || before.ends_with('-')) {
        return None;
    }
    let uid = name[start + 3..].replace('_', "-");
    is_uid(&uid).then_some(uid)
}

/// Tells whether `text` is a pod uid: a UUID in its 8-4-4-4-12 form.
fn is_uid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(group, len)| {
            group.len() == len && group.bytes().all(|byte| byte.is_ascii_hexdigit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f3e2d1c0b0a09080706050403020100ffeeddccbbaa99887766554433221100";
    const OTHER: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "0d1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8";

    fn container(runtime: &'static str, pod: Option<&str>) -> CgroupWorkload {
        CgroupWorkload {
            runtime: Some(runtime),
            container_id: Some(ID.to_owned()),
            pod_uid: pod.map(str::to_owned),
            ..CgroupWorkload::default()
        }
    }

    #[test]
    fn kubernetes_systemd_driver() {
        let underscored = UID.replace('-', "_");
        let cases = [
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{underscored}.slice/cri-containerd-{ID}.scope"
                ),
                "containerd",
            ),
            (
                format!("/kubepods.slice/kubepods-pod{underscored}.slice/crio-{ID}.scope"),
                "cri-o",
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{underscored}.slice/docker-{ID}.scope"
                ),
                "docker",
            ),
        ];
        for (path, runtime) in cases {
            assert_eq!(parse(&path), container(runtime, Some(UID)), "{path}");
        }
    }

    #[test]
    fn kubernetes_cgroupfs_driver() {
        assert_eq!(
            parse(&format!("/kubepods/burstable/pod{UID}/{ID}")),
            container("unknown", Some(UID))
        );
        assert_eq!(
            parse(&format!("/kubepods/pod{UID}/{ID}")),
            container("unknown", Some(UID))
        );
    }

    #[test]
    fn kind_node_takes_the_innermost_container() {
        let underscored = UID.replace('-', "_");
        let path = format!(
            "/system.slice/docker-{OTHER}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{underscored}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parse(&path), container("containerd", Some(UID)));
    }

    #[test]
    fn docker_and_podman() {
        assert_eq!(
            parse(&format!("/system.slice/docker-{ID}.scope")),
            container("docker", None)
        );
        assert_eq!(parse(&format!("/docker/{ID}")), container("docker", None));
        assert_eq!(
            parse(&format!("/machine.slice/libpod-{ID}.scope")),
            container("podman", None)
        );
        assert_eq!(
            parse(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
            )),
            CgroupWorkload {
                delegated_uid: Some(1000),
                ..container("podman", None)
            }
        );
        assert_eq!(
            parse(&format!("/libpod_parent/{ID}")),
            container("podman", None)
        );
    }

    #[test]
    fn monitors_are_not_containers() {
        let conmon = parse(&format!("/machine.slice/libpod-conmon-{ID}.scope"));
        assert_eq!(conmon.container_id, None);
        let crio_conmon = parse(&format!("/kubepods.slice/crio-conmon-{ID}.scope"));
        assert_eq!(crio_conmon.container_id, None);
    }

    #[test]
    fn systemd_units_and_sessions() {
        let service = parse("/system.slice/nginx.service");
        assert_eq!(service.systemd_unit.as_deref(), Some("nginx.service"));
        assert_eq!(service.container_id, None);
        let session = parse("/user.slice/user-1000.slice/session-3.scope");
        assert_eq!(session.session.as_deref(), Some("session-3.scope"));
        assert_eq!(session.systemd_unit, None);
        let user_unit =
            parse("/user.slice/user-1000.slice/user@1000.service/app.slice/sync.service");
        assert_eq!(user_unit.systemd_unit.as_deref(), Some("sync.service"));
        assert_eq!(user_unit.delegated_uid, Some(1000));
        assert_eq!(service.delegated_uid, None);
    }

    #[test]
    fn pods_need_kubepods_outside_user_subtrees() {
        let underscored = UID.replace('-', "_");
        let faked = [
            format!(
                "/user.slice/user-1000.slice/user@1000.service/evil-pod{underscored}.slice/cri-containerd-{ID}.scope"
            ),
            format!(
                "/user.slice/user-1000.slice/user@1000.service/kubepods.slice/kubepods-pod{underscored}.slice/cri-containerd-{ID}.scope"
            ),
            format!("/system.slice/evil-pod{underscored}.slice/cri-containerd-{ID}.scope"),
        ];
        for path in &faked {
            let workload = parse(path);
            assert_eq!(workload.pod_uid, None, "{path}");
            assert_eq!(workload.container_id.as_deref(), Some(ID), "{path}");
        }
        assert_eq!(parse(&faked[0]).delegated_uid, Some(1000));
        assert_eq!(parse(&faked[2]).delegated_uid, None);
    }

    #[test]
    fn odd_paths_give_nothing() {
        for path in [
            "",
            "/",
            "//",
            "/pod",
            "/podnotauid/x",
            "/docker-short.scope",
            "/a/b/c",
        ] {
            assert_eq!(parse(path), CgroupWorkload::default(), "{path}");
        }
        // A pod segment without a container is no container.
        assert_eq!(parse(&format!("/kubepods/pod{UID}")).pod_uid, None);
    }
}
