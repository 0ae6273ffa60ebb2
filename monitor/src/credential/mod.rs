//! Credentials: the catalogue of where they live, path normalisation and matching.

pub mod catalogue;
pub mod fingerprint;
pub mod identify;
pub mod kernel_entries;
pub mod keys;
pub mod normalize;
pub mod patterns;
pub mod reader;
