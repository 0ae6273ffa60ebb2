//! Builds the eBPF programs in `monitor-ebpf` for the BPF target with the nightly toolchain, so
//! that `include_bytes_aligned!` in the sensor can embed them.

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("failed to read the workspace metadata with `cargo metadata`")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|package| package.name.as_str() == "monitor-ebpf")
        .ok_or_else(|| anyhow!("the workspace has no monitor-ebpf package"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", ebpf.manifest_path))?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
