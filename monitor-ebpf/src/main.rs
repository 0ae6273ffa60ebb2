//! credwatch eBPF programs.
//!
//! Every program is a thin entry point that calls a `try_` function and turns its result into
//! the value the kernel expects. Failures are counted in the per-CPU `COUNTERS` map, which the
//! daemon reads and reports; nothing is printed from the kernel.
#![no_std]
#![no_main]
// For `atomic_xadd`: the BPF target has no compare-and-swap, so core's atomics lack fetch_add.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod connect;
mod directory;
mod maps;
mod open;
mod process;
mod tls;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects programs with a reachable infinite loop, so a build that leaves a
    // panic path in a program fails at load time instead of hanging a CPU.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
