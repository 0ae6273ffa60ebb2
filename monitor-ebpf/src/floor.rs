//! Programs that return at once, attached by `cargo xtask bench` to the same tracepoints as
//! credwatch. They measure the cost that any tracepoint-based monitor pays before doing any
//! work, which is the floor credwatch's own cost is compared with.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext,
    helpers::generated,
    macros::{map, tracepoint},
    maps::PerCpuArray,
    programs::TracePointContext,
};
use monitor_common::catalogue::PATH_LEN;

/// Buffer for `floor_read_enter`.
#[map]
static FLOOR_PATH: PerCpuArray<[u8; PATH_LEN]> = PerCpuArray::with_max_entries(1, 0);

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

#[tracepoint]
pub fn floor_exit(_ctx: TracePointContext) -> u32 {
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
