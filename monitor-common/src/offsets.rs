//! Kernel struct field offsets that the daemon reads from BTF at start-up.
//!
//! Rust eBPF emits no CO-RE relocations, so the programs cannot let the loader fix field
//! offsets. The daemon resolves them from `/sys/kernel/btf/vmlinux` and the tracepoint format
//! files, and writes them into the `KERNEL_OFFSETS` global before loading the programs.

/// Field offsets, in bytes. An offset of [`UNKNOWN`] disables the read that needs it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.real_parent`, a `struct task_struct *`.
    pub task_real_parent: u32,
    /// `task_struct.tgid`, a `pid_t`.
    pub task_tgid: u32,
    /// `task_struct.mm`, a `struct mm_struct *`.
    pub task_mm: u32,
    /// `task_struct.start_boottime`, nanoseconds since boot including suspend.
    pub task_start_boottime: u32,
    /// `mm_struct.arg_start`, the user address of the first argument string.
    pub mm_arg_start: u32,
    /// `mm_struct.arg_end`, the user address just past the last argument string.
    pub mm_arg_end: u32,
    /// Offset of the `__data_loc char[] filename` field in `sched:sched_process_exec`.
    pub exec_filename_loc: u32,
    /// Offset of the `pid_t pid` field in `sched:sched_process_exec`.
    pub exec_pid: u32,
}

/// Marks an offset the daemon could not resolve.
pub const UNKNOWN: u32 = u32::MAX;

impl KernelOffsets {
    /// Offsets with every field unknown.
    pub const fn unknown() -> Self {
        Self {
            task_real_parent: UNKNOWN,
            task_tgid: UNKNOWN,
            task_mm: UNKNOWN,
            task_start_boottime: UNKNOWN,
            mm_arg_start: UNKNOWN,
            mm_arg_end: UNKNOWN,
            exec_filename_loc: UNKNOWN,
            exec_pid: UNKNOWN,
        }
    }
}

const _: () = assert!(size_of::<KernelOffsets>() == 32);

#[cfg(feature = "user")]
// SAFETY: KernelOffsets is repr(C), made only of u32 fields and has no padding.
unsafe impl aya::Pod for KernelOffsets {}
