//! Programs that return at once, attached by `cargo xtask bench` to the same hooks as
//! credwatch: the open tracepoints, the connect hooks and the TLS library functions. They
//! measure the cost that any monitor on those hooks pays before doing any work, which is the
//! floor credwatch's own cost is compared with.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext,
    helpers::generated,
    macros::{cgroup_sock_addr, map, tracepoint, uprobe, uretprobe},
    maps::PerCpuArray,
    programs::{ProbeContext, RetProbeContext, SockAddrContext, TracePointContext},
};
use monitor_common::catalogue::PATH_LEN;

/// Buffer for `floor_read_enter`.
#[map]
static FLOOR_PATH: PerCpuArray<[u8; PATH_LEN]> = PerCpuArray::with_max_entries(1, 0);

/// The value a cgroup socket-address program returns to let the call go on.
const ALLOW: i32 = 1;

/// Attached to the `sys_enter_*` open tracepoints and to `sock/inet_sock_set_state`.
#[tracepoint]
pub fn floor_enter(_ctx: TracePointContext) -> u32 {
    0
}

/// Reads the path of `openat` and nothing else: the floor of any monitor that matches paths,
/// because it must read the path from the process's memory.
#[tracepoint]
pub fn floor_read_enter(ctx: TracePointContext) -> u32 {
    let Some(buffer) = FLOOR_PATH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: tracepoint programs may read their context at constant offsets; offset 24 is
    // the filename argument of sys_enter_openat.
    let filename = unsafe { core::ptr::read(ctx.as_ptr().cast::<u8>().add(24).cast::<u64>()) };
    // SAFETY: the helper writes at most PATH_LEN bytes into the per-CPU buffer.
    unsafe {
        generated::bpf_probe_read_user_str(buffer.cast(), PATH_LEN as u32, filename as *const _);
    }
    0
}

/// Attached to the `sys_exit_*` open tracepoints and to `syscalls/sys_exit_connect`.
#[tracepoint]
pub fn floor_exit(_ctx: TracePointContext) -> u32 {
    0
}

/// Attached to the cgroup v2 root, so it runs for every IPv4 connect on the host: it must
/// allow every call and nothing else.
#[cgroup_sock_addr(connect4)]
pub fn floor_connect4(_ctx: SockAddrContext) -> i32 {
    ALLOW
}

/// Allows every IPv6 connect, like `floor_connect4` for IPv4.
#[cgroup_sock_addr(connect6)]
pub fn floor_connect6(_ctx: SockAddrContext) -> i32 {
    ALLOW
}

/// Attached at the entry of each TLS library function credwatch hooks.
#[uprobe]
pub fn floor_uprobe(_ctx: ProbeContext) -> u32 {
    0
}

/// Attached to the return of each TLS library function where credwatch has a return probe.
#[uretprobe]
pub fn floor_uretprobe(_ctx: RetProbeContext) -> u32 {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
