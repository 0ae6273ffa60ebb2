//! Records of the process lifecycle programs, which feed the daemon's process cache.

/// Bytes of the `execve` filename that an [`ExecRecord`] carries.
pub const EXEC_FILENAME_LEN: usize = 256;
/// Bytes of the argument strings that an [`ExecRecord`] carries.
pub const EXEC_ARGS_LEN: usize = 1024;

/// The argument bytes were cut at [`EXEC_ARGS_LEN`].
pub const EXEC_ARGS_TRUNCATED: u32 = 1 << 0;
/// The argument bytes could not be read; the daemon falls back to `/proc/PID/cmdline`.
pub const EXEC_ARGS_MISSING: u32 = 1 << 1;
/// The parent or start time could not be read.
pub const EXEC_TASK_MISSING: u32 = 1 << 2;

/// A successful `execve`, written by the `sched:sched_process_exec` program.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecRecord {
    /// Always [`crate::record::kind::EXEC`].
    pub kind: u32,
    /// Process id after the exec.
    pub pid: u32,
    /// Process id of the parent (`real_parent->tgid`), 0 when unknown.
    pub ppid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Bytes of `filename` in use, without the terminating NUL.
    pub filename_len: u32,
    /// Bytes of `args` in use.
    pub args_len: u32,
    /// [`EXEC_ARGS_TRUNCATED`], [`EXEC_ARGS_MISSING`], [`EXEC_TASK_MISSING`].
    pub flags: u32,
    /// Process start time (`task_struct.start_boottime`), nanoseconds since boot; 0 when unknown.
    pub start_boot_ns: u64,
    /// Time of the exec, nanoseconds since boot.
    pub boot_ns: u64,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// The file name passed to `execve` as the kernel resolved it (`bprm->filename`).
    pub filename: [u8; EXEC_FILENAME_LEN],
    /// The NUL-separated argument strings, as in `/proc/PID/cmdline`.
    pub args: [u8; EXEC_ARGS_LEN],
}

const _: () = assert!(size_of::<ExecRecord>() == 56 + EXEC_FILENAME_LEN + EXEC_ARGS_LEN);
const _: () = assert!(align_of::<ExecRecord>() == 8);

/// A thread-group leader exited, written by the `sched:sched_process_exit` program.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExitRecord {
    /// Always [`crate::record::kind::EXIT`].
    pub kind: u32,
    /// Process id.
    pub pid: u32,
    /// Time of the exit, nanoseconds since boot.
    pub boot_ns: u64,
}

const _: () = assert!(size_of::<ExitRecord>() == 16);
