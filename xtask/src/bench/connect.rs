//! The connect loop: what credwatch adds to a TCP connect to a listener on 127.0.0.1 and the
//! close after it.
//!
//! The loop runs on CPU 0 in the benchmark's own thread. A connect completes without the
//! listener calling `accept`, because the kernel completes the handshake and queues the
//! connection. The queue is emptied between batches, outside the timed part. Each
//! socket is closed with a reset (`SO_LINGER` with a zero timeout), so that no socket is left
//! in `TIME_WAIT` to use up the local ports.

use std::{
    fmt::Write as _,
    io::ErrorKind,
    net::{Ipv4Addr, SocketAddrV4, TcpListener},
    os::fd::AsRawFd as _,
    time::Instant,
};

use anyhow::{Context as _, bail};

use super::{
    BATCHES, Bench, CREDWATCH, Condition, Measurement, Monitor, NO_MONITOR, pinned, with_monitor,
};

const CONDITIONS: [Condition; 3] = [
    NO_MONITOR,
    Condition {
        label: "empty programs (floor)",
        short: "floor",
        monitor: &["floor", "--hooks", "connect"],
    },
    CREDWATCH,
];

/// Runs the connect loop and returns its section of docs/benchmarks.md.
pub(super) fn run(bench: &Bench, connects: u64) -> anyhow::Result<String> {
    let per_batch = (connects / BATCHES).max(1);
    let listener = Listener::start(per_batch)?;
    let samples = super::run_rounds(bench, "connect", &CONDITIONS, (1000.0, "µs"), |condition| {
        with_monitor(bench, condition, |monitor| {
            measure(&listener, per_batch, monitor)
        })
    })?;
    Ok(section(bench.rounds, per_batch, &samples))
}

/// A listening socket on 127.0.0.1 whose queue has room for a whole batch of connections.
struct Listener {
    socket: TcpListener,
    address: libc::sockaddr_in,
}

impl Listener {
    fn start(per_batch: u64) -> anyhow::Result<Self> {
        let socket = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .context("failed to listen on 127.0.0.1")?;
        socket.set_nonblocking(true)?;

        // The kernel caps the queue at net.core.somaxconn. A full queue drops the handshake,
        // and the connect then waits a second for its retry.
        let limit: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(128);
        if per_batch >= limit {
            bail!(
                "a batch of {per_batch} connects does not fit in the listen queue \
                 (net.core.somaxconn is {limit}); lower --connects below {}",
                limit * BATCHES
            );
        }
        let backlog = i32::try_from(limit).unwrap_or(i32::MAX);
        // SAFETY: the descriptor is the listening socket this struct owns; listen on a
        // listening socket only changes its queue length.
        if unsafe { libc::listen(socket.as_raw_fd(), backlog) } != 0 {
            bail!(
                "failed to enlarge the listen queue: {}",
                std::io::Error::last_os_error()
            );
        }

        let port = socket.local_addr()?.port();
        let address = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        Ok(Self { socket, address })
    }

    /// Accepts and closes every queued connection.
    fn drain(&self) -> anyhow::Result<()> {
        loop {
            match self.socket.accept() {
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(error) if error.kind() == ErrorKind::ConnectionAborted => {}
                Err(error) => return Err(error).context("accept on the benchmark listener"),
            }
        }
    }
}

/// Nanoseconds per connect + close, measured on CPU 0, and the monitor's CPU time per
/// connect during the batches.
fn measure(
    listener: &Listener,
    per_batch: u64,
    monitor: Option<&Monitor>,
) -> anyhow::Result<Measurement> {
    pinned(|| {
        // Warm up caches and the monitor's maps, then start from an empty queue.
        connect_loop(listener, per_batch)?;
        listener.drain()?;
        let cpu_before = monitor.map(Monitor::cpu_ns).transpose()?;
        let ns = super::fastest_batch(|| {
            let started = Instant::now();
            connect_loop(listener, per_batch)?;
            let ns = started.elapsed().as_nanos() as f64 / per_batch as f64;
            listener.drain()?;
            Ok(ns)
        })?;
        let monitor_cpu_ns = match (monitor, cpu_before) {
            (Some(monitor), Some(before)) => {
                let used = monitor.cpu_ns()?.saturating_sub(before);
                Some(used as f64 / (per_batch * BATCHES) as f64)
            }
            _ => None,
        };
        Ok(Measurement { ns, monitor_cpu_ns })
    })
}

fn connect_loop(listener: &Listener, iterations: u64) -> anyhow::Result<()> {
    let reset_on_close = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    for _ in 0..iterations {
        // SAFETY: socket takes no pointers; the descriptor is closed below on every path.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            bail!("socket failed: {}", std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is the socket just created; the option value and the address are
        // valid for the sizes passed with them.
        let result = unsafe {
            let linger = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const reset_on_close).cast(),
                size_of::<libc::linger>() as libc::socklen_t,
            );
            if linger == 0 {
                libc::connect(
                    fd,
                    (&raw const listener.address).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            } else {
                linger
            }
        };
        let error = std::io::Error::last_os_error();
        // SAFETY: `fd` was created by this iteration and is closed exactly once.
        unsafe { libc::close(fd) };
        if result != 0 {
            bail!("connect to the benchmark listener on 127.0.0.1 failed: {error}");
        }
    }
    Ok(())
}

fn section(rounds: usize, per_batch: u64, samples: &[super::Samples]) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "## Cost of a TCP connect to 127.0.0.1 and its close\n"
    );
    let _ = writeln!(
        text,
        "The loop creates a TCP socket, connects it to a listener on 127.0.0.1 and closes it \
         with a reset (`SO_LINGER` 0, so no socket waits in `TIME_WAIT`). It does so {} times \
         per measurement in {BATCHES} batches, in one thread on CPU 0 at nice -20. The kernel completes each \
         handshake on its own, so the listener accepts the queued connections between batches, \
         outside the timed part. A measurement is the time per connect of its fastest batch; the \
         conditions run interleaved for {rounds} rounds and the table shows the median of each. \
         The empty programs are `connect4` and `connect6` programs that allow every connect, on \
         the cgroup v2 root as credwatch's are, and empty programs on the \
         `syscalls/sys_exit_connect` and `sock/inet_sock_set_state` tracepoints. Every connect \
         goes to the same peer, so credwatch reports the first one and counts the others as \
         duplicates of it (the default `network.dedup_window` is 60 s): the table shows the cost \
         of a connect that produces no event. The last column is the CPU time the monitor process \
         used during the batches, divided by the connects. The monitor is not pinned, so this \
         time adds to the loop's only when it runs on CPU 0.\n",
        per_batch * BATCHES
    );
    super::write_microsecond_table(&mut text, &CONDITIONS, samples, "connect + close", 2);
    let _ = writeln!(text);
    super::write_round_quartiles(&mut text, &CONDITIONS, samples);
    text
}
