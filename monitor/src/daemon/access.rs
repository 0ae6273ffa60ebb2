//! Turning a matched open into a `credwatch.credential.access` event: resolve the path,
//! normalise it, match it against the catalogue and attach the process attributes.

use std::{os::unix::ffi::OsStrExt as _, path::Path};

use monitor_common::{
    catalogue::MATCH_DEFINITE,
    open::{AT_FDCWD, PATH_RELATIVE, PATH_TRUNCATED},
};

use crate::{
    clock::BootClock,
    credential::{
        catalogue::{Catalogue, PatternKind},
        normalize::{Base, normalize},
    },
    errno,
    export::{Event, Severity, event::name},
    process::{ProcessInfo, hash::Executables, procfs, users::UserNames},
    sensor::decode::OpenEvent,
    workload::{
        cgroup::CgroupResolver,
        container::{self, CgroupWorkload},
        kubelet::{Kubelet, KubeletPod},
        pods::{PodDirectory, PodMeta, spiffe_id},
    },
};

/// Reason an open record produced no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// After resolution and normalisation the path matches no catalogue entry.
    NotACredential,
    /// A candidate whose relative path could not be resolved, so it cannot be matched.
    Unresolved,
}

/// Everything the access builder reads besides the record.
pub struct Context<'a> {
    /// The catalogue.
    pub catalogue: &'a Catalogue,
    /// Boot-time conversion.
    pub clock: &'a BootClock,
    /// User names.
    pub users: &'a mut UserNames,
    /// cgroup paths.
    pub cgroups: &'a mut CgroupResolver,
    /// Pod metadata.
    pub pods: &'a mut PodDirectory,
    /// Executable hashes.
    pub executables: &'a mut Executables,
    /// The kubelet's pod list, when configured.
    pub kubelet: Option<&'a Kubelet>,
    /// SPIFFE trust domain of pod workload ids.
    pub trust_domain: &'a str,
}

/// The path an open refers to and how it matched.
struct Resolved<'a> {
    path: std::path::PathBuf,
    resolved: bool,
    entry_id: &'a str,
    credential_type: &'a str,
    kind: Option<PatternKind>,
}

/// An access event and what the daemon needs to identify the file.
pub struct Access {
    /// The event, without the identities of the file.
    pub event: Event,
    /// The file as the process named it, made absolute.
    pub path: std::path::PathBuf,
    /// Whether `path` could be made absolute and normalised.
    pub resolved: bool,
    /// The catalogue type.
    pub credential_type: String,
}

/// Builds the access event for a matched open, or returns why there is none. `directory` is the
/// directory the kernel walked for a relative open, if any.
pub fn access_event(
    open: &OpenEvent,
    directory: Option<&Path>,
    process: &ProcessInfo,
    context: &mut Context<'_>,
) -> Result<Access, Skipped> {
    let resolved = resolve(open, directory, context.catalogue)?;

    let time = context.clock.to_system_time(open.boot_ns);
    let mut event = Event::new(name::CREDENTIAL_ACCESS, Severity::Info, time);
    event
        .set("file.path", resolved.path.to_string_lossy().into_owned())
        .set("credwatch.credential.type", resolved.credential_type)
        .set("credwatch.catalogue.entry", resolved.entry_id)
        .set_some(
            "credwatch.catalogue.match",
            resolved.kind.map(PatternKind::as_str),
        )
        .set("credwatch.access.result", access_result(open.result))
        .set("credwatch.access.mode", access_mode(open.open_flags))
        .set("credwatch.access.syscall", open.syscall.as_str());
    if resolved.path.as_os_str().as_bytes() != open.path.as_slice() {
        event.set(
            "credwatch.file.requested_path",
            String::from_utf8_lossy(&open.path).into_owned(),
        );
    }
    if !resolved.resolved {
        event.set("credwatch.file.path_resolved", false);
    }
    if open.path_flags & PATH_TRUNCATED != 0 {
        event.set("credwatch.file.path_truncated", true);
    }

    event.set("thread.id", open.tid);
    set_process_attributes(&mut event, process, open.uid, open.cgroup_id, context);
    Ok(Access {
        event,
        path: resolved.path,
        resolved: resolved.resolved,
        credential_type: resolved.credential_type.to_owned(),
    })
}

/// Sets the `process.*` attributes shared by every process-attributed event.
pub fn set_process_attributes(
    event: &mut Event,
    process: &ProcessInfo,
    uid: u32,
    cgroup_id: u64,
    context: &mut Context<'_>,
) {
    event
        .set("process.pid", process.pid)
        .set_some("process.parent_pid", process.ppid)
        .set_some(
            "process.executable.path",
            process
                .executable
                .as_deref()
                .map(|path| path.to_string_lossy().into_owned()),
        )
        .set_some("process.executable.name", process.executable_name())
        .set_some(
            "credwatch.process.executable.sha256",
            context.executables.hash_of(process.pid),
        )
        .set_some("process.command_line", process.command_line.clone())
        .set_some(
            "credwatch.process.command_line.truncated",
            process.command_line_truncated.then_some(true),
        )
        .set("process.user.id", uid)
        .set_some(
            "process.user.name",
            context.users.name(uid).map(str::to_owned),
        )
        .set_some(
            "process.creation.time",
            process
                .start_boot_ns
                .map(|ns| crate::clock::rfc3339(context.clock.to_system_time(ns))),
        )
        .set("credwatch.process.cgroup.id", cgroup_id)
        .set_some("credwatch.process.tty", process.tty)
        .set_some("credwatch.process.interactive", process.interactive);
    if !process.ancestors.is_empty() {
        event.set("credwatch.process.ancestors", process.ancestors.clone());
    }
    let workload = match context.cgroups.path_of_process(cgroup_id, process.pid) {
        Some(path) => {
            event.set("process.linux.cgroup", format!("0::{path}"));
            container::parse(path)
        }
        None => CgroupWorkload::default(),
    };
    set_workload_attributes(event, &workload, process, context);
}

/// Sets what only the kubelet reports: the owner workload, labels, and the container's name and
/// image.
fn set_kubelet_attributes(event: &mut Event, pod: &KubeletPod, container_id: Option<&str>) {
    if let Some((kind, name)) = &pod.owner {
        let key = match kind.as_str() {
            "Deployment" => Some("k8s.deployment.name"),
            "ReplicaSet" => Some("k8s.replicaset.name"),
            "DaemonSet" => Some("k8s.daemonset.name"),
            "StatefulSet" => Some("k8s.statefulset.name"),
            "Job" => Some("k8s.job.name"),
            "CronJob" => Some("k8s.cronjob.name"),
            _ => None,
        };
        if let Some(key) = key {
            event.set(key, name.clone());
        }
        event.set("credwatch.k8s.owner.kind", kind.clone());
    }
    if !pod.labels.is_empty() {
        event.set("credwatch.k8s.pod.labels", pod.labels.clone());
    }
    if let Some(container) = container_id.and_then(|id| pod.containers.get(id)) {
        event
            .set("k8s.container.name", container.name.clone())
            .set_some("container.image.name", container.image.clone())
            .set_some(
                "credwatch.container.image.digest",
                container.image_digest.clone(),
            );
    }
}

/// Sets the container, pod and systemd attributes that the cgroup path gives, the pod's
/// metadata, and the workload id.
fn set_workload_attributes(
    event: &mut Event,
    workload: &CgroupWorkload,
    process: &ProcessInfo,
    context: &mut Context<'_>,
) {
    event
        .set_some("container.id", workload.container_id.clone())
        .set_some("credwatch.container.runtime", workload.runtime)
        .set_some("k8s.pod.uid", workload.pod_uid.clone())
        .set_some("credwatch.systemd.unit", workload.systemd_unit.clone())
        .set_some("credwatch.systemd.session", workload.session.clone());
    let reported = workload
        .pod_uid
        .as_deref()
        .zip(context.kubelet)
        .and_then(|(uid, kubelet)| kubelet.pod(uid));
    if let Some(reported) = &reported {
        set_kubelet_attributes(event, reported, workload.container_id.as_deref());
    }
    let pod = match reported {
        Some(reported) => Some(PodMeta {
            namespace: reported.namespace,
            name: reported.name,
            service_account: reported.service_account,
        }),
        None => workload
            .pod_uid
            .as_deref()
            .and_then(|uid| context.pods.lookup(uid))
            .cloned(),
    };
    let pod = pod.as_ref();
    if let Some(pod) = pod {
        event
            .set("k8s.namespace.name", pod.namespace.clone())
            .set("k8s.pod.name", pod.name.clone())
            .set_some(
                "credwatch.k8s.service_account.name",
                pod.service_account.clone(),
            );
    }
    let workload_id = match (pod, workload) {
        (Some(pod), _) => pod
            .service_account
            .as_deref()
            .map(|account| spiffe_id(context.trust_domain, &pod.namespace, account)),
        (
            None,
            CgroupWorkload {
                pod_uid: Some(_), ..
            },
        ) => None,
        (
            None,
            CgroupWorkload {
                container_id: Some(id),
                runtime,
                delegated_uid,
                ..
            },
        ) => Some(format!(
            "container://{}{}/{id}",
            user_part(*delegated_uid),
            runtime.unwrap_or("unknown")
        )),
        (
            None,
            CgroupWorkload {
                systemd_unit: Some(unit),
                delegated_uid,
                ..
            },
        ) => Some(format!("systemd://{}{unit}", user_part(*delegated_uid))),
        (None, _) => process
            .executable
            .as_deref()
            .map(|path| format!("exe://{}", path.display())),
    };
    event.set_some("credwatch.workload.id", workload_id);
}

/// Returns the user part of a workload id in a subtree delegated to a user (`1000@`), so that
/// a user's `nginx.service` or container never has the id of the system's.
fn user_part(delegated_uid: Option<u32>) -> String {
    delegated_uid
        .map(|uid| format!("{uid}@"))
        .unwrap_or_default()
}

fn resolve<'a>(
    open: &OpenEvent,
    kernel_directory: Option<&Path>,
    catalogue: &'a Catalogue,
) -> Result<Resolved<'a>, Skipped> {
    // The kernel's walk is taken at the time of the open. `/proc` is only the fallback when
    // the walk failed, and it is read now, so a process that changed directory or exited in
    // between resolves against the new directory or not at all.
    let from_proc;
    let directory = match kernel_directory {
        Some(directory) => Some(directory),
        None if open.path_flags & PATH_RELATIVE == 0 => None,
        None if open.dfd == AT_FDCWD => {
            from_proc = procfs::read_cwd(open.pid).ok();
            from_proc.as_deref()
        }
        None => {
            from_proc = procfs::read_fd_path(open.pid, open.dfd).ok();
            from_proc.as_deref()
        }
    };
    let base = if open.path_flags & PATH_RELATIVE == 0 {
        Base::Absolute
    } else if open.dfd == AT_FDCWD {
        Base::Cwd(directory)
    } else {
        Base::DirFd(directory)
    };
    let normalized = normalize(&open.path, base);

    if let Some(found) = catalogue.match_path(&normalized.path) {
        return Ok(Resolved {
            path: normalized.path,
            resolved: normalized.resolved,
            entry_id: &found.entry.id,
            credential_type: &found.entry.credential_type,
            kind: Some(found.kind),
        });
    }
    // A relative name the kernel matched as a basename or suffix by itself stays a credential
    // even when the directory could not be read, e.g. `id_rsa` opened by a process that exited.
    let definite = open.match_flags & MATCH_DEFINITE != 0;
    if !normalized.resolved
        && definite
        && let Some(entry) = catalogue.entry(open.entry_index)
    {
        return Ok(Resolved {
            path: normalized.path,
            resolved: false,
            entry_id: &entry.id,
            credential_type: &entry.credential_type,
            kind: None,
        });
    }
    if normalized.resolved {
        Err(Skipped::NotACredential)
    } else {
        Err(Skipped::Unresolved)
    }
}

/// `ok`, or the errno name of a failed open.
pub fn access_result(result: i64) -> String {
    if result >= 0 {
        return "ok".to_owned();
    }
    let errno = i32::try_from(-result).unwrap_or(i32::MAX);
    errno::name(errno)
}

/// `read`, `write` or `read_write`, from the open flags.
pub fn access_mode(flags: u32) -> &'static str {
    match flags as i32 & libc::O_ACCMODE {
        libc::O_WRONLY => "write",
        libc::O_RDWR => "read_write",
        _ => "read",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_named() {
        assert_eq!(access_result(3), "ok");
        assert_eq!(access_result(0), "ok");
        assert_eq!(access_result(-2), "ENOENT");
        assert_eq!(access_result(-13), "EACCES");
        assert_eq!(access_result(i64::MIN), format!("E{}", i32::MAX));
    }

    #[test]
    fn modes_are_named() {
        assert_eq!(access_mode(libc::O_RDONLY as u32), "read");
        assert_eq!(
            access_mode((libc::O_WRONLY | libc::O_CREAT) as u32),
            "write"
        );
        assert_eq!(
            access_mode((libc::O_RDWR | libc::O_CLOEXEC) as u32),
            "read_write"
        );
    }
}
