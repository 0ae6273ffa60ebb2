//! The daemon: reads records, keeps the process cache, writes events, reports health, and
//! stops cleanly on SIGINT or SIGTERM.

pub mod access;
pub mod directories;
pub mod health;

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use thiserror::Error;
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    time::{MissedTickBehavior, interval},
};

use self::{
    access::{Context, Skipped, access_event},
    directories::PendingDirectories,
    health::{DaemonStats, Reason, health_event},
};
use crate::{
    clock::BootClock,
    config::HealthConfig,
    credential::catalogue::Catalogue,
    export::{Event, JsonLinesSink},
    process::{ProcessCache, users::UserNames},
    sensor::{
        Sensor,
        counters::Counters,
        decode::{Record, decode},
    },
    workload::cgroup::CgroupResolver,
};

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
    /// Set when the event output was closed by its reader.
    output_closed: bool,
    /// Total drops at the last check, kernel and daemon.
    reported_drops: u64,
}

impl Daemon {
    /// A daemon that writes to `sink`.
    pub fn new(catalogue: Catalogue, sink: JsonLinesSink) -> Self {
        Self {
            catalogue,
            sink,
            processes: ProcessCache::new(),
            users: UserNames::new("/etc/passwd"),
            cgroups: CgroupResolver::discover(),
            clock: BootClock::now(),
            stats: DaemonStats::default(),
            directories: PendingDirectories::default(),
            output_closed: false,
            reported_drops: 0,
        }
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
            ebpf,
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
        let kernel = Counters::read(&counters);
        self.emit(health_event(
            Reason::Start,
            &kernel,
            &self.stats,
            None,
            Some(&probes),
        ));
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

        let stop_signal = loop {
            if self.output_closed {
                break "closed output";
            }
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = guard.map_err(DaemonError::Poll)?;
                    self.drain(guard.get_inner_mut());
                    guard.clear_ready();
                    self.flush();
                }
                _ = drop_check.tick() => self.check_drops(&Counters::read(&counters)),
                _ = report.tick(), if !report_every.is_zero() => self.report(Reason::Interval, &counters),
                _ = sigusr1.recv() => self.report(Reason::Requested, &counters),
                _ = sighup.recv() => self.reopen(),
                _ = sigterm.recv() => break "SIGTERM",
                _ = sigint.recv() => break "SIGINT",
            }
        };

        tracing::info!(signal = stop_signal, "stopping");
        self.drain(ring.get_mut());
        self.check_drops(&Counters::read(&counters));
        self.report(Reason::Stop, &counters);
        drop(ebpf);
        if let Some(path) = &options.ready_file {
            let _ = fs::remove_file(path);
        }
        tracing::info!(events = self.stats.events_written, "stopped");
        if self.output_closed {
            return Err(DaemonError::OutputClosed(self.sink.target().to_owned()));
        }
        Ok(())
    }

    fn drain(&mut self, ring: &mut RingBuf<MapData>) {
        while let Some(item) = ring.next() {
            self.stats.records_received += 1;
            match decode(&item) {
                Ok(record) => self.handle(record),
                Err(error) => {
                    self.stats.records_malformed += 1;
                    tracing::warn!(%error, "dropped a malformed kernel record");
                }
            }
        }
    }

    fn handle(&mut self, record: Record) {
        match record {
            Record::Directory(directory) => self.directories.remember(directory),
            Record::Exec(exec) => {
                self.processes.exec(&exec);
            }
            Record::Exit(exit) => self.processes.exit(exit.pid),
            Record::Open(open) => {
                let directory = self.directories.take(open.tid);
                let process = self.processes.get_or_load(open.pid);
                let mut context = Context {
                    catalogue: &self.catalogue,
                    clock: &self.clock,
                    users: &mut self.users,
                    cgroups: &mut self.cgroups,
                };
                match access_event(&open, directory.as_deref(), &process, &mut context) {
                    Ok(event) => self.emit(event),
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

    fn emit(&mut self, event: Event) {
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
        self.emit(health_event(
            Reason::Drops,
            kernel,
            &self.stats,
            Some(since_last),
            None,
        ));
        self.flush();
    }

    fn report(&mut self, reason: Reason, counters: &aya::maps::PerCpuArray<MapData, u64>) {
        let kernel = Counters::read(counters);
        self.emit(health_event(reason, &kernel, &self.stats, None, None));
        self.flush();
    }
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
