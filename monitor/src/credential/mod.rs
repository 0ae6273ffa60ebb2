//! Credentials: the catalogue of where they live, path normalisation and matching.

pub mod catalogue;
pub mod kernel_entries;
pub mod normalize;
