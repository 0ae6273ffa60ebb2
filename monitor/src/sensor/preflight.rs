//! Start-up checks that turn a missing privilege or kernel feature into one clear error before
//! anything is loaded.

use std::{fs, io, path::Path};

use aya::maps::MapType;
use thiserror::Error;

use super::btf::VMLINUX_BTF_PATH;

/// Capability numbers from `<linux/capability.h>`.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// A privilege or kernel feature the daemon needs is missing.
#[derive(Debug, Error)]
pub enum PreflightError {
    /// Capabilities are missing.
    #[error(
        "credwatch needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) to load eBPF programs, but \
         the process has {held}; run it as root (user id 0 also needs read access to tracefs, \
         which is mode 0700 on most hosts)"
    )]
    MissingCapabilities {
        /// Capabilities held, as a readable list.
        held: String,
    },
    /// The process status could not be read.
    #[error("failed to read the capabilities of the daemon from /proc/self/status")]
    ReadStatus(#[source] io::Error),
    /// No kernel BTF.
    #[error(
        "the kernel has no BTF at {VMLINUX_BTF_PATH}; credwatch needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (the default on current distribution kernels)"
    )]
    NoBtf,
    /// No BPF ring buffer.
    #[error(
        "the kernel does not support BPF ring buffers (BPF_MAP_TYPE_RINGBUF, Linux 5.8 or later); \
         upgrade the kernel"
    )]
    NoRingBuffer,
    /// The ring-buffer probe itself failed.
    #[error("failed to probe the kernel for BPF ring-buffer support")]
    ProbeRingBuffer(#[source] aya::sys::SyscallError),
}

/// Checks privileges, BTF and ring-buffer support, in that order.
pub fn check() -> Result<(), PreflightError> {
    check_capabilities()?;
    if !Path::new(VMLINUX_BTF_PATH).exists() {
        return Err(PreflightError::NoBtf);
    }
    match aya::sys::is_map_supported(MapType::RingBuf) {
        Ok(true) => Ok(()),
        Ok(false) => Err(PreflightError::NoRingBuffer),
        Err(error) => Err(PreflightError::ProbeRingBuffer(error)),
    }
}

fn check_capabilities() -> Result<(), PreflightError> {
    let status = fs::read_to_string("/proc/self/status").map_err(PreflightError::ReadStatus)?;
    let effective = parse_effective_capabilities(&status).unwrap_or(0);
    if has_bpf_privileges(effective) {
        return Ok(());
    }
    Err(PreflightError::MissingCapabilities {
        held: describe(effective),
    })
}

/// Reads the `CapEff:` bit mask.
pub fn parse_effective_capabilities(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Whether the mask allows loading tracing programs: CAP_SYS_ADMIN alone, or CAP_BPF with
/// CAP_PERFMON (Linux 5.8+).
pub fn has_bpf_privileges(effective: u64) -> bool {
    let has = |cap: u32| effective & (1 << cap) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

fn describe(effective: u64) -> String {
    let names = [
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (CAP_PERFMON, "CAP_PERFMON"),
        (CAP_BPF, "CAP_BPF"),
    ];
    let held: Vec<&str> = names
        .iter()
        .filter(|(cap, _)| effective & (1 << cap) != 0)
        .map(|(_, name)| *name)
        .collect();
    if held.is_empty() {
        "none of them".to_owned()
    } else {
        format!("only {}", held.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_mask_has_privileges() {
        let status = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        assert!(has_bpf_privileges(
            parse_effective_capabilities(status).unwrap()
        ));
    }

    #[test]
    fn bpf_and_perfmon_suffice() {
        assert!(has_bpf_privileges((1 << CAP_BPF) | (1 << CAP_PERFMON)));
        assert!(!has_bpf_privileges(1 << CAP_BPF));
    }

    #[test]
    fn unprivileged_mask_is_described() {
        assert_eq!(
            parse_effective_capabilities("CapEff:\t0000000000000000\n"),
            Some(0)
        );
        assert!(!has_bpf_privileges(0));
        assert_eq!(describe(0), "none of them");
        assert_eq!(describe(1 << CAP_BPF), "only CAP_BPF");
    }
}
