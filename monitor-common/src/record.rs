//! The header shared by every record in the ring buffer.

/// Record kinds, stored in the first four bytes of every ring-buffer record.
///
/// The numbers are part of the kernel-to-userspace contract: never reuse or renumber one.
pub mod kind {
    /// A matched open, see [`crate::open::OpenRecord`].
    pub const OPEN: u32 = 1;
    /// A successful `execve`, see [`crate::process::ExecRecord`].
    pub const EXEC: u32 = 2;
    /// A thread-group leader exited, see [`crate::process::ExitRecord`].
    pub const EXIT: u32 = 3;
    /// The directory a relative open starts from, see [`crate::directory::DirectoryRecord`].
    pub const DIRECTORY: u32 = 4;
    /// An outbound TCP connection with its outcome, see [`crate::network::ConnectRecord`].
    pub const CONNECT: u32 = 5;
    /// A call of a TLS library function, see [`crate::tls::TlsRecord`].
    pub const TLS: u32 = 6;
}

/// Capacity of the ring buffer in bytes. A power of two and a multiple of the page size, as the
/// kernel requires; 4 MiB holds about 12,000 open records.
pub const RING_BUFFER_BYTES: u32 = 4 * 1024 * 1024;
