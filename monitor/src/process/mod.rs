//! Processes: the cache that attributes kernel records to executables, command lines and users.

pub mod cache;
pub mod hash;
pub mod procfs;
pub mod redact;
pub mod users;

pub use cache::{ProcessCache, ProcessInfo};
