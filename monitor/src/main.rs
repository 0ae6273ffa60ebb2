//! The `credwatch` command.

use std::process::ExitCode;

use clap::Parser as _;
use monitor::cli::{Cli, EXIT_USAGE, LogFormat, execute};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    execute(cli)
}
