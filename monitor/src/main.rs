//! The `credwatch` command.

use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use monitor::cli::{Cli, EXIT_USAGE, LogFormat, execute};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(directive) = unknown_directive(&cli.log_level) {
        eprintln!(
            "credwatch: error: invalid --log-level {:?}: {directive:?} is neither a level nor \
             TARGET=LEVEL; use error, warn, info, debug, trace or off",
            cli.log_level
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let filter = match EnvFilter::try_new(&cli.log_level) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!(
                "credwatch: error: invalid --log-level {:?}: {error}; use error, warn, info, debug or trace",
                cli.log_level
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    execute(cli)
}

/// Returns the first comma-separated directive that is neither a level nor `target=level`.
/// `tracing` would read a bare word such as `verbose` as a target name and log nothing.
fn unknown_directive(filter: &str) -> Option<&str> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    filter
        .split(',')
        .map(str::trim)
        .filter(|directive| !directive.is_empty())
        .find(|directive| {
            !directive.contains('=') && !LEVELS.contains(&directive.to_ascii_lowercase().as_str())
        })
}
