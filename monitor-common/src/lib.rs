//! Records and map types shared by the eBPF programs (`monitor-ebpf`) and the daemon (`monitor`).
//!
//! Every type that crosses the kernel boundary is `#[repr(C)]` with explicit padding and a
//! compile-time size check, so both sides agree on the layout byte for byte. The daemon never
//! transmutes kernel bytes into these types: it decodes them field by field and validates every
//! enum value and length (see `monitor::sensor::decode`).
#![no_std]

pub mod catalogue;
pub mod counters;
pub mod directory;
pub mod network;
pub mod offsets;
pub mod open;
pub mod process;
pub mod record;
pub mod tls;
