//! Helpers for running commands and locating the workspace.

use std::{
    env,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// Prints a progress line.
pub fn step(message: &str) {
    eprintln!("==> {message}");
}

/// Returns the workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Builds a `cargo` command in the workspace root, using the cargo that runs xtask.
pub fn cargo() -> Command {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root());
    command
}

/// Runs a command and fails when it does not exit 0.
pub fn run_checked(mut command: Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("failed to start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

/// Runs a command and returns its standard output when it exits 0.
pub fn output_of(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Replaces this process with the command.
pub fn exec(mut command: Command) -> anyhow::Result<()> {
    let error = command.exec();
    Err(error).with_context(|| format!("failed to start {command:?}"))
}

/// Returns whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Builds a command that runs `program` as root: directly when already root, else through `sudo -E`.
pub fn as_root(program: &Path) -> anyhow::Result<Command> {
    if is_root() {
        return Ok(Command::new(program));
    }
    if output_of(Command::new("sudo").arg("--version")).is_none() {
        bail!(
            "credwatch needs root to load eBPF programs, and sudo is not available; run this command as root"
        );
    }
    let mut command = Command::new("sudo");
    command.arg("-E").arg(program);
    Ok(command)
}

/// Release build of the daemon, which builds the eBPF programs through its build script.
pub fn build_release() -> anyhow::Result<()> {
    step("building credwatch (release)");
    let mut command = cargo();
    command.args(["build", "--release", "--package", "monitor"]);
    run_checked(command)
}

/// Path of the release `credwatch` binary.
pub fn credwatch_binary() -> anyhow::Result<PathBuf> {
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let binary = target.join("release").join("credwatch");
    anyhow::ensure!(
        binary.exists(),
        "{} does not exist; run `cargo xtask build`",
        binary.display()
    );
    Ok(binary)
}
