//! credwatch: an eBPF runtime monitor for machine credentials.
//!
//! The binary `credwatch` is a thin command-line front end over this library. The modules
//! follow the data flow: [`sensor`] loads the eBPF programs and decodes their records,
//! [`process`] and [`workload`] attribute them, [`credential`] decides what is a credential,
//! [`daemon`] ties them together and [`export`] writes the events.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod credential;
pub mod daemon;
pub mod detect;
pub mod errno;
pub mod export;
pub mod network;
pub mod process;
pub mod sensor;
pub mod store;
pub mod tls;
pub mod workload;
