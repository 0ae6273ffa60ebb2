//! Library target of the eBPF crate. It holds no code: it exists so that `monitor` can declare
//! a build dependency on this crate and be rebuilt when the programs change.
#![no_std]
