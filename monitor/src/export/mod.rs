//! Export: the event model and the sinks that write it.

pub mod event;
pub mod json;
pub mod otlp;

pub use event::{Event, Resource, Severity};
pub use json::JsonLinesSink;
