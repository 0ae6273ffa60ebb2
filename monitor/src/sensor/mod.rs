//! The sensor: loads the eBPF programs, fills the catalogue maps, attaches the tracepoints and
//! hands out the ring buffer and counters.

pub mod btf;
pub mod counters;
pub mod decode;
pub mod preflight;
pub mod tracefs;

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        MapData, PerCpuArray, ProgramArray, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{ProgramError, TracePoint},
};
use monitor_common::{
    catalogue::{MatchValue, PATH_LEN, REVERSE_LEN},
    offsets::KernelOffsets,
};
use thiserror::Error;

use self::{btf::KernelBtf, tracefs::Tracefs};
use crate::credential::catalogue::Catalogue;
use crate::credential::kernel_entries::{KernelEntries, TrieEntry, kernel_entries};

/// The compiled credwatch programs, built by `build.rs`.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/credwatch"));
/// Programs that return at once, for the benchmark floor.
static FLOOR_PROGRAMS: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/credwatch-floor"));

/// The program the open programs tail-call to walk the directory of a relative open.
const DIRECTORY_WALK_PROGRAM: &str = "directory_walk";

/// One tracepoint program and whether the daemon can run without it.
struct ProbeSpec {
    program: &'static str,
    category: &'static str,
    tracepoint: &'static str,
    required: bool,
}

/// Every probe credwatch attaches. `open` does not exist on architectures that only have
/// `openat` (arm64), and `openat2` needs Linux 5.6, so both are optional.
const PROBES: &[ProbeSpec] = &[
    ProbeSpec {
        program: "sched_process_exec",
        category: "sched",
        tracepoint: "sched_process_exec",
        required: true,
    },
    ProbeSpec {
        program: "sched_process_exit",
        category: "sched",
        tracepoint: "sched_process_exit",
        required: true,
    },
    ProbeSpec {
        program: "sys_enter_openat",
        category: "syscalls",
        tracepoint: "sys_enter_openat",
        required: true,
    },
    ProbeSpec {
        program: "sys_exit_openat",
        category: "syscalls",
        tracepoint: "sys_exit_openat",
        required: true,
    },
    ProbeSpec {
        program: "sys_enter_open",
        category: "syscalls",
        tracepoint: "sys_enter_open",
        required: false,
    },
    ProbeSpec {
        program: "sys_exit_open",
        category: "syscalls",
        tracepoint: "sys_exit_open",
        required: false,
    },
    ProbeSpec {
        program: "sys_enter_openat2",
        category: "syscalls",
        tracepoint: "sys_enter_openat2",
        required: false,
    },
    ProbeSpec {
        program: "sys_exit_openat2",
        category: "syscalls",
        tracepoint: "sys_exit_openat2",
        required: false,
    },
];

/// State of one probe after start-up, reported in the health event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeStatus {
    /// Program name.
    pub program: String,
    /// `category/name` of the tracepoint.
    pub attach_point: String,
    /// Hook type, `tracepoint`.
    pub hook: &'static str,
    /// `attached`, `unavailable` (the kernel lacks the tracepoint) or `failed`.
    pub state: &'static str,
    /// Reason it is not attached.
    pub detail: Option<String>,
}

/// The sensor could not start.
#[derive(Debug, Error)]
pub enum SensorError {
    /// A privilege or kernel feature is missing.
    #[error(transparent)]
    Preflight(#[from] preflight::PreflightError),
    /// tracefs is missing.
    #[error(transparent)]
    Tracefs(#[from] tracefs::TracefsError),
    /// The kernel BTF could not be read.
    #[error("failed to read the kernel BTF")]
    Btf(#[from] btf::BtfError),
    /// The object could not be loaded.
    #[error("failed to load the eBPF object")]
    Load(#[from] aya::EbpfError),
    /// A program or map is missing from the object, which means a defective build.
    #[error("the eBPF object has no {kind} named {name}; rebuild credwatch")]
    Missing {
        /// `program` or `map`.
        kind: &'static str,
        /// Its name.
        name: &'static str,
    },
    /// A map operation failed.
    #[error("failed to use the eBPF map {name}")]
    Map {
        /// Map name.
        name: &'static str,
        /// The cause.
        #[source]
        source: aya::maps::MapError,
    },
    /// A required probe could not be loaded or attached.
    #[error("failed to attach the required tracepoint {attach_point} (program {program})")]
    Attach {
        /// Program name.
        program: &'static str,
        /// `category/name`.
        attach_point: String,
        /// The cause.
        #[source]
        source: ProgramError,
    },
}

/// The loaded and attached programs.
pub struct Sensor {
    /// The loaded object; dropping it detaches every program.
    pub ebpf: Ebpf,
    /// Records for the daemon.
    pub ring: RingBuf<MapData>,
    /// Per-CPU counters.
    pub counters: PerCpuArray<MapData, u64>,
    /// State of each probe.
    pub probes: Vec<ProbeStatus>,
    /// Whether tracefs had to be mounted.
    pub mounted_tracefs: bool,
}

impl Sensor {
    /// Loads the programs with the catalogue, attaches them and returns the sensor.
    /// `daemon_pid` is excluded in the kernel. Call [`preflight::check`] first for clear
    /// errors about missing privileges or kernel features.
    pub fn start(catalogue: &Catalogue, daemon_pid: u32) -> Result<Self, SensorError> {
        let tracefs = Tracefs::ensure_mounted()?;
        let offsets = resolve_offsets(&tracefs)?;
        tracing::debug!(?offsets, "resolved kernel offsets");

        let entries = kernel_entries(catalogue);
        let filter = entries.filter();
        let mut ebpf = EbpfLoader::new()
            .override_global("DAEMON_TGID", &daemon_pid, true)
            .override_global("KERNEL_OFFSETS", &offsets, true)
            .override_global("MATCH_FILTER", &filter, true)
            .load(PROGRAMS)?;
        load_catalogue(&mut ebpf, &entries)?;
        let mut probes = attach_all(&mut ebpf, &tracefs)?;
        probes.push(load_directory_walk(&mut ebpf, &offsets));

        let ring = take_map(&mut ebpf, "EVENTS", RingBuf::try_from)?;
        let counters = take_map(&mut ebpf, "COUNTERS", PerCpuArray::try_from)?;
        Ok(Self {
            ebpf,
            ring,
            counters,
            probes,
            mounted_tracefs: tracefs.mounted_by_us(),
        })
    }
}

/// Loads the floor programs on the open tracepoints, for the benchmark: programs that return
/// at once, or with `read_path` an `openat` program that only reads the path. Returns the
/// object, which detaches them when dropped.
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

fn resolve_offsets(tracefs: &Tracefs) -> Result<KernelOffsets, SensorError> {
    let btf = KernelBtf::from_sys_fs()?;
    let mut offsets = KernelOffsets::unknown();
    let field = |structure: &str, member: &str| match btf.member_offset(structure, member) {
        Ok(offset) => offset,
        Err(error) => {
            tracing::warn!(%error, structure, member, "kernel field not found in BTF; exec records will lack the data that needs it");
            monitor_common::offsets::UNKNOWN
        }
    };
    offsets.task_real_parent = field("task_struct", "real_parent");
    offsets.task_tgid = field("task_struct", "tgid");
    offsets.task_mm = field("task_struct", "mm");
    offsets.task_start_boottime = field("task_struct", "start_boottime");
    offsets.mm_arg_start = field("mm_struct", "arg_start");
    offsets.mm_arg_end = field("mm_struct", "arg_end");
    let path = |structure: &str, members: &[&str]| match btf.member_path_offset(structure, members)
    {
        Ok(offset) => offset,
        Err(error) => {
            tracing::warn!(%error, structure, ?members, "kernel field not found in BTF; relative paths will be resolved from /proc instead");
            monitor_common::offsets::UNKNOWN
        }
    };
    offsets.task_fs = field("task_struct", "fs");
    offsets.task_files = field("task_struct", "files");
    offsets.fs_pwd = field("fs_struct", "pwd");
    offsets.files_fdt = field("files_struct", "fdt");
    offsets.fdtable_max_fds = field("fdtable", "max_fds");
    offsets.fdtable_fd = field("fdtable", "fd");
    offsets.file_path = field("file", "f_path");
    offsets.path_mnt = field("path", "mnt");
    offsets.path_dentry = field("path", "dentry");
    offsets.dentry_parent = field("dentry", "d_parent");
    offsets.dentry_name = path("dentry", &["d_name", "name"]);
    offsets.dentry_name_len = path("dentry", &["d_name", "len"]);
    offsets.vfsmount_root = field("vfsmount", "mnt_root");
    offsets.mount_mnt = field("mount", "mnt");
    offsets.mount_parent = field("mount", "mnt_parent");
    offsets.mount_mountpoint = field("mount", "mnt_mountpoint");
    offsets.exec_filename_loc = tracefs.field_offset("sched", "sched_process_exec", "filename")?;
    offsets.exec_pid = tracefs.field_offset("sched", "sched_process_exec", "pid")?;
    Ok(offsets)
}

fn load_catalogue(ebpf: &mut Ebpf, entries: &KernelEntries) -> Result<(), SensorError> {
    fill_trie::<PATH_LEN>(ebpf, "FORWARD_MATCH", &entries.forward)?;
    fill_trie::<REVERSE_LEN>(ebpf, "REVERSE_MATCH", &entries.reverse)?;
    tracing::debug!(
        forward = entries.forward.len(),
        reverse = entries.reverse.len(),
        "loaded the catalogue into the kernel"
    );
    Ok(())
}

fn fill_trie<const N: usize>(
    ebpf: &mut Ebpf,
    name: &'static str,
    entries: &[TrieEntry],
) -> Result<(), SensorError> {
    let map = ebpf
        .map_mut(name)
        .ok_or(SensorError::Missing { kind: "map", name })?;
    let mut trie: LpmTrie<&mut MapData, [u8; N], MatchValue> =
        LpmTrie::try_from(map).map_err(|source| SensorError::Map { name, source })?;
    for entry in entries {
        let mut data = [0u8; N];
        // Keys longer than the trie were rejected when the catalogue was validated.
        let len = entry.bytes.len().min(N);
        data[..len].copy_from_slice(&entry.bytes[..len]);
        let key = Key::new((len * 8) as u32, data);
        trie.insert(&key, entry.value, 0)
            .map_err(|source| SensorError::Map { name, source })?;
    }
    Ok(())
}

fn attach_all(ebpf: &mut Ebpf, tracefs: &Tracefs) -> Result<Vec<ProbeStatus>, SensorError> {
    let mut statuses = Vec::with_capacity(PROBES.len());
    for probe in PROBES {
        let attach_point = format!("{}/{}", probe.category, probe.tracepoint);
        let status = |state, detail| ProbeStatus {
            program: probe.program.to_owned(),
            attach_point: attach_point.clone(),
            hook: "tracepoint",
            state,
            detail,
        };
        if !tracefs.has_tracepoint(probe.category, probe.tracepoint) && !probe.required {
            tracing::info!(tracepoint = %attach_point, "tracepoint not available on this kernel; continuing without it");
            statuses.push(status(
                "unavailable",
                Some("the kernel has no such tracepoint".to_owned()),
            ));
            continue;
        }
        match attach_one(ebpf, probe) {
            Ok(()) => statuses.push(status("attached", None)),
            Err(source) if probe.required => {
                return Err(SensorError::Attach {
                    program: probe.program,
                    attach_point,
                    source,
                });
            }
            Err(error) => {
                tracing::warn!(tracepoint = %attach_point, error = %error, "optional probe failed to attach; continuing without it");
                statuses.push(status("failed", Some(error.to_string())));
            }
        }
    }
    Ok(statuses)
}

/// Loads the directory walk and registers it for the open programs' tail call. Without it
/// relative opens are resolved from `/proc`, so a failure is reported, not fatal.
fn load_directory_walk(ebpf: &mut Ebpf, offsets: &KernelOffsets) -> ProbeStatus {
    let status = |state, detail: Option<String>| ProbeStatus {
        program: DIRECTORY_WALK_PROGRAM.to_owned(),
        attach_point: "TAIL_CALLS[0]".to_owned(),
        hook: "tail_call",
        state,
        detail,
    };
    if !offsets.can_walk_directories() {
        let detail =
            "kernel BTF lacks a field the walk needs; relative paths are resolved from /proc";
        tracing::warn!(detail, "directory walk disabled");
        return status("unavailable", Some(detail.to_owned()));
    }
    match register_directory_walk(ebpf) {
        Ok(()) => status("attached", None),
        Err(error) => {
            tracing::warn!(%error, "directory walk failed to load; relative paths are resolved from /proc");
            status("failed", Some(error))
        }
    }
}

fn register_directory_walk(ebpf: &mut Ebpf) -> Result<(), String> {
    let program = ebpf
        .program_mut(DIRECTORY_WALK_PROGRAM)
        .ok_or_else(|| format!("the object has no program {DIRECTORY_WALK_PROGRAM}"))?;
    let tracepoint: &mut TracePoint = program
        .try_into()
        .map_err(|error: ProgramError| error.to_string())?;
    tracepoint.load().map_err(|error| error.to_string())?;
    let fd = tracepoint
        .fd()
        .map_err(|error| error.to_string())?
        .try_clone()
        .map_err(|error| error.to_string())?;
    let map = ebpf
        .map_mut("TAIL_CALLS")
        .ok_or("the object has no map TAIL_CALLS")?;
    let mut calls: ProgramArray<&mut MapData> =
        ProgramArray::try_from(map).map_err(|error| error.to_string())?;
    calls.set(0, &fd, 0).map_err(|error| error.to_string())
}

fn attach_one(ebpf: &mut Ebpf, probe: &ProbeSpec) -> Result<(), ProgramError> {
    let Some(program) = ebpf.program_mut(probe.program) else {
        return Err(ProgramError::UnexpectedProgramType);
    };
    let tracepoint: &mut TracePoint = program.try_into()?;
    tracepoint.load()?;
    tracepoint.attach(probe.category, probe.tracepoint)?;
    Ok(())
}

fn program_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut TracePoint, SensorError> {
    let program = ebpf.program_mut(name).ok_or(SensorError::Missing {
        kind: "program",
        name,
    })?;
    program.try_into().map_err(|source| SensorError::Attach {
        program: name,
        attach_point: String::new(),
        source,
    })
}

fn take_map<T>(
    ebpf: &mut Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<T, aya::maps::MapError>,
) -> Result<T, SensorError> {
    let map = ebpf
        .take_map(name)
        .ok_or(SensorError::Missing { kind: "map", name })?;
    convert(map).map_err(|source| SensorError::Map { name, source })
}
