//! The TLS loop: what credwatch adds to a full TLS handshake.
//!
//! The server is `openssl s_server` with a made-up self-signed certificate, and the client is
//! the system Python's `ssl` module, so both ends run the host's libssl, where credwatch and
//! the floor attach their uprobes. The client runs the handshakes in batches and prints the
//! time per handshake of each batch, so that process start-up stays out of the timing.

use std::{
    cell::RefCell,
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    BATCHES, Bench, CREDWATCH, Condition, Measurement, Monitor, NO_MONITOR, percent, pinned,
    with_monitor,
};

/// Added time per handshake, in percent, that credwatch is held to.
const TARGET_PERCENT: f64 = 2.0;

/// The client: the distribution's Python, which links the system libssl.
const PYTHON: &str = "/usr/bin/python3";

/// Name in the made-up certificate and in the client's server name indication; `.invalid` is
/// reserved, so it never resolves.
const SERVER_NAME: &str = "credwatch-bench.invalid";

const CONDITIONS: [Condition; 3] = [
    NO_MONITOR,
    Condition {
        label: "empty programs (floor)",
        short: "floor",
        monitor: &["floor", "--hooks", "tls"],
    },
    CREDWATCH,
];

/// The client. Arguments: port, CA file, server name, warm-up handshakes, batches,
/// handshakes per batch. The warm-up also lasts at least 0.5 s, longer than the 200 ms after
/// which credwatch reads a new process's memory map by default (`tls.inspect_delay`), so that
/// this one-time work falls before the batches. After the warm-up the client prints `ready`
/// with the protocol, cipher, Python and OpenSSL versions, tab-separated, then one line per
/// batch: nanoseconds per handshake.
const CLIENT: &str = r#"
import socket, ssl, struct, sys, time

port, cafile, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
warmup, batches, per_batch = (int(value) for value in sys.argv[4:7])
socket.setdefaulttimeout(30)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.load_verify_locations(cafile)
# Close with a reset, so that no socket waits in TIME_WAIT and uses up the local ports.
reset_on_close = struct.pack("ii", 1, 0)

def handshake():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as plain:
        plain.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, reset_on_close)
        plain.connect(("127.0.0.1", port))
        with context.wrap_socket(plain, server_hostname=name) as tls:
            return tls.version(), tls.cipher()[0]

warmup_ends = time.monotonic() + 0.5
done = 0
while done < warmup or time.monotonic() < warmup_ends:
    version, cipher = handshake()
    done += 1
print("ready", version, cipher, sys.version.split()[0], ssl.OPENSSL_VERSION, sep="\t", flush=True)
for _ in range(batches):
    started = time.perf_counter_ns()
    for _ in range(per_batch):
        handshake()
    print((time.perf_counter_ns() - started) / per_batch, flush=True)
"#;

/// Facts the client reported about its handshakes.
#[derive(Clone, Debug, Default)]
struct Session {
    protocol: String,
    cipher: String,
    python: String,
    openssl: String,
}

/// Runs the TLS loop and returns its section of docs/benchmarks.md.
pub(super) fn run(bench: &Bench, handshakes: u64) -> anyhow::Result<String> {
    anyhow::ensure!(
        Path::new(PYTHON).exists(),
        "{PYTHON} is missing; the TLS loop needs the distribution's Python, which uses the \
         system libssl (on Debian or Ubuntu: apt-get install python3)"
    );
    let per_batch = (handshakes / BATCHES).max(1);
    let warmup = (handshakes / 10).max(1);
    let dir = bench.scratch.dir.join("tls");
    fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let certificate = Certificate::create(&dir)?;
    let server = pinned(|| Server::start(&certificate, &dir))?;

    let session = RefCell::new(None);
    let samples = super::run_rounds(bench, "tls", &CONDITIONS, (1000.0, "µs"), |condition| {
        with_monitor(bench, condition, |monitor| {
            let (measurement, reported) =
                pinned(|| run_client(server.port, &certificate.cert, warmup, per_batch, monitor))?;
            session.borrow_mut().get_or_insert(reported);
            Ok(measurement)
        })
    })?;
    server.stop()?;
    let session = session.into_inner().unwrap_or_default();
    Ok(section(bench.rounds, per_batch, &samples, &session))
}

/// A made-up self-signed ECDSA P-256 certificate and its key, for the local server only.
struct Certificate {
    cert: PathBuf,
    key: PathBuf,
}

impl Certificate {
    fn create(dir: &Path) -> anyhow::Result<Self> {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let output = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec"])
            .args([
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
            ])
            .arg("-subj")
            .arg(format!("/CN={SERVER_NAME}"))
            .arg("-addext")
            .arg(format!("subjectAltName=DNS:{SERVER_NAME}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdin(Stdio::null())
            .output()
            .context("failed to start openssl; the TLS loop needs the openssl command")?;
        if !output.status.success() {
            bail!(
                "openssl req failed with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(Self { cert, key })
    }
}

/// `openssl s_server` on a port of 127.0.0.1, stopped on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts the server on a free port, found by binding port 0 and closing it. Another
    /// process may take the port first, so a failed start is retried on another port.
    fn start(certificate: &Certificate, dir: &Path) -> anyhow::Result<Self> {
        let log = dir.join("s_server.log");
        let mut last_error = None;
        for _ in 0..3 {
            let port = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?
                .local_addr()?
                .port();
            let log_file = fs::File::create(&log)
                .with_context(|| format!("failed to create {}", log.display()))?;
            // With -www the server responds to an HTTP request after the handshake. The client
            // sends none and closes, and the server goes on to the next connection. It issues
            // no session tickets, so every handshake is a full one.
            let child = Command::new("openssl")
                .args(["s_server", "-www", "-quiet", "-num_tickets", "0"])
                .arg("-accept")
                .arg(format!("127.0.0.1:{port}"))
                .arg("-cert")
                .arg(&certificate.cert)
                .arg("-key")
                .arg(&certificate.key)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone()?)
                .stderr(log_file)
                .spawn()
                .context("failed to start openssl s_server")?;
            let mut server = Self { child, port };
            match server.wait_until_listening() {
                Ok(()) => return Ok(server),
                Err(error) => {
                    let output = fs::read_to_string(&log).unwrap_or_default();
                    last_error = Some(error.context(output.trim().to_owned()));
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("openssl s_server did not start")))
    }

    fn wait_until_listening(&mut self) -> anyhow::Result<()> {
        let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "openssl s_server on port {} exited with {status}",
                    self.port
                );
            }
            if TcpStream::connect(address).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "openssl s_server did not listen on port {} within 10 s",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill only sends a signal to the server this benchmark started.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the client once and returns the nanoseconds per handshake of its fastest batch and
/// the monitor's CPU time per handshake during the batches, with what the client reported
/// about the handshakes.
fn run_client(
    port: u16,
    ca_file: &Path,
    warmup: u64,
    per_batch: u64,
    monitor: Option<&Monitor>,
) -> anyhow::Result<(Measurement, Session)> {
    let mut child = Command::new(PYTHON)
        .arg("-c")
        .arg(CLIENT)
        .arg(port.to_string())
        .arg(ca_file)
        .arg(SERVER_NAME)
        .arg(warmup.to_string())
        .arg(BATCHES.to_string())
        .arg(per_batch.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start {PYTHON}"))?;
    let stdout = child.stdout.take().context("the client has no stdout")?;

    let output = read_client_output(stdout, monitor, per_batch);
    if output.is_err() {
        // The client must not outlive the benchmark; it is a child of this process.
        let _ = child.kill();
    }
    let status = child.wait()?;
    let output = output?;
    if !status.success() {
        bail!("the TLS client ({PYTHON}) exited with {status}");
    }
    anyhow::ensure!(
        output.batches == BATCHES,
        "the TLS client printed {} batches instead of {BATCHES}",
        output.batches
    );
    let session = output
        .session
        .context("the TLS client did not report its session")?;
    let measurement = Measurement {
        ns: output.fastest,
        monitor_cpu_ns: output.monitor_cpu_ns,
    };
    Ok((measurement, session))
}

/// The client's output, read to its end.
struct ClientOutput {
    session: Option<Session>,
    fastest: f64,
    batches: u64,
    monitor_cpu_ns: Option<f64>,
}

/// Reads the client's lines, and the monitor's CPU time from the end of the warm-up to the
/// end of the output.
fn read_client_output(
    stdout: std::process::ChildStdout,
    monitor: Option<&Monitor>,
    per_batch: u64,
) -> anyhow::Result<ClientOutput> {
    let mut output = ClientOutput {
        session: None,
        fastest: f64::INFINITY,
        batches: 0,
        monitor_cpu_ns: None,
    };
    let mut cpu_before = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(fields) = line.strip_prefix("ready\t") {
            let mut fields = fields.split('\t').map(str::to_owned);
            output.session = Some(Session {
                protocol: fields.next().unwrap_or_default(),
                cipher: fields.next().unwrap_or_default(),
                python: fields.next().unwrap_or_default(),
                openssl: fields.next().unwrap_or_default(),
            });
            cpu_before = monitor.map(Monitor::cpu_ns).transpose()?;
            continue;
        }
        let ns: f64 = line
            .trim()
            .parse()
            .with_context(|| format!("unexpected line from the TLS client: {line:?}"))?;
        output.fastest = output.fastest.min(ns);
        output.batches += 1;
    }

    if let (Some(monitor), Some(before)) = (monitor, cpu_before) {
        let used = monitor.cpu_ns()?.saturating_sub(before);
        output.monitor_cpu_ns = Some(used as f64 / (per_batch * BATCHES) as f64);
    }
    Ok(output)
}

fn section(rounds: usize, per_batch: u64, samples: &[super::Samples], session: &Session) -> String {
    let medians: Vec<f64> = samples.iter().map(super::Samples::median).collect();
    let mut text = String::new();
    let _ = writeln!(text, "## Cost of a TLS handshake\n");
    let _ = writeln!(
        text,
        "The client, Python {} with its `ssl` module, runs {} full handshakes per measurement in \
         {BATCHES} batches: each opens a TCP connection to `openssl s_server` on 127.0.0.1, \
         completes the handshake (with server name indication and certificate verification) \
         and closes the connection. The server has a made-up self-signed ECDSA P-256 \
         certificate and issues no session tickets, so no handshake is resumed; the handshakes \
         negotiate {} with {}. Client and server both use the system libssl ({}) and both run \
         on CPU 0 at nice -20. So every handshake pays the probes at both ends, and its time is \
         the work of both ends, done one after the other. Only client and server are pinned; the monitors \
         may run on any CPU. A measurement is the time \
         per handshake of its fastest batch; the conditions run interleaved for {rounds} rounds \
         and the table shows the median of each. The empty programs are uprobes that return at \
         once, at the entry of every function credwatch hooks in the host's TLS libraries, and \
         uretprobes where credwatch also has a return probe. The last column is the CPU time the \
         monitor process used during the batches, divided by the handshakes, which adds to the \
         handshake's time only when the monitor runs on CPU 0. Target: credwatch adds less than {TARGET_PERCENT}% \
         to a handshake.\n",
        session.python,
        per_batch * BATCHES,
        session.protocol,
        session.cipher,
        session.openssl
    );
    super::write_microsecond_table(&mut text, &CONDITIONS, samples, "handshake", 1);
    let credwatch_percent = percent(medians[2] - medians[0], medians[0]);
    let verdict = if credwatch_percent < TARGET_PERCENT {
        "meets"
    } else {
        "misses"
    };
    let floor_percent = percent(medians[1] - medians[0], medians[0]);
    let _ = writeln!(
        text,
        "\ncredwatch adds **{credwatch_percent:.1}%** to a handshake, which {verdict} the target \
         of less than {TARGET_PERCENT}%. The empty programs alone add {floor_percent:.1}%, so \
         the work in credwatch's programs adds {:.1}% beyond entering them.\n",
        credwatch_percent - floor_percent
    );
    super::write_round_quartiles(&mut text, &CONDITIONS, samples);
    let (low, high) = samples[2].added_percent_quartiles(&samples[0]);
    if low < TARGET_PERCENT && high >= TARGET_PERCENT {
        let _ = writeln!(
            text,
            "The middle half of credwatch's rounds lies on both sides of the target, so the \
             verdict is within the noise of this machine.\n"
        );
    }
    if credwatch_percent >= TARGET_PERCENT {
        eprintln!(
            "warning: credwatch adds {credwatch_percent:.1}% to a TLS handshake; the target is less than {TARGET_PERCENT}%"
        );
    }
    text
}
