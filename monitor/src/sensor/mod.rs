//! The sensor: loads the eBPF programs, fills the catalogue maps, attaches the tracepoints and
//! hands out the ring buffer and counters.

pub mod btf;
pub mod counters;
pub mod decode;
pub mod decode_network;
pub mod floor;
pub mod preflight;
pub mod tracefs;

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        MapData, PerCpuArray, ProgramArray, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{CgroupAttachMode, CgroupSockAddr, ProgramError, TracePoint, UProbe},
};
use monitor_common::{
    catalogue::{LIBRARY_ENTRY, MATCH_DEFINITE, MATCH_LIBRARY, MatchValue, PATH_LEN, REVERSE_LEN},
    network::{
        NETWORK_ENABLED, NETWORK_EXCLUDE_NETWORKS, NETWORK_EXCLUDE_PORTS, NetworkSettings,
        PORT_WORDS,
    },
    offsets::KernelOffsets,
};
use thiserror::Error;

use self::{btf::KernelBtf, tracefs::Tracefs};
use crate::config::{NetworkConfig, TlsConfig};
use crate::credential::catalogue::Catalogue;
use crate::credential::kernel_entries::{KernelEntries, TrieEntry, kernel_entries};
use crate::network::cidr::Cidr;
use crate::tls::library::LIBRARY_NAMES;

/// The uprobe programs the TLS hooks attach to library functions.
pub const TLS_PROGRAMS: &[&str] = &[
    "tls_name_ctrl",
    "tls_name_string",
    "tls_name_gnutls",
    "tls_call",
    "tls_io_call",
    "tls_return",
    "tls_mark",
];

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
    /// `category/name` of the tracepoint, the cgroup path, or the functions of a uprobe.
    pub attach_point: String,
    /// Hook type: `tracepoint`, `tail_call`, `cgroup_sock_addr` or `uprobe`.
    pub hook: &'static str,
    /// `attached`, `loaded` (a uprobe, attached to libraries as they are found),
    /// `disabled` (turned off in the configuration), `unavailable` (the kernel lacks the
    /// hook) or `failed`.
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
    /// Whether the TLS uprobe programs are loaded, ready to be attached to libraries.
    pub tls_loaded: bool,
}

/// Settings of the sensor's features besides credential files.
pub struct SensorOptions<'a> {
    /// Outbound connections.
    pub network: &'a NetworkConfig,
    /// TLS library hooks.
    pub tls: &'a TlsConfig,
}

impl Sensor {
    /// Loads the programs with the catalogue, attaches them and returns the sensor.
    /// `daemon_pid` is excluded in the kernel. Call [`preflight::check`] first for clear
    /// errors about missing privileges or kernel features.
    pub fn start(
        catalogue: &Catalogue,
        daemon_pid: u32,
        options: &SensorOptions<'_>,
    ) -> Result<Self, SensorError> {
        let tracefs = Tracefs::ensure_mounted()?;
        let btf = KernelBtf::from_sys_fs()?;
        let offsets = resolve_offsets(&tracefs, &btf)?;
        tracing::debug!(?offsets, "resolved kernel offsets");
        let settings = network_settings(options.network, &tracefs, &btf);
        let ports = excluded_ports(options.network);

        let mut entries = kernel_entries(catalogue);
        if options.tls.enabled {
            add_library_entries(&mut entries);
        }
        let filter = entries.filter();
        let mut ebpf = EbpfLoader::new()
            .override_global("DAEMON_TGID", &daemon_pid, true)
            .override_global("KERNEL_OFFSETS", &offsets, true)
            .override_global("MATCH_FILTER", &filter, true)
            .override_global("NETWORK_SETTINGS", &settings, true)
            .override_global("EXCLUDED_PORTS", &ports, true)
            .load(PROGRAMS)?;
        load_catalogue(&mut ebpf, &entries)?;
        load_excluded_networks(&mut ebpf, &options.network.excluded_networks())?;
        let mut probes = attach_all(&mut ebpf, &tracefs)?;
        probes.push(load_directory_walk(&mut ebpf, &offsets));
        probes.extend(attach_network(&mut ebpf, &tracefs, options.network));
        let tls_statuses = load_tls(&mut ebpf, options.tls);
        let tls_loaded = tls_statuses.iter().all(|status| status.state == "loaded");
        probes.extend(tls_statuses);

        let ring = take_map(&mut ebpf, "EVENTS", RingBuf::try_from)?;
        let counters = take_map(&mut ebpf, "COUNTERS", PerCpuArray::try_from)?;
        Ok(Self {
            ebpf,
            ring,
            counters,
            probes,
            mounted_tracefs: tracefs.mounted_by_us(),
            tls_loaded,
        })
    }
}

/// Adds the TLS library file names to the reverse trie, so that a process loading one is
/// reported to the daemon.
fn add_library_entries(entries: &mut KernelEntries) {
    let value = MatchValue {
        entry_index: LIBRARY_ENTRY,
        flags: MATCH_DEFINITE | MATCH_LIBRARY,
    };
    for name in LIBRARY_NAMES {
        let mut key: Vec<u8> = format!("/{name}").into_bytes();
        key.reverse();
        if !entries.reverse.iter().any(|entry| entry.bytes == key) {
            entries.reverse.push(TrieEntry { bytes: key, value });
        }
    }
}

/// Builds the connection programs' settings: configuration and the field offsets they read.
fn network_settings(config: &NetworkConfig, tracefs: &Tracefs, btf: &KernelBtf) -> NetworkSettings {
    let mut settings = NetworkSettings::disabled();
    if !config.enabled {
        return settings;
    }
    settings.flags = NETWORK_ENABLED;
    if !config.exclude_ports.is_empty() {
        settings.flags |= NETWORK_EXCLUDE_PORTS;
    }
    if !config.exclude_networks.is_empty() {
        settings.flags |= NETWORK_EXCLUDE_NETWORKS;
    }
    settings.dedup_window_ns = u64::try_from(config.dedup_window.as_nanos()).unwrap_or(u64::MAX);
    let field = |category: &str, name: &str, field: &str| {
        tracefs.field_offset(category, name, field).unwrap_or_else(|error| {
            tracing::warn!(%error, tracepoint = %format!("{category}/{name}"), field, "tracepoint field not found; connect outcomes will be incomplete");
            monitor_common::offsets::UNKNOWN
        })
    };
    settings.exit_ret = field("syscalls", "sys_exit_connect", "ret");
    settings.state_skaddr = field("sock", "inet_sock_set_state", "skaddr");
    settings.state_old = field("sock", "inet_sock_set_state", "oldstate");
    settings.state_new = field("sock", "inet_sock_set_state", "newstate");
    settings.state_protocol = field("sock", "inet_sock_set_state", "protocol");
    settings.sock_err = btf.member_offset("sock", "sk_err").unwrap_or_else(|error| {
        tracing::warn!(%error, "struct sock has no sk_err in BTF; failed non-blocking connects are reported as ECONNREFUSED");
        monitor_common::offsets::UNKNOWN
    });
    settings
}

fn excluded_ports(config: &NetworkConfig) -> [u64; PORT_WORDS] {
    let mut words = [0u64; PORT_WORDS];
    for port in &config.exclude_ports {
        words[usize::from(*port) / 64] |= 1 << (port % 64);
    }
    words
}

fn load_excluded_networks(ebpf: &mut Ebpf, networks: &[Cidr]) -> Result<(), SensorError> {
    let name = "EXCLUDED_NETWORKS";
    let map = ebpf
        .map_mut(name)
        .ok_or(SensorError::Missing { kind: "map", name })?;
    let mut trie: LpmTrie<&mut MapData, [u8; 16], u8> =
        LpmTrie::try_from(map).map_err(|source| SensorError::Map { name, source })?;
    for network in networks {
        let key = Key::new(network.prefix_bits, network.address.octets());
        trie.insert(&key, 1, 0)
            .map_err(|source| SensorError::Map { name, source })?;
    }
    Ok(())
}

/// Attaches the connect programs to the cgroup v2 root and the tracepoints that give their
/// outcome. A failure is reported in the health event, not fatal: credential access still
/// works without it.
fn attach_network(ebpf: &mut Ebpf, tracefs: &Tracefs, config: &NetworkConfig) -> Vec<ProbeStatus> {
    let status = |program: &str, attach_point: String, hook, state, detail| ProbeStatus {
        program: program.to_owned(),
        attach_point,
        hook,
        state,
        detail,
    };
    let mut statuses = Vec::new();
    let root = crate::workload::cgroup::CgroupResolver::discover()
        .root()
        .map(std::path::Path::to_path_buf);
    for program in ["connect4", "connect6"] {
        let point = root.as_ref().map_or_else(
            || "cgroup v2 root".to_owned(),
            |root| root.display().to_string(),
        );
        if !config.enabled {
            statuses.push(status(program, point, "cgroup_sock_addr", "disabled", None));
            continue;
        }
        let Some(root) = &root else {
            let detail =
                "no cgroup v2 hierarchy is mounted; mount one (cgroup2) to see connections";
            tracing::warn!(program, detail, "connect probe not attached");
            statuses.push(status(
                program,
                point,
                "cgroup_sock_addr",
                "unavailable",
                Some(detail.to_owned()),
            ));
            continue;
        };
        match attach_cgroup(ebpf, program, root) {
            Ok(()) => statuses.push(status(program, point, "cgroup_sock_addr", "attached", None)),
            Err(error) => {
                tracing::warn!(program, cgroup = %root.display(), %error, "connect probe failed to attach; connections are not reported");
                statuses.push(status(
                    program,
                    point,
                    "cgroup_sock_addr",
                    "failed",
                    Some(error),
                ));
            }
        }
    }
    for (program, category, tracepoint) in [
        ("sys_exit_connect", "syscalls", "sys_exit_connect"),
        ("inet_sock_set_state", "sock", "inet_sock_set_state"),
    ] {
        let point = format!("{category}/{tracepoint}");
        if !config.enabled {
            statuses.push(status(program, point, "tracepoint", "disabled", None));
            continue;
        }
        if !tracefs.has_tracepoint(category, tracepoint) {
            statuses.push(status(
                program,
                point,
                "tracepoint",
                "unavailable",
                Some("the kernel has no such tracepoint".to_owned()),
            ));
            continue;
        }
        let spec = ProbeSpec {
            program,
            category,
            tracepoint,
            required: false,
        };
        match attach_one(ebpf, &spec) {
            Ok(()) => statuses.push(status(program, point, "tracepoint", "attached", None)),
            Err(error) => {
                tracing::warn!(tracepoint = %point, %error, "connect outcome probe failed to attach");
                statuses.push(status(
                    program,
                    point,
                    "tracepoint",
                    "failed",
                    Some(error.to_string()),
                ));
            }
        }
    }
    statuses
}

/// Attaches one observe-only connect program to a cgroup, next to any programs already there.
fn attach_cgroup(ebpf: &mut Ebpf, name: &str, root: &std::path::Path) -> Result<(), String> {
    let cgroup = std::fs::File::open(root)
        .map_err(|error| format!("failed to open the cgroup {}: {error}", root.display()))?;
    let program: &mut CgroupSockAddr = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("the object has no program {name}"))?
        .try_into()
        .map_err(|error: ProgramError| error.to_string())?;
    program.load().map_err(|error| error.to_string())?;
    // From Linux 5.7 aya attaches through a BPF link, which always runs next to the programs
    // already on the cgroup and takes no flags. Older kernels use BPF_PROG_ATTACH, where only
    // the multi flag keeps other programs in place instead of replacing them.
    let uses_links = aya::util::KernelVersion::current()
        .is_ok_and(|version| version >= aya::util::KernelVersion::new(5, 7, 0));
    let mode = if uses_links {
        CgroupAttachMode::Single
    } else {
        CgroupAttachMode::AllowMultiple
    };
    program
        .attach(&cgroup, mode)
        .map_err(|error| error_chain(&error))?;
    Ok(())
}

/// Formats an error with its causes, which aya keeps in `source`.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Loads the TLS uprobe programs; the TLS hooks attach them to libraries later.
fn load_tls(ebpf: &mut Ebpf, config: &TlsConfig) -> Vec<ProbeStatus> {
    TLS_PROGRAMS
        .iter()
        .map(|&program| {
            let status = |state, detail| ProbeStatus {
                program: program.to_owned(),
                attach_point: "TLS library functions".to_owned(),
                hook: "uprobe",
                state,
                detail,
            };
            if !config.enabled {
                return status("disabled", None);
            }
            let loaded = ebpf
                .program_mut(program)
                .ok_or(ProgramError::UnexpectedProgramType)
                .and_then(<&mut UProbe>::try_from)
                .and_then(|probe| probe.load());
            match loaded {
                Ok(()) => status("loaded", None),
                Err(error) => {
                    tracing::warn!(program, %error, "TLS probe failed to load; TLS handshakes are not reported");
                    status("failed", Some(error.to_string()))
                }
            }
        })
        .collect()
}

fn resolve_offsets(tracefs: &Tracefs, btf: &KernelBtf) -> Result<KernelOffsets, SensorError> {
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
