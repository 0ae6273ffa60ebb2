//! The benchmark floor: programs that return at once, attached by the hidden `credwatch floor`
//! command to the hooks credwatch uses, so that `cargo xtask bench` can tell the cost of the
//! hooks themselves from the cost of credwatch's work in them.
//!
//! Each start function returns the loaded object, which detaches its programs when dropped.

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        ProgramError, UProbe,
        uprobe::{UProbeAttachLocation, UProbeScope},
    },
};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
use thiserror::Error;

use super::{
    FLOOR_PROGRAMS, PROGRAMS, ProbeSpec, SensorError, attach_cgroup, attach_one, preflight,
    program_mut, tracefs::Tracefs,
};
use crate::{
    tls::{discovery, library},
    workload::cgroup::find_cgroup2_mount,
};

/// The floor could not be attached.
#[derive(Debug, Error)]
pub enum FloorError {
    /// Loading failed, or a privilege or kernel feature is missing.
    #[error(transparent)]
    Sensor(#[from] SensorError),
    /// No cgroup2 file system is mounted, so the connect programs have nowhere to attach.
    #[error(
        "no cgroup v2 hierarchy is mounted (no cgroup2 line in /proc/self/mountinfo); mount \
         one to measure the connect hooks"
    )]
    NoCgroup2,
    /// No TLS library was found where credwatch looks for the host's libraries.
    #[error(
        "no TLS library (libssl or libgnutls) found in the host's library directories; install \
         libssl3 to measure the TLS hooks"
    )]
    NoTlsLibrary,
    /// A library could not be read.
    #[error("failed to read the TLS library: {0}")]
    Library(String),
    /// A credwatch TLS program is missing from the embedded credwatch object.
    #[error("the credwatch object has no program {0}; rebuild credwatch")]
    UnknownProgram(String),
    /// A program could not be attached.
    #[error("failed to attach {program} to {attach_point}: {message}")]
    Attach {
        /// The floor program.
        program: &'static str,
        /// The attach point.
        attach_point: String,
        /// The cause, with its own causes.
        message: String,
    },
}

/// Loads the floor programs on the open tracepoints: programs that return at once, or with
/// `read_path` an `openat` program that only reads the path.
pub fn start_floor(read_path: bool) -> Result<Ebpf, SensorError> {
    preflight::check()?;
    let tracefs = Tracefs::ensure_mounted()?;
    let mut ebpf = EbpfLoader::new().load(FLOOR_PROGRAMS)?;
    for program in ["floor_enter", "floor_read_enter", "floor_exit"] {
        let tracepoint = program_mut(&mut ebpf, program)?;
        tracepoint.load().map_err(|source| SensorError::Attach {
            program,
            attach_point: String::new(),
            source,
        })?;
    }
    for syscall in ["open", "openat", "openat2"] {
        // The path-reading program reads the openat argument layout only.
        let enter = if read_path && syscall == "openat" {
            "floor_read_enter"
        } else {
            "floor_enter"
        };
        for (program, prefix) in [(enter, "sys_enter_"), ("floor_exit", "sys_exit_")] {
            let name = format!("{prefix}{syscall}");
            if !tracefs.has_tracepoint("syscalls", &name) {
                continue;
            }
            let tracepoint = program_mut(&mut ebpf, program)?;
            tracepoint
                .attach("syscalls", &name)
                .map_err(|source| SensorError::Attach {
                    program,
                    attach_point: format!("syscalls/{name}"),
                    source,
                })?;
        }
    }
    Ok(ebpf)
}

/// Loads the floor programs on the connect hooks: `connect4` and `connect6` programs that
/// allow every call, on the cgroup v2 root, and empty programs on `syscalls/sys_exit_connect`
/// and `sock/inet_sock_set_state`. Like credwatch, it skips a tracepoint the kernel lacks.
pub fn start_connect_floor() -> Result<Ebpf, FloorError> {
    let mut ebpf = load_floor()?;
    let tracefs = Tracefs::ensure_mounted().map_err(SensorError::from)?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let root = find_cgroup2_mount(&mountinfo).ok_or(FloorError::NoCgroup2)?;

    for program in ["floor_connect4", "floor_connect6"] {
        attach_cgroup(&mut ebpf, program, &root).map_err(|message| FloorError::Attach {
            program,
            attach_point: root.display().to_string(),
            message,
        })?;
    }
    let tracepoints = [
        ("floor_exit", "syscalls", "sys_exit_connect"),
        ("floor_enter", "sock", "inet_sock_set_state"),
    ];
    for (program, category, tracepoint) in tracepoints {
        if !tracefs.has_tracepoint(category, tracepoint) {
            tracing::warn!(tracepoint = %format!("{category}/{tracepoint}"), "the kernel has no such tracepoint; the floor runs without it, as credwatch does");
            continue;
        }
        let spec = ProbeSpec {
            program,
            category,
            tracepoint,
            required: true,
        };
        attach_one(&mut ebpf, &spec).map_err(|error| FloorError::Attach {
            program,
            attach_point: format!("{category}/{tracepoint}"),
            message: super::error_chain(&error),
        })?;
    }
    Ok(ebpf)
}

/// Loads the floor programs on the TLS library functions: for every host library credwatch
/// attaches at start, an empty uprobe at each function credwatch hooks, and an empty
/// uretprobe where credwatch has a return probe. Returns the object and the libraries.
pub fn start_tls_floor() -> Result<(Ebpf, Vec<PathBuf>), FloorError> {
    let mut ebpf = load_floor()?;
    let libraries = discovery::host_libraries();
    if libraries.is_empty() {
        return Err(FloorError::NoTlsLibrary);
    }
    for program in ["floor_uprobe", "floor_uretprobe"] {
        uprobe(&mut ebpf, program)
            .and_then(|probe| probe.load())
            .map_err(|error| FloorError::Attach {
                program,
                attach_point: "the kernel".to_owned(),
                message: super::error_chain(&error),
            })?;
    }

    let mut attached = Vec::new();
    for path in libraries {
        let Some(found) = library::inspect(&path).map_err(FloorError::Library)? else {
            continue;
        };
        for hook in &found.hooks {
            let program = if is_return_probe(hook.program)? {
                "floor_uretprobe"
            } else {
                "floor_uprobe"
            };
            attach_uprobe(&mut ebpf, program, hook.offset, &path).map_err(|error| {
                FloorError::Attach {
                    program,
                    attach_point: format!("{} in {}", hook.symbol, path.display()),
                    message: super::error_chain(&error),
                }
            })?;
        }
        tracing::info!(path = %path.display(), probes = found.hooks.len(), "attached the TLS floor");
        attached.push(path);
    }
    Ok((ebpf, attached))
}

/// Checks the privileges and loads the floor object, with no program in the kernel yet.
fn load_floor() -> Result<Ebpf, SensorError> {
    preflight::check()?;
    Ok(EbpfLoader::new().load(FLOOR_PROGRAMS)?)
}

/// Returns whether a credwatch program is a return probe, from the section name that
/// `#[uretprobe]` gives it in the embedded credwatch object.
fn is_return_probe(program: &str) -> Result<bool, FloorError> {
    let unknown = || FloorError::UnknownProgram(program.to_owned());
    let file = object::File::parse(PROGRAMS).map_err(|_| unknown())?;
    let symbol = file.symbol_by_name(program).ok_or_else(unknown)?;
    let index = symbol.section_index().ok_or_else(unknown)?;
    let section = file.section_by_index(index).map_err(|_| unknown())?;
    let name = section.name().map_err(|_| unknown())?;
    Ok(name.starts_with("uretprobe"))
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut UProbe, ProgramError> {
    ebpf.program_mut(name)
        .ok_or(ProgramError::UnexpectedProgramType)?
        .try_into()
}

fn attach_uprobe(
    ebpf: &mut Ebpf,
    program: &str,
    offset: u64,
    library: &Path,
) -> Result<(), ProgramError> {
    let location = UProbeAttachLocation::AbsoluteOffset(offset);
    uprobe(ebpf, program)?.attach(location, library, UProbeScope::AllProcesses)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_programs_are_classified() {
        let mut kinds = Vec::new();
        for program in super::super::TLS_PROGRAMS {
            kinds.push(is_return_probe(program).unwrap());
        }
        assert!(
            kinds.contains(&true),
            "no return probe among the TLS programs"
        );
        assert!(
            kinds.contains(&false),
            "no entry probe among the TLS programs"
        );
    }

    #[test]
    fn unknown_program_is_rejected() {
        let error = is_return_probe("no_such_program").unwrap_err();
        assert!(error.to_string().contains("no_such_program"), "{error}");
    }
}
