//! TLS through library hooks: finding OpenSSL, BoringSSL and GnuTLS in processes, attaching
//! the uprobes, and turning their calls into `credwatch.tls.handshake` events.

pub mod discovery;
pub mod event;
pub mod hooks;
pub mod library;
pub mod probe_point;
pub mod session;
