//! Command-line interface: argument parsing and the subcommands.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

mod baseline;
mod inventory;

use crate::{
    config::{Config, ConfigError},
    credential::{catalogue::Catalogue, keys},
    daemon::{Daemon, RunOptions, Signals, identity::Identities},
    export::{
        JsonLinesSink, Resource,
        json::Rotation,
        otlp::{self, Exporter, OtlpSettings},
    },
    sensor::{self, Sensor},
    store::Store,
    workload::kubelet::Kubelet,
};

/// Exit code for invalid usage or configuration.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a failure at run time, including missing privileges or kernel features.
pub const EXIT_FAILURE: u8 = 1;

/// credwatch: watch which processes read machine credentials, and report it as OpenTelemetry
/// audit events.
#[derive(Debug, Parser)]
#[command(name = "credwatch", version, about, long_about = None)]
pub struct Cli {
    /// Log filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or `tracing` directives
    /// such as `info,monitor::sensor=debug`.
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
    /// Log line format, written to standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Output formats of the inspection commands.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// A table for people.
    Text,
    /// JSON for scripts.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the probes and write events until SIGINT or SIGTERM (needs root with CAP_BPF and
    /// CAP_PERFMON).
    Run(RunArgs),
    /// Print the effective credential catalogue (built-in entries plus the configuration).
    Catalogue {
        /// Configuration file (YAML).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print the credential inventory kept in the state directory: each credential with its
    /// type, native id, expiry, consumers, last use and use count.
    Inventory {
        /// State directory of the daemon.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = InventoryFormat::Table)]
        format: InventoryFormat,
        /// Show only credentials not used for at least DAYS days, such as 30, 45 or 90: the
        /// credentials to revoke or the mounts to remove.
        #[arg(long, value_name = "DAYS")]
        stale: Option<u32>,
    },
    /// Export or import the learnt baselines (consumers and destinations per credential), so
    /// that a team can review and pin them.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Validate a configuration file and exit 0 when it is valid, 2 when not.
    CheckConfig {
        /// Configuration file (YAML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Attach programs that return at once to the hooks credwatch uses, for `cargo xtask
    /// bench`, and keep them attached until SIGINT or SIGTERM.
    #[command(hide = true)]
    Floor {
        /// File written once the programs are attached.
        #[arg(long, value_name = "PATH")]
        ready_file: PathBuf,
        /// The set of credwatch hooks to attach to.
        #[arg(long, value_enum, default_value_t = FloorHooks::Open)]
        hooks: FloorHooks,
        /// Read the openat path in the enter program instead of returning at once (with
        /// `--hooks open` only).
        #[arg(long)]
        read_path: bool,
    },
}

/// Subcommands of `credwatch baseline`.
#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Write every baseline as a JSON document.
    Export {
        /// State directory of the daemon.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// File to write, or `-` for standard output.
        #[arg(long, short, value_name = "FILE", default_value = "-")]
        output: PathBuf,
    },
    /// Read a JSON document written by `export` (edited or not) and pin its baselines: the
    /// daemon then treats them as frozen and never changes them. Exits 2 when the document is
    /// invalid.
    Import {
        /// State directory of the daemon.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Document to read, or `-` for standard input.
        #[arg(value_name = "FILE")]
        input: PathBuf,
        /// Create the state database when it does not exist yet, to pin baselines before the
        /// daemon first runs.
        #[arg(long)]
        create: bool,
    },
}

/// Output formats of `credwatch inventory`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum InventoryFormat {
    /// A table for people.
    #[value(alias = "text")]
    Table,
    /// JSON for scripts.
    Json,
}

/// State directory of the daemon when `--state-dir` is not given.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/credwatch";

/// The hooks of `credwatch floor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FloorHooks {
    /// The open and openat tracepoints.
    Open,
    /// The cgroup connect programs and the connect outcome tracepoints.
    Connect,
    /// The uprobes on the host's TLS libraries.
    Tls,
}

/// Options of `credwatch run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (YAML); without it the embedded defaults apply.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write events as JSON lines to this file (appending) instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub json_file: Option<PathBuf>,
    /// Rotate the --json-file once it reaches this many MiB: it becomes PATH.1, the older
    /// PATH.1 becomes PATH.2, and so on. 0 turns rotation off.
    #[arg(long, value_name = "MIB", default_value_t = 0, requires = "json_file")]
    pub json_max_mb: u64,
    /// Rotated event files kept (PATH.1 to PATH.N).
    #[arg(long, value_name = "N", default_value_t = 5, requires = "json_file")]
    pub json_keep: u32,
    /// Write the daemon's pid to this file once every probe is attached, and remove it at exit.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Directory for the credential inventory (state.db), the install key and the OTLP export
    /// queue, created with mode 0700 when missing.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

/// Runs a parsed command and returns the process exit code.
pub fn execute(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(args) => run(args),
        Command::Catalogue { config, format } => catalogue(config.as_deref(), format),
        Command::Inventory {
            state_dir,
            format,
            stale,
        } => inventory::print(&state_dir, format, stale),
        Command::Baseline(BaselineCommand::Export { state_dir, output }) => {
            baseline::export(&state_dir, &output)
        }
        Command::Baseline(BaselineCommand::Import {
            state_dir,
            input,
            create,
        }) => baseline::import(&state_dir, &input, create),
        Command::CheckConfig { config } => check_config(&config),
        Command::Floor {
            ready_file,
            hooks,
            read_path,
        } => floor(&ready_file, hooks, read_path),
    }
}

fn load_config(path: Option<&Path>) -> Result<Config, ConfigError> {
    match path {
        Some(path) => Config::load(path),
        None => Ok(Config::default()),
    }
}

fn load_catalogue(path: Option<&Path>) -> Result<(Config, Catalogue), ConfigError> {
    let config = load_config(path)?;
    let catalogue = Catalogue::from_config(&config.catalogue)?;
    Ok((config, catalogue))
}

fn run(args: RunArgs) -> ExitCode {
    let (config, catalogue) = match load_catalogue(args.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(error) => return report(&error, EXIT_USAGE),
    };
    if let Err(error) = sensor::preflight::check() {
        return report(&error, EXIT_FAILURE);
    }
    let otlp = match OtlpSettings::resolve(&config.otlp, |name| std::env::var(name).ok()) {
        Ok(otlp) => otlp,
        Err(error) => return report(&error, EXIT_USAGE),
    };
    let identities = match open_identities(&args.state_dir, &config) {
        Ok(identities) => identities,
        Err(code) => return code,
    };
    let mut resource = Resource::detect();
    if let Some(settings) = &otlp {
        // The JSON lines carry the same resource as the OTLP records.
        for (name, value) in &settings.resource {
            resource
                .attributes
                .insert(name.clone(), serde_json::Value::String(value.clone()));
        }
    }
    let exporter = match otlp {
        Some(settings) => match Exporter::start(settings, &resource, &args.state_dir) {
            Ok(exporter) => Some(exporter),
            Err(message) => {
                eprintln!("credwatch: error: {message}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => None,
    };
    let sink = match &args.json_file {
        Some(path) => match JsonLinesSink::file(path, resource) {
            Ok(sink) if args.json_max_mb > 0 => sink.with_rotation(Rotation {
                max_bytes: args.json_max_mb.saturating_mul(1024 * 1024),
                keep: args.json_keep,
            }),
            Ok(sink) => sink,
            Err(error) => return report(&error, EXIT_FAILURE),
        },
        None => JsonLinesSink::stdout(resource),
    };

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return report(&error, EXIT_FAILURE),
    };
    let signals = {
        let _context = runtime.enter();
        match Signals::install() {
            Ok(signals) => signals,
            Err(error) => return report(&error, EXIT_FAILURE),
        }
    };
    let sensor_options = sensor::SensorOptions {
        network: &config.network,
        tls: &config.tls,
    };
    let sensor = match Sensor::start(&catalogue, std::process::id(), &sensor_options) {
        Ok(sensor) => sensor,
        Err(error) => return report(&error, EXIT_FAILURE),
    };
    let options = RunOptions {
        ready_file: args.ready_file,
        health: config.health,
        tls: config.tls,
    };
    // Baselines get their own connection to the state database, which WAL mode allows.
    let baseline_store = match Store::open(&args.state_dir) {
        Ok(store) => store,
        Err(error) => return report(&error, EXIT_FAILURE),
    };
    let mut daemon = Daemon::new(catalogue, sink, identities, &config.kubernetes)
        .with_detection(config.detection.clone(), Some(baseline_store));
    if let Some(exporter) = exporter {
        daemon = daemon.with_exporter(exporter);
    }
    if let Some(address) = &config.kubernetes.kubelet_address {
        match Kubelet::start(address, &config.kubernetes) {
            Ok(kubelet) => daemon = daemon.with_kubelet(kubelet),
            Err(message) => {
                eprintln!("credwatch: error: {message}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    match runtime.block_on(daemon.run(sensor, signals, options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&error, EXIT_FAILURE),
    }
}

/// Loads the credential key and opens the state database, or reports why not.
fn open_identities(state_dir: &Path, config: &Config) -> Result<Identities, ExitCode> {
    let fleet_key_file = config.credentials.fleet_key_file.as_deref();
    let key =
        keys::load_key(fleet_key_file, state_dir).map_err(|error| report(&error, EXIT_FAILURE))?;
    let mut store = Store::open(state_dir).map_err(|error| report(&error, EXIT_FAILURE))?;
    match store.replace_key_check(&key.check_value()) {
        Ok(None) => {}
        Ok(Some(_)) => tracing::warn!(
            database = %store.path().display(),
            "the credential key differs from the one this inventory was written with (a fleet \
             key was added, removed or changed); credentials get new ids from now on, listed \
             next to the old ones"
        ),
        Err(error) => return Err(report(&error, EXIT_FAILURE)),
    }
    tracing::info!(
        database = %store.path().display(),
        fleet_key = fleet_key_file.is_some(),
        "opened the credential inventory"
    );
    Ok(Identities::new(key, store))
}

fn catalogue(config: Option<&Path>, format: Format) -> ExitCode {
    let catalogue = match load_catalogue(config) {
        Ok((_, catalogue)) => catalogue,
        Err(error) => return report(&error, EXIT_USAGE),
    };
    match format {
        Format::Json => {
            let entries: Vec<_> = catalogue
                .entries()
                .iter()
                .map(|entry| {
                    json!({
                        "id": entry.id,
                        "type": entry.credential_type,
                        "builtin": entry.builtin,
                        "description": entry.description,
                        "paths": entry.paths,
                        "directories": entry.directories,
                        "suffixes": entry.suffixes,
                        "basenames": entry.basenames,
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(entries));
        }
        Format::Text => {
            for entry in catalogue.entries() {
                print_entry(entry);
            }
        }
    }
    ExitCode::SUCCESS
}

/// Prints one entry as a block: id and type, description, then one line per pattern kind.
fn print_entry(entry: &crate::credential::catalogue::Entry) {
    let origin = if entry.builtin {
        "built-in"
    } else {
        "configured"
    };
    println!("{} ({}, type {})", entry.id, origin, entry.credential_type);
    if let Some(description) = &entry.description {
        println!("  {description}");
    }
    let kinds = [
        ("paths", &entry.paths),
        ("directories", &entry.directories),
        ("suffixes", &entry.suffixes),
        ("basenames", &entry.basenames),
    ];
    for (kind, patterns) in kinds {
        if !patterns.is_empty() {
            println!("  {kind:<12} {}", patterns.join(" "));
        }
    }
    println!();
}

fn check_config(path: &Path) -> ExitCode {
    match load_catalogue(Some(path)) {
        Ok((config, catalogue)) => {
            if let Some(fleet_key_file) = &config.credentials.fleet_key_file
                && let Err(error) = keys::check_fleet_key(fleet_key_file)
            {
                return report(&error, EXIT_USAGE);
            }
            let export = match OtlpSettings::resolve(&config.otlp, |name| std::env::var(name).ok())
            {
                Ok(Some(settings)) => {
                    if let Err(message) = otlp::transport::Transport::new(&settings) {
                        eprintln!("credwatch: error: {message}");
                        return ExitCode::from(EXIT_USAGE);
                    }
                    format!(
                        "OTLP export to {} over {:?}",
                        settings.endpoint, settings.protocol
                    )
                }
                Ok(None) => "no OTLP export".to_owned(),
                Err(error) => return report(&error, EXIT_USAGE),
            };
            println!(
                "{}: valid, {} catalogue entries, {export}",
                path.display(),
                catalogue.entries().len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => report(&error, EXIT_USAGE),
    }
}

fn floor(ready_file: &Path, hooks: FloorHooks, read_path: bool) -> ExitCode {
    if read_path && hooks != FloorHooks::Open {
        eprintln!("credwatch: error: --read-path works only with --hooks open; drop one of them");
        return ExitCode::from(EXIT_USAGE);
    }
    let started = match hooks {
        FloorHooks::Open => sensor::floor::start_floor(read_path).map_err(Into::into),
        FloorHooks::Connect => sensor::floor::start_connect_floor(),
        FloorHooks::Tls => sensor::floor::start_tls_floor().map(|(ebpf, _)| ebpf),
    };
    let ebpf = match started {
        Ok(ebpf) => ebpf,
        Err(error) => return report(&error, EXIT_FAILURE),
    };
    if let Err(error) = std::fs::write(ready_file, format!("{}\n", std::process::id())) {
        return report(&error, EXIT_FAILURE);
    }
    let mut signals = libc_sigset();
    wait_for_stop(&mut signals);
    drop(ebpf);
    let _ = std::fs::remove_file(ready_file);
    ExitCode::SUCCESS
}

fn libc_sigset() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t and the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    set
}

fn wait_for_stop(set: &mut libc::sigset_t) {
    let mut signal = 0;
    // SAFETY: `set` holds the blocked SIGTERM and SIGINT, and `signal` is a valid out pointer.
    unsafe { libc::sigwait(set, &mut signal) };
}

/// Prints an error with its causes to standard error and returns the exit code.
pub fn report(error: &dyn std::error::Error, code: u8) -> ExitCode {
    let mut message = format!("credwatch: error: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("{message}");
    tracing::debug!(%message, "exiting with an error");
    ExitCode::from(code)
}
