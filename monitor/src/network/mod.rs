//! Outbound connections: the `credwatch.network.connect` event and the exclusion settings.

pub mod cidr;
pub mod event;
