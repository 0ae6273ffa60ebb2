//! Programs that return at once, attached by `cargo xtask bench` to the same tracepoints as
//! credwatch. They measure the cost that any tracepoint-based monitor pays before doing any
//! work, which is the floor credwatch's own cost is compared with.
#![no_std]
#![no_main]

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

#[tracepoint]
pub fn floor_enter(_ctx: TracePointContext) -> u32 {
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
