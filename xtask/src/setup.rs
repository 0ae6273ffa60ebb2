//! `cargo xtask setup`: checks each build prerequisite and each program the integration tests
//! run, and installs the missing ones.
//!
//! Idempotent: when everything is present it only runs a few version queries.

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::util::{is_root, output_of, run_checked, step};

/// Where Debian's and Ubuntu's `llvm-22-dev` installs LLVM.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// Debian packages bpf-linker links against.
const LLVM_PACKAGES: [&str; 3] = ["llvm-22-dev", "libpolly-22-dev", "libzstd-dev"];
/// bpf-linker release line that works with LLVM 22 and the pinned aya crates.
const BPF_LINKER_VERSION: &str = "0.13";
/// Files the integration tests need, each with the Debian package that installs it: the
/// clients and servers they run, and the compiler and static OpenSSL for the test program
/// that links OpenSSL into its executable.
const TEST_TOOLS: [(&str, &str); 7] = [
    ("/usr/bin/curl", "curl"),
    ("/usr/bin/wget", "wget"),
    ("/usr/bin/openssl", "openssl"),
    ("/usr/bin/python3", "python3"),
    ("/usr/bin/gnutls-cli", "gnutls-bin"),
    ("/usr/bin/gcc", "gcc"),
    ("/usr/include/openssl/ssl.h", "libssl-dev"),
];

/// Installs what is missing, in dependency order.
pub fn setup() -> anyhow::Result<()> {
    ensure_nightly_rust_src()?;
    ensure_llvm()?;
    ensure_bpf_linker()?;
    ensure_test_tools()?;
    Ok(())
}

fn ensure_nightly_rust_src() -> anyhow::Result<()> {
    let toolchains = output_of(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is required to build the eBPF programs with the nightly toolchain")?;
    if !toolchains.lines().any(|line| line.starts_with("nightly")) {
        step("installing the nightly Rust toolchain");
        run_checked(rustup(&[
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let components = output_of(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .unwrap_or_default();
    if !components.lines().any(|line| line.starts_with("rust-src")) {
        step("installing rust-src for the nightly toolchain");
        run_checked(rustup(&[
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

fn rustup(args: &[&str]) -> Command {
    let mut command = Command::new("rustup");
    command.args(args);
    command
}

fn llvm_present() -> bool {
    let prefix = Path::new(LLVM_PREFIX);
    prefix.join("bin/llvm-config").exists()
        && prefix.join("lib/libPolly.a").exists()
        && Path::new("/usr/include/zstd.h").exists()
}

fn ensure_llvm() -> anyhow::Result<()> {
    if llvm_present() {
        return Ok(());
    }
    let install = format!("apt-get install -y {}", LLVM_PACKAGES.join(" "));
    let has_apt = Path::new("/usr/bin/apt-get").exists();
    if !is_root() || !has_apt {
        bail!(
            "LLVM 22 development files are missing in {LLVM_PREFIX}; on Debian or Ubuntu run \
             `sudo apt-get update && sudo {install}`, then run `cargo xtask setup` again"
        );
    }
    step(&format!(
        "installing LLVM 22 development packages: {}",
        LLVM_PACKAGES.join(" ")
    ));
    run_checked(apt(&["update"]))?;
    let mut command = apt(&["install", "-y"]);
    command.args(LLVM_PACKAGES);
    run_checked(command)?;
    anyhow::ensure!(
        llvm_present(),
        "{install} finished but {LLVM_PREFIX} is still incomplete"
    );
    Ok(())
}

/// Installs the packages of the programs the integration tests run. Only root can run those
/// tests, so without root or apt-get a missing program is a warning with the command to run.
fn ensure_test_tools() -> anyhow::Result<()> {
    let missing: Vec<&str> = TEST_TOOLS
        .iter()
        .filter(|(program, _)| !Path::new(program).exists())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }

    let install = format!("apt-get install -y {}", missing.join(" "));
    let has_apt = Path::new("/usr/bin/apt-get").exists();
    if !is_root() || !has_apt {
        eprintln!(
            "xtask: warning: the integration tests need the packages {}; on Debian or Ubuntu \
             run `sudo apt-get update && sudo {install}`",
            missing.join(" ")
        );
        return Ok(());
    }

    step(&format!(
        "installing the programs the integration tests run: {}",
        missing.join(" ")
    ));
    run_checked(apt(&["update"]))?;
    let mut command = apt(&["install", "-y"]);
    command.args(&missing);
    run_checked(command)?;

    let still_missing: Vec<&str> = TEST_TOOLS
        .iter()
        .filter(|(program, _)| !Path::new(program).exists())
        .map(|(program, _)| *program)
        .collect();
    anyhow::ensure!(
        still_missing.is_empty(),
        "{install} finished but these programs are still missing: {}",
        still_missing.join(", ")
    );
    Ok(())
}

fn apt(args: &[&str]) -> Command {
    let mut command = Command::new("apt-get");
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    command
}

fn bpf_linker_version() -> Option<String> {
    let output = output_of(Command::new("bpf-linker").arg("--version"))?;
    output.split_whitespace().nth(1).map(str::to_owned)
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    let wanted = format!("{BPF_LINKER_VERSION}.");
    if let Some(version) = bpf_linker_version() {
        if version.starts_with(&wanted) {
            return Ok(());
        }
        step(&format!(
            "bpf-linker {version} found, replacing it with {BPF_LINKER_VERSION}"
        ));
    }
    step(&format!(
        "building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (a few minutes, once)"
    ));
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .args(["install", "bpf-linker", "--force", "--version"])
        .arg(format!("^{BPF_LINKER_VERSION}"))
        .args(["--no-default-features", "--features", "llvm-22"])
        .env("LLVM_PREFIX", LLVM_PREFIX);
    run_checked(command)?;
    match bpf_linker_version() {
        Some(version) if version.starts_with(&wanted) => Ok(()),
        _ => bail!(
            "bpf-linker was installed but `bpf-linker --version` does not report {BPF_LINKER_VERSION}; \
             check that ~/.cargo/bin is on PATH"
        ),
    }
}
