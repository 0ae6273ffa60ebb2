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
    /// `task_struct.fs`, a `struct fs_struct *`.
    pub task_fs: u32,
    /// `task_struct.files`, a `struct files_struct *`.
    pub task_files: u32,
    /// `fs_struct.pwd`, a `struct path`.
    pub fs_pwd: u32,
    /// `files_struct.fdt`, a `struct fdtable *`.
    pub files_fdt: u32,
    /// `fdtable.max_fds`, an `unsigned int`.
    pub fdtable_max_fds: u32,
    /// `fdtable.fd`, a `struct file **`.
    pub fdtable_fd: u32,
    /// `file.f_path`, a `struct path`.
    pub file_path: u32,
    /// `path.mnt`, a `struct vfsmount *`.
    pub path_mnt: u32,
    /// `path.dentry`, a `struct dentry *`.
    pub path_dentry: u32,
    /// `dentry.d_parent`, a `struct dentry *`.
    pub dentry_parent: u32,
    /// `dentry.d_name.name`, a `const unsigned char *`.
    pub dentry_name: u32,
    /// `dentry.d_name.len`, a `u32`.
    pub dentry_name_len: u32,
    /// `vfsmount.mnt_root`, a `struct dentry *`.
    pub vfsmount_root: u32,
    /// `mount.mnt`, the `struct vfsmount` embedded in `struct mount`.
    pub mount_mnt: u32,
    /// `mount.mnt_parent`, a `struct mount *`.
    pub mount_parent: u32,
    /// `mount.mnt_mountpoint`, a `struct dentry *`.
    pub mount_mountpoint: u32,
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
            task_fs: UNKNOWN,
            task_files: UNKNOWN,
            fs_pwd: UNKNOWN,
            files_fdt: UNKNOWN,
            fdtable_max_fds: UNKNOWN,
            fdtable_fd: UNKNOWN,
            file_path: UNKNOWN,
            path_mnt: UNKNOWN,
            path_dentry: UNKNOWN,
            dentry_parent: UNKNOWN,
            dentry_name: UNKNOWN,
            dentry_name_len: UNKNOWN,
            vfsmount_root: UNKNOWN,
            mount_mnt: UNKNOWN,
            mount_parent: UNKNOWN,
            mount_mountpoint: UNKNOWN,
        }
    }

    /// Whether every offset the directory walk needs is known.
    pub const fn can_walk_directories(&self) -> bool {
        let needed = [
            self.task_fs,
            self.task_files,
            self.fs_pwd,
            self.files_fdt,
            self.fdtable_max_fds,
            self.fdtable_fd,
            self.file_path,
            self.path_mnt,
            self.path_dentry,
            self.dentry_parent,
            self.dentry_name,
            self.dentry_name_len,
            self.vfsmount_root,
            self.mount_mnt,
            self.mount_parent,
            self.mount_mountpoint,
        ];
        let mut i = 0;
        while i < needed.len() {
            if needed[i] == UNKNOWN {
                return false;
            }
            i += 1;
        }
        true
    }
}

const _: () = assert!(size_of::<KernelOffsets>() == 96);

#[cfg(feature = "user")]
// SAFETY: KernelOffsets is repr(C), made only of u32 fields and has no padding.
unsafe impl aya::Pod for KernelOffsets {}
