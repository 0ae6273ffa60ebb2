//! The daemon: reads records, keeps the process cache, writes events, reports health, and
//! stops cleanly on SIGINT or SIGTERM.

pub mod access;
pub mod directories;
pub mod exposure;
pub mod health;
pub mod identity;
mod owner;

use std::{
    fs, io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    Ebpf,
    maps::{MapData, RingBuf},
};
use monitor_common::catalogue::MATCH_LIBRARY;
use thiserror::Error;
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    time::{MissedTickBehavior, interval},
};

use self::{
    access::{Access, Context, Skipped, access_event, set_process_attributes},
    directories::PendingDirectories,
    exposure::{Exposure, Exposures, Location, RunningProcess},
    health::{DaemonStats, Reason, health_event},
    identity::{
        FileIdentity, Identities, Reader, rfc3339_seconds, set_bound_pod_attributes,
        set_identity_attributes,
    },
};
use crate::{
    clock::BootClock,
    config::{DetectionConfig, HealthConfig, KubernetesConfig, TlsConfig},
    credential::catalogue::Catalogue,
    detect::{Detector, Read, SystemClock},
    export::{
        Event, JsonLinesSink, Severity,
        event::name,
        otlp::{Exporter, metrics::Snapshot as MetricsSnapshot},
    },
    network::event::connect_event,
    process::{ProcessCache, ProcessInfo, hash::Executables, procfs, redact, users::UserNames},
    sensor::{
        Sensor,
        counters::Counters,
        decode::{ExecEvent, OpenEvent, Record, decode},
        decode_network::{ConnectEvent, TlsCall},
    },
    store::{CredentialRecord, Store},
    tls::{
        event::handshake_event,
        hooks::TlsHooks,
        session::{Handshake, Sessions},
    },
    workload::{cgroup::CgroupResolver, kubelet::Kubelet, pods::PodDirectory},
};

/// How often queued processes are checked for TLS libraries.
const INSPECT_TICK: Duration = Duration::from_millis(50);
/// How often the ring buffer is drained without a wake-up. The TLS programs submit their
/// records without waking the daemon, so this bounds how late their events are.
const DRAIN_TICK: Duration = Duration::from_millis(50);

/// The daemon failed after start-up.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// Signal handlers could not be installed.
    #[error("failed to install the {signal} handler")]
    Signal {
        /// The signal.
        signal: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The ring buffer could not be polled.
    #[error("failed to poll the eBPF ring buffer")]
    Poll(#[source] io::Error),
    /// The reader of the event output went away.
    #[error("the event output {0} was closed by its reader; no further events can be written")]
    OutputClosed(String),
    /// The ready file could not be written.
    #[error("failed to write the ready file {path}")]
    ReadyFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Options of a daemon run that are not in the configuration file.
pub struct RunOptions {
    /// File written once every probe is attached.
    pub ready_file: Option<PathBuf>,
    /// Health settings.
    pub health: HealthConfig,
    /// TLS hook settings.
    pub tls: TlsConfig,
}

/// The running daemon's state.
pub struct Daemon {
    catalogue: Catalogue,
    sink: JsonLinesSink,
    processes: ProcessCache,
    users: UserNames,
    cgroups: CgroupResolver,
    clock: BootClock,
    stats: DaemonStats,
    directories: PendingDirectories,
    sessions: Sessions,
    identities: Identities,
    exposures: Exposures,
    pods: PodDirectory,
    executables: Executables,
    kubelet: Option<Kubelet>,
    trust_domain: String,
    detector: Detector<SystemClock>,
    /// The TLS hooks, when the TLS programs are loaded.
    hooks: Option<TlsHooks>,
    /// Set when the event output was closed by its reader.
    output_closed: bool,
    /// Total drops at the last check, kernel and daemon.
    reported_drops: u64,
    /// Export to an OpenTelemetry Collector, when configured.
    exporter: Option<Exporter>,
    /// Whether export was failing, and its losses, at the last check.
    export_state: ExportState,

    /// Counters sent as OTLP metrics.
    metrics: MetricsSnapshot,
    /// Program, hook and state of each probe, for the metrics.
    probe_states: Vec<(String, String, String)>,
    /// When the daemon started.
    started: std::time::SystemTime,
}

impl Daemon {
    /// Creates a daemon that writes to `sink`, keeps its inventory in `identities` and reads
    /// pod metadata as configured in `kubernetes`.
    pub fn new(
        catalogue: Catalogue,
        sink: JsonLinesSink,
        identities: Identities,
        kubernetes: &KubernetesConfig,
    ) -> Self {
        Self {
            catalogue,
            sink,
            processes: ProcessCache::new(),
            users: UserNames::new("/etc/passwd"),
            cgroups: CgroupResolver::discover(),
            clock: BootClock::now(),
            stats: DaemonStats::default(),
            directories: PendingDirectories::default(),
            sessions: Sessions::default(),
            identities,
            exposures: Exposures::default(),
            pods: PodDirectory::new(&kubernetes.host_root),
            executables: Executables::start(),
            kubelet: None,
            trust_domain: kubernetes.trust_domain.clone(),
            detector: Detector::new(DetectionConfig::default(), SystemClock),
            hooks: None,
            output_closed: false,
            reported_drops: 0,
            exporter: None,
            export_state: ExportState::default(),

            metrics: MetricsSnapshot::default(),
            probe_states: Vec::new(),
            started: std::time::SystemTime::now(),
        }
    }

    /// Sends every event to an OpenTelemetry Collector as well.
    pub fn with_exporter(mut self, exporter: Exporter) -> Self {
        self.exporter = Some(exporter);
        self
    }

    /// Reads pod metadata from the kubelet as well.
    pub fn with_kubelet(mut self, kubelet: Kubelet) -> Self {
        self.kubelet = Some(kubelet);
        self
    }

    /// Applies the `detection` settings instead of the defaults, with baselines kept in `store`
    /// when given.
    pub fn with_detection(mut self, settings: DetectionConfig, store: Option<Store>) -> Self {
        let detector = Detector::new(settings, SystemClock);
        self.detector = match store {
            Some(store) => detector.with_store(store),
            None => detector,
        };
        self
    }

    /// Runs until SIGINT or SIGTERM, then drains the ring buffer, writes a final health event,
    /// flushes and returns. The sensor's programs are detached when it is dropped.
    pub async fn run(
        mut self,
        sensor: Sensor,
        signals: Signals,
        options: RunOptions,
    ) -> Result<(), DaemonError> {
        let Sensor {
            ring,
            counters,
            probes,
            mut ebpf,
            tls_loaded,
            ..
        } = sensor;
        let Signals {
            mut sigterm,
            mut sigint,
            mut sigusr1,
            mut sighup,
        } = signals;
        // SAFETY: the ring buffer owns its map file descriptor, which stays open and refers to
        // the same map until the AsyncFd that owns the ring buffer is dropped.
        let registered = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) };
        let mut ring = registered.map_err(|error| DaemonError::Poll(error.into_parts().1))?;

        let scanned = self.processes.scan();
        tracing::info!(processes = scanned, "loaded running processes from /proc");
        self.scan_running_exposures();
        if tls_loaded {
            self.start_tls_hooks(&mut ebpf, &options.tls);
        }
        self.sync_tls_stats();
        let kernel = Counters::read(&counters);
        let mut start = health_event(Reason::Start, &kernel, &self.stats, None, Some(&probes));
        self.add_export_stats(&mut start);
        self.emit(start);
        self.flush();
        if let Some(path) = &options.ready_file {
            write_ready_file(path)?;
        }
        tracing::info!(
            entries = self.catalogue.entries().len(),
            "credwatch is running"
        );

        let mut drop_check = interval(options.health.drop_check_interval);
        drop_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let report_every = options.health.report_interval;
        let mut report = interval(if report_every.is_zero() {
            Duration::from_secs(86_400)
        } else {
            report_every
        });
        report.tick().await;
        let mut inspect = interval(INSPECT_TICK);
        inspect.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut drain_tick = interval(DRAIN_TICK);
        drain_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.probe_states = probes
            .iter()
            .map(|probe| {
                (
                    probe.program.clone(),
                    probe.hook.to_owned(),
                    probe.state.to_owned(),
                )
            })
            .collect();
        let metrics_every = self
            .exporter
            .as_ref()
            .map_or(Duration::ZERO, Exporter::metrics_interval);
        let mut metrics_tick = interval(if metrics_every.is_zero() {
            Duration::from_secs(86_400)
        } else {
            metrics_every
        });
        metrics_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);

        let stop_signal = loop {
            if self.output_closed {
                break "closed output";
            }
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = guard.map_err(DaemonError::Poll)?;
                    self.drain(guard.get_inner_mut(), &mut ebpf);
                    guard.clear_ready();
                    self.flush();
                }
                _ = drain_tick.tick() => {
                    self.drain(ring.get_mut(), &mut ebpf);
                    self.flush();
                }
                _ = inspect.tick(), if self.hooks.as_ref().is_some_and(TlsHooks::has_queued) => {
                    if let Some(hooks) = &mut self.hooks {
                        hooks.inspect_due(&mut ebpf, std::time::Instant::now());
                    }
                }
                _ = drop_check.tick() => {
                    self.check_drops(&Counters::read(&counters));
                    self.check_export(&counters);
                    self.detector.refresh_baselines();
                }
                _ = report.tick(), if !report_every.is_zero() => self.report(Reason::Interval, &counters),
                _ = sigusr1.recv() => self.report(Reason::Requested, &counters),
                _ = metrics_tick.tick(), if !metrics_every.is_zero() => self.push_metrics(&counters),
                _ = sighup.recv() => self.reopen(),
                _ = sigterm.recv() => break "SIGTERM",
                _ = sigint.recv() => break "SIGINT",
            }
        };

        tracing::info!(signal = stop_signal, "stopping");
        self.drain(ring.get_mut(), &mut ebpf);
        self.check_drops(&Counters::read(&counters));
        self.report(Reason::Stop, &counters);
        drop(ebpf);
        self.push_metrics(&counters);
        if let Some(exporter) = self.exporter.take() {
            exporter.stop();
        }
        if let Some(path) = &options.ready_file {
            let _ = fs::remove_file(path);
        }
        tracing::info!(events = self.stats.events_written, "stopped");
        if self.output_closed {
            return Err(DaemonError::OutputClosed(self.sink.target().to_owned()));
        }
        Ok(())
    }

    /// Attaches the TLS probes to the host's libraries and to every running process's.
    fn start_tls_hooks(&mut self, ebpf: &mut Ebpf, config: &TlsConfig) {
        let mut hooks = TlsHooks::new(config.inspect_delay);
        hooks.attach_host_libraries(ebpf);
        tracing::info!(
            libraries = hooks.attached(),
            "attached TLS probes to the host's libraries; reading the memory maps of running processes"
        );
        hooks.scan_all(ebpf);
        tracing::info!(
            libraries = hooks.attached(),
            processes = hooks.stats.processes_inspected,
            "TLS probes attached"
        );
        self.hooks = Some(hooks);
    }

    fn drain(&mut self, ring: &mut RingBuf<MapData>, ebpf: &mut Ebpf) {
        while let Some(item) = ring.next() {
            self.stats.records_received += 1;
            match decode(&item) {
                Ok(record) => self.handle(record, ebpf),
                Err(error) => {
                    self.stats.records_malformed += 1;
                    tracing::warn!(%error, "dropped a malformed kernel record");
                }
            }
        }
    }

    fn handle(&mut self, record: Record, ebpf: &mut Ebpf) {
        match record {
            Record::Directory(directory) => self.directories.remember(directory),
            Record::Exec(exec) => {
                // The process is most likely still alive now, so its cgroup path is learnt
                // from /proc before a short-lived program exits.
                let _ = self.cgroups.path_of_process(exec.cgroup_id, exec.pid);
                self.executables.exec(exec.pid);
                let process = self.processes.exec(&exec);
                if let Some(hooks) = &mut self.hooks {
                    hooks.exec(exec.pid, std::time::Instant::now());
                }
                self.check_exposures(&exec, &process);
            }
            Record::Exit(exit) => {
                for handshake in self.sessions.end_process(exit.pid, exit.boot_ns) {
                    self.report_handshake(&handshake);
                }
                self.processes.exit(exit.pid);
                self.identities.process_exited(exit.pid);
                self.executables.exited(exit.pid);
                self.exposures.process_exited(exit.pid);
                self.detector.process_exited(exit.pid);
                if let Some(hooks) = &mut self.hooks {
                    hooks.process_exited(ebpf, exit.pid);
                }
            }
            Record::Connect(connect) => {
                let process = self.processes.get_or_load(connect.pid);
                let mut context = self.context();
                let event = connect_event(&connect, &process, &mut context);
                let findings = self.connect_destination(&connect, &event);
                self.emit(event);
                self.emit_all(findings);
            }
            Record::Tls(call) => self.handle_tls(&call),
            Record::Open(open) if open.match_flags & MATCH_LIBRARY != 0 => {
                self.library_opened(&open, ebpf);
            }
            Record::Open(open) => {
                let directory = self.directories.take(open.tid);
                let process = self.processes.get_or_load(open.pid);
                let mut context = Context {
                    catalogue: &self.catalogue,
                    clock: &self.clock,
                    users: &mut self.users,
                    cgroups: &mut self.cgroups,
                    pods: &mut self.pods,
                    executables: &mut self.executables,
                    kubelet: self.kubelet.as_ref(),
                    trust_domain: &self.trust_domain,
                };
                match access_event(&open, directory.as_deref(), &process, &mut context) {
                    Ok(access) => self.report_access(&open, &process, access),
                    Err(Skipped::NotACredential) => self.stats.opens_not_credential += 1,
                    Err(Skipped::Unresolved) => {
                        self.stats.opens_unresolved += 1;
                        tracing::debug!(
                            pid = open.pid,
                            "could not resolve a relative candidate path"
                        );
                    }
                }
            }
        }
    }

    fn context(&mut self) -> Context<'_> {
        Context {
            catalogue: &self.catalogue,
            clock: &self.clock,
            users: &mut self.users,
            cgroups: &mut self.cgroups,
            pods: &mut self.pods,
            executables: &mut self.executables,
            kubelet: self.kubelet.as_ref(),
            trust_domain: &self.trust_domain,
        }
    }

    fn handle_tls(&mut self, call: &TlsCall) {
        if let Some(handshake) = self.sessions.handle(call) {
            self.report_handshake(&handshake);
        }
    }

    fn report_handshake(&mut self, handshake: &Handshake) {
        let process = self.processes.get_or_load(handshake.pid);
        let library = self
            .hooks
            .as_ref()
            .and_then(|hooks| hooks.library(handshake.library))
            .cloned();
        let mut context = self.context();
        let event = handshake_event(handshake, library.as_ref(), &process, &mut context);
        let succeeded = event.attributes.get("credwatch.tls.result")
            == Some(&serde_json::Value::from("success"));
        let server = event
            .attributes
            .get("server.address")
            .and_then(serde_json::Value::as_str)
            .filter(|_| succeeded)
            .map(str::to_owned);
        let findings = match server {
            Some(server) => {
                let port = port_attribute(&event, "server.port");
                self.destination(handshake.pid, &server, port, &event)
            }
            None => Vec::new(),
        };
        self.emit(event);
        self.emit_all(findings);
    }

    /// Records a destination of the credentials a process read and returns the
    /// `new_destination` findings, with `trigger` (the connection's event) as their evidence.
    fn destination(&mut self, pid: u32, server: &str, port: u16, trigger: &Event) -> Vec<Event> {
        self.identities
            .destination(pid, server, port, unix_ms(trigger.time));
        let ids = self.identities.credentials_read_by(pid).to_vec();
        if ids.is_empty() {
            return Vec::new();
        }
        let executable = attribute_str(trigger, "process.executable.path").unwrap_or_default();
        let workload = attribute_str(trigger, "credwatch.workload.id");
        let reader = Read {
            pid,
            executable,
            workload_id: workload,
            ..Read::default()
        };
        let findings = self.detector.destination(&reader, &ids, server, port);
        findings
            .iter()
            .map(|finding| finding.to_event(trigger))
            .collect()
    }

    /// Returns the owner of a credential file in words when it is gone.
    fn gone_owner(&mut self, identity: &FileIdentity, path: &std::path::Path) -> Option<String> {
        let root = self.cgroups.root().map(std::path::Path::to_path_buf);
        owner::gone_owner(identity, path, &mut self.pods, root.as_deref())
    }

    fn emit_all(&mut self, events: Vec<Event>) {
        for event in events {
            self.emit(event);
        }
    }

    /// Identifies the credentials of an opened file, adds them to the access event and
    /// writes it. Failed opens and opens for writing only are not read.
    fn report_access(&mut self, open: &OpenEvent, process: &ProcessInfo, access: Access) {
        let Access {
            mut event,
            path,
            resolved,
            credential_type,
        } = access;
        let readable = open.result >= 0 && access::access_mode(open.open_flags) != "write";
        // Another credwatch daemon on the host reads every credential file opened, and this
        // daemon observes that read too. Identifying it would make the two read each other's reads
        // back and forth, so a credwatch reader is reported but not followed.
        let by_credwatch = process.executable_name().as_deref() == Some("credwatch");
        if readable && by_credwatch {
            event.set("credwatch.identify.result", "not_read");
            event.set(
                "credwatch.identify.error",
                "the reader is a credwatch daemon, whose reads are not followed",
            );
        } else if readable && resolved {
            let relative = self.cgroups.path(open.cgroup_id).map(str::to_owned);
            let cgroup_dir = self
                .cgroups
                .root()
                .zip(relative)
                .map(|(root, relative)| root.join(relative.trim_start_matches('/')));
            let executable = process
                .executable
                .as_deref()
                .map(|path| path.to_string_lossy().into_owned())
                .unwrap_or_default();
            let workload = workload_id(&event);
            let reader = Reader {
                pid: open.pid,
                ppid: process.ppid,
                cgroup_dir,
                executable: &executable,
                workload: &workload,
            };
            let (identity, last_used) =
                self.identities
                    .file_read(&reader, &path, &credential_type, unix_ms(event.time));
            set_identity_attributes(&mut event, &identity);
            let reader_pod = attribute_str(&event, "k8s.pod.uid").map(str::to_owned);
            set_bound_pod_attributes(&mut event, &identity, reader_pod.as_deref());
            let gone_owner = self.gone_owner(&identity, &path);
            let path_text = path.to_string_lossy();
            let read = Read {
                pid: open.pid,
                ppid: process.ppid,
                executable: &executable,
                workload_id: Some(workload.as_str()).filter(|id| !id.is_empty()),
                namespace: attribute_str(&event, "k8s.namespace.name"),
                path: Some(path_text.as_ref()),
                file_type: Some(credential_type.as_str()),
                interactive: event
                    .attributes
                    .get("credwatch.process.interactive")
                    .and_then(serde_json::Value::as_bool),
                credentials: &identity.credentials,
                last_used: &last_used,
                foreign_pod: event.attributes.get("credwatch.token.pod_mismatch")
                    == Some(&serde_json::Value::Bool(true)),
                gone_owner: gone_owner.as_deref(),
            };
            let findings = self.detector.read(&read);
            let trigger = event;
            let events: Vec<Event> = findings
                .iter()
                .map(|finding| finding.to_event(&trigger))
                .collect();
            self.emit(trigger);
            self.emit_all(events);
            return;
        } else if readable {
            event.set("credwatch.identify.result", "not_read");
            event.set(
                "credwatch.identify.error",
                "the relative path could not be resolved",
            );
        }
        self.emit(event);
    }

    /// Counts a successful connect as a destination of the credentials its process read, and
    /// returns the findings it raised.
    fn connect_destination(&mut self, connect: &ConnectEvent, event: &Event) -> Vec<Event> {
        if attribute_str(event, "credwatch.connect.result") != Some("ok") {
            return Vec::new();
        }
        let Some(address) = attribute_str(event, "network.peer.address").map(str::to_owned) else {
            return Vec::new();
        };
        let port = port_attribute(event, "network.peer.port");
        self.destination(connect.pid, &address, port, event)
    }

    /// Scans a new program's arguments and environment for secrets.
    fn check_exposures(&mut self, exec: &ExecEvent, process: &ProcessInfo) {
        // The kernel copies at most 1,023 bytes of arguments; /proc has them all while the
        // process lives.
        let from_proc = (exec.args.is_empty() || exec.args_truncated)
            .then(|| {
                procfs::read_cmdline(exec.pid)
                    .ok()
                    .map(zeroize::Zeroizing::new)
            })
            .flatten();
        let raw_args = from_proc
            .as_deref()
            .map_or(exec.args.as_slice(), Vec::as_slice);
        let mut args = redact::split_cmdline(raw_args);
        let environ = procfs::read_environ(exec.pid).ok();
        let found = self.exposures.exec(
            self.identities.key(),
            exec.pid,
            exec.ppid,
            &args,
            environ.as_deref().map(Vec::as_slice),
        );
        args.iter_mut().for_each(zeroize::Zeroize::zeroize);
        let time = self.clock.to_system_time(exec.boot_ns);
        for exposure in found {
            self.report_exposure(&exposure, process, exec.uid, exec.cgroup_id, time, false);
        }
    }

    /// Reports the secrets in the arguments and environments of the processes running at
    /// start, except those a process shares with its parent.
    fn scan_running_exposures(&mut self) {
        let processes: Vec<_> = match procfs::list_pids() {
            Ok(pids) => pids
                .into_iter()
                .filter(|&pid| pid != std::process::id())
                .map(|pid| RunningProcess {
                    pid,
                    ppid: procfs::read_stat(pid).ok().map(|stat| stat.ppid),
                    args: procfs::read_cmdline(pid)
                        .map(|raw| redact::split_cmdline(&raw))
                        .unwrap_or_default(),
                    environ: procfs::read_environ(pid).ok(),
                })
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot list /proc; secrets of running processes are not scanned");
                return;
            }
        };
        let found = self
            .exposures
            .scan_running(self.identities.key(), &processes);
        drop(processes);
        let now = std::time::SystemTime::now();
        for (pid, exposures) in found {
            let process = self.processes.get_or_load(pid);
            let uid = procfs::read_uid(pid).unwrap_or(u32::MAX);
            let cgroup_id = self
                .cgroups
                .root()
                .and_then(|root| procfs::read_cgroup_id(pid, root))
                .unwrap_or(0);
            for exposure in exposures {
                self.report_exposure(&exposure, &process, uid, cgroup_id, now, true);
            }
        }
    }

    fn report_exposure(
        &mut self,
        exposure: &Exposure,
        process: &ProcessInfo,
        uid: u32,
        cgroup_id: u64,
        time: std::time::SystemTime,
        at_start: bool,
    ) {
        let executable = process
            .executable
            .as_deref()
            .map(|path| path.to_string_lossy().into_owned())
            .unwrap_or_default();
        let record = CredentialRecord {
            id: exposure.id.clone(),
            credential_type: exposure.credential_type.clone(),
            native_id: exposure.native_id.clone(),
            label: None,
            expires_at: exposure.expires_at,
            details: exposure.details.clone(),
        };

        let severity = match exposure.location {
            Location::Argument { .. } => Severity::Warn,
            Location::Environment { .. } => Severity::Info,
        };
        let mut event = Event::new(name::CREDENTIAL_EXPOSURE, severity, time);
        event
            .set("credwatch.credential.id", exposure.id.clone())
            .set(
                "credwatch.credential.type",
                exposure.credential_type.clone(),
            )
            .set_some("credwatch.credential.native_id", exposure.native_id.clone())
            .set_some(
                "credwatch.credential.expires_at",
                exposure.expires_at.and_then(rfc3339_seconds),
            )
            .set("credwatch.exposure.source", exposure.location.source());
        match &exposure.location {
            Location::Environment { variable } => {
                event.set("credwatch.exposure.variable", variable.clone());
            }
            Location::Argument { index, name } => {
                event
                    .set("credwatch.exposure.argument_index", *index)
                    .set_some("credwatch.exposure.variable", name.clone());
            }
        }
        if at_start {
            event.set("credwatch.exposure.at_start", true);
        }
        let mut context = self.context();
        set_process_attributes(&mut event, process, uid, cgroup_id, &mut context);
        let workload = workload_id(&event);
        self.identities
            .exposed(&record, &executable, &workload, unix_ms(time));
        self.emit(event);
    }

    /// Attaches the TLS probes to a file named like a TLS library that a process opened, before
    /// the process uses it.
    fn library_opened(&mut self, open: &OpenEvent, ebpf: &mut Ebpf) {
        if open.result < 0 {
            return;
        }
        if let Some(hooks) = &mut self.hooks {
            let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&open.path));
            hooks.library_opened(ebpf, open.pid, path);
        }
    }

    /// Copies the TLS hooks' and sessions' counts into the daemon stats.
    fn sync_tls_stats(&mut self) {
        if let Some(hooks) = &self.hooks {
            self.stats.tls_libraries_attached = hooks.stats.libraries_attached;
            self.stats.tls_libraries_released = hooks.stats.libraries_released;
            self.stats.tls_attach_failures = hooks.stats.attach_failures;
        }
        self.stats.tls_server_sessions = self.sessions.stats.server_handshakes;
        self.stats.tls_sessions_evicted = self.sessions.stats.sessions_evicted;
        let identity = self.identities.stats;
        self.stats.files_identified = identity.files_identified;
        self.stats.identify_cache_hits = identity.cache_hits;
        self.stats.files_unreadable = identity.files_unreadable;
        self.stats.files_read_through_cgroup = identity.read_through_cgroup;
        self.stats.store_failures = identity.store_failures;
        self.stats.pids_reused = self.processes.pids_reused();
        self.stats.findings_raised = self.detector.stats.raised;
        self.stats.findings_deduplicated = self.detector.stats.deduplicated;
        self.stats.findings_rate_limited = self.detector.stats.rate_limited;
        self.stats.baselines = self.detector.baselines().len() as u64;
        let hashes = self.executables.stats();
        self.stats.executables_hashed = hashes.hashed;
        self.stats.executables_not_hashed = hashes.skipped;
        let exposure = self.exposures.stats;
        self.stats.exposures_reported = exposure.reported;
        self.stats.exposures_inherited = exposure.inherited;
        self.stats.environments_unreadable = exposure.environments_unreadable;
    }

    fn emit(&mut self, event: Event) {
        if let Some(exporter) = &mut self.exporter {
            exporter.push(&event);
            self.count_for_metrics(&event);
        }
        if self.output_closed {
            self.stats.events_failed += 1;
            return;
        }
        match self.sink.write(&event) {
            Ok(()) => self.stats.events_written += 1,
            Err(error) => {
                self.output_closed = error.is_closed_output();
                self.stats.events_failed += 1;
                tracing::error!(error = %error, source = ?std::error::Error::source(&error), event = event.name, "failed to write an event");
            }
        }
    }

    fn flush(&mut self) {
        if let Some(exporter) = &self.exporter {
            exporter.flush();
        }
        if self.output_closed {
            return;
        }
        if let Err(error) = self.sink.flush() {
            self.output_closed = error.is_closed_output();
            tracing::error!(error = %error, source = ?std::error::Error::source(&error), "failed to flush events");
        }
    }

    /// Reopens the event file after SIGHUP, for log rotation.
    fn reopen(&mut self) {
        match self.sink.reopen() {
            Ok(()) => tracing::info!(
                target = self.sink.target(),
                "reopened the event output after SIGHUP"
            ),
            Err(error) => {
                tracing::error!(error = %error, source = ?std::error::Error::source(&error), "failed to reopen the event output; events go to the old file")
            }
        }
    }

    /// Writes a health event when the kernel or the daemon lost records since the last check.
    fn check_drops(&mut self, kernel: &Counters) {
        let total = kernel.dropped() + self.stats.dropped();
        if total <= self.reported_drops {
            return;
        }
        let since_last = total - self.reported_drops;
        self.reported_drops = total;
        tracing::warn!(
            dropped = since_last,
            total,
            "records were lost; see the health event for the counters"
        );
        let mut event = health_event(Reason::Drops, kernel, &self.stats, Some(since_last), None);
        self.add_export_stats(&mut event);
        self.emit(event);
        self.flush();
    }

    fn report(&mut self, reason: Reason, counters: &aya::maps::PerCpuArray<MapData, u64>) {
        self.sync_tls_stats();
        let kernel = Counters::read(counters);
        let mut event = health_event(reason, &kernel, &self.stats, None, None);
        self.add_export_stats(&mut event);
        self.emit(event);
        self.flush();
    }

    /// Writes a health event with reason `export` when export to the collector starts
    /// failing, when it works again, and when the collector starts rejecting events or the
    /// queue starts dropping them.
    fn check_export(&mut self, counters: &aya::maps::PerCpuArray<MapData, u64>) {
        let Some(exporter) = &self.exporter else {
            return;
        };
        let stats = exporter.stats();
        let previous = self.export_state;
        let losing = stats.rejected + stats.dropped;
        let state = ExportState {
            failing: !stats.connected && stats.failures > 0,
            losing,
            growing: losing > previous.losing,
        };
        self.export_state = state;
        let losses_started = state.growing && !previous.growing;
        if state.failing == previous.failing && !losses_started {
            return;
        }
        self.report(Reason::Export, counters);
    }

    /// Counts an event by name, and a finding by type, for the OTLP metrics.
    fn count_for_metrics(&mut self, event: &Event) {
        // A lookup first: the name is copied only the first time it is counted.
        match self.metrics.events.get_mut(event.name) {
            Some(count) => *count += 1,
            None => {
                self.metrics.events.insert(event.name.to_owned(), 1);
            }
        }
        if event.name == name::FINDING
            && let Some(kind) = attribute_str(event, "credwatch.finding.type")
        {
            *self.metrics.findings.entry(kind.to_owned()).or_default() += 1;
        }
    }

    /// Hands the current counters to the exporter as metrics.
    fn push_metrics(&mut self, counters: &aya::maps::PerCpuArray<MapData, u64>) {
        let Some(exporter) = &self.exporter else {
            return;
        };
        let kernel = Counters::read(counters);
        let export = exporter.stats();
        self.metrics.started.get_or_insert(self.started);
        self.metrics.records_lost = kernel.dropped() + self.stats.dropped();
        self.metrics.queue_depth = export.queued;
        self.metrics.queue_dropped = export.dropped;
        self.metrics.credentials = self.identities.credential_count();
        self.metrics.probes = self.probe_states.clone();
        exporter.push_metrics(&self.metrics);
    }

    /// Adds the exporter's counts to a health event.
    fn add_export_stats(&self, event: &mut Event) {
        let Some(exporter) = &self.exporter else {
            return;
        };
        let stats = exporter.stats();
        event
            .set("credwatch.export.otlp.sent", stats.sent)
            .set("credwatch.export.otlp.queued", stats.queued)
            .set("credwatch.export.otlp.dropped", stats.dropped)
            .set("credwatch.export.otlp.rejected", stats.rejected)
            .set("credwatch.export.otlp.failures", stats.failures)
            .set("credwatch.export.otlp.connected", stats.connected)
            .set_some("credwatch.export.otlp.last_error", stats.last_error);
    }
}

/// Returns a port attribute of an event, or 0 when it is missing.
fn port_attribute(event: &Event, key: &str) -> u16 {
    event
        .attributes
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .and_then(|port| u16::try_from(port).ok())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
fn unix_ms(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// The signals the daemon handles, installed before the probes load so that SIGTERM or SIGINT
/// during start-up leads to a clean stop instead of the default termination.
pub struct Signals {
    sigterm: tokio::signal::unix::Signal,
    sigint: tokio::signal::unix::Signal,
    sigusr1: tokio::signal::unix::Signal,
    sighup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers. Must be called inside a tokio runtime context.
    pub fn install() -> Result<Self, DaemonError> {
        Ok(Self {
            sigterm: install(SignalKind::terminate(), "SIGTERM")?,
            sigint: install(SignalKind::interrupt(), "SIGINT")?,
            sigusr1: install(SignalKind::user_defined1(), "SIGUSR1")?,
            sighup: install(SignalKind::hangup(), "SIGHUP")?,
        })
    }
}

fn install(
    kind: SignalKind,
    name: &'static str,
) -> Result<tokio::signal::unix::Signal, DaemonError> {
    signal(kind).map_err(|source| DaemonError::Signal {
        signal: name,
        source,
    })
}

/// Writes the daemon's pid to a temporary file and renames it, so a watcher never sees a
/// partial file.
fn write_ready_file(path: &Path) -> Result<(), DaemonError> {
    let to_error = |source| DaemonError::ReadyFile {
        path: path.to_path_buf(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    fs::write(&temporary, format!("{}\n", std::process::id())).map_err(to_error)?;
    fs::rename(&temporary, path).map_err(to_error)
}

/// Returns the event's `credwatch.workload.id`, or an empty string when it has none.
/// State of the exporter at the last check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ExportState {
    /// The last request failed.
    failing: bool,
    /// Events rejected by the collector or dropped from the full queue, so far.
    losing: u64,
    /// The losses grew since the check before.
    growing: bool,
}

/// Returns a string attribute of an event.
fn attribute_str<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event
        .attributes
        .get(key)
        .and_then(serde_json::Value::as_str)
}

fn workload_id(event: &Event) -> String {
    event
        .attributes
        .get("credwatch.workload.id")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned()
}
