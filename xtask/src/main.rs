//! `cargo xtask`: the developer and CI entry points.
//!
//! - `setup`: installs what the eBPF build needs when it is missing.
//! - `build`: release build of the daemon and its programs.
//! - `run [-- ARGS]`: setup, build, then `credwatch run` as root.
//! - `test`: setup, build, unit tests, then the root integration tests.
//! - `bench`: the overhead benchmarks (open, connect, TLS handshake), written to
//!   `docs/benchmarks.md`.

mod bench;
mod setup;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "credwatch developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what is missing: nightly rust-src, LLVM 22 development packages, bpf-linker.
    Setup,
    /// Build the daemon and its eBPF programs in release mode.
    Build,
    /// Set up, build, and run `credwatch run` as root with the given arguments.
    Run {
        /// Arguments passed to `credwatch run`, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build, run the unit tests and then the integration tests that need root.
    Test {
        /// Run only the unit tests, which need no root.
        #[arg(long)]
        unit_only: bool,
        /// Only run tests whose name contains this string.
        filter: Option<String>,
    },
    /// Measure the cost credwatch adds to openat+close, a loopback TCP connect and a TLS
    /// handshake, and write docs/benchmarks.md.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::setup(),
        Command::Build => setup::setup().and_then(|()| util::build_release()),
        Command::Run { args } => run(&args),
        Command::Test { unit_only, filter } => test(unit_only, filter.as_deref()),
        Command::Bench(args) => bench::bench(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<()> {
    setup::setup()?;
    util::build_release()?;
    let binary = util::credwatch_binary()?;
    let mut command = util::as_root(&binary)?;
    command.arg("run").args(args);
    util::step(&format!(
        "starting {} run {}",
        binary.display(),
        args.join(" ")
    ));
    util::exec(command)
}

fn test(unit_only: bool, filter: Option<&str>) -> anyhow::Result<()> {
    setup::setup()?;
    util::step("unit tests");
    let mut unit = util::cargo();
    unit.args([
        "test",
        "--release",
        "--package",
        "monitor",
        "--package",
        "monitor-common",
    ]);
    if let Some(filter) = filter {
        unit.arg(filter);
    }
    util::run_checked(unit)?;
    if unit_only {
        return Ok(());
    }

    anyhow::ensure!(
        util::is_root(),
        "the integration tests load eBPF programs and need root; run `sudo -E cargo xtask test`, \
         or `cargo xtask test --unit-only` for the unit tests alone"
    );
    util::build_release()?;
    util::step("integration tests (root, one at a time)");
    let binary = util::credwatch_binary()?;
    let mut integration = util::cargo();
    integration
        .args(["test", "--release", "--package", "credwatch-tests", "--"])
        .args(["--include-ignored", "--test-threads=1"])
        .env("CREDWATCH_BIN", &binary);
    if let Some(filter) = filter {
        integration.arg(filter);
    }
    util::run_checked(integration)
}
