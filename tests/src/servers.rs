//! Loopback servers for the network and TLS tests: `openssl s_server` with a made-up
//! self-signed certificate, a TCP server that replies in plain text instead of TLS, and a port
//! where nothing listens.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, TcpListener},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tempfile::TempDir;

use crate::{TIMEOUT, scratch_dir};

/// Common name of the made-up certificate. The clients skip certificate checks, so any name
/// they send as SNI is accepted.
pub const CERTIFICATE_NAME: &str = "api.example.test";

/// `openssl s_server -www` on 127.0.0.1, killed by its pid on drop. It responds to each HTTP
/// request with a status page and serves one connection after another.
pub struct TlsServer {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl TlsServer {
    /// Generates a made-up self-signed certificate and key in a temporary directory, starts
    /// `openssl s_server` on a port the kernel picks, and waits until it accepts connections.
    pub fn start() -> Self {
        let dir = scratch_dir();
        let (certificate, key) = self_signed_certificate(dir.path(), CERTIFICATE_NAME);

        // With port 0 the kernel picks a free port and s_server prints it as `ACCEPT host:port`.
        let log = dir.path().join("s_server.log");
        let child = Command::new("/usr/bin/openssl")
            .args(["s_server", "-www", "-accept", "127.0.0.1:0", "-cert"])
            .arg(&certificate)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).expect("create the s_server log"))
            .stderr(Stdio::from(
                fs::File::options()
                    .append(true)
                    .open(&log)
                    .expect("open the s_server log"),
            ))
            .spawn()
            .expect("start openssl s_server");
        let mut server = Self {
            child,
            port: 0,
            dir,
        };
        server.port = server.wait_for_port(&log);
        server
    }

    fn wait_for_port(&mut self, log: &Path) -> u16 {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let text = fs::read_to_string(log).unwrap_or_default();
            let accept = text
                .lines()
                .filter_map(|line| line.strip_prefix("ACCEPT "))
                .find_map(|address| address.rsplit_once(':')?.1.trim().parse().ok());
            if let Some(port) = accept {
                return port;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("openssl s_server exited with {status}; output:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "openssl s_server did not listen within {TIMEOUT:?}; output:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Returns the port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the server's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns the server's output so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("s_server.log")).unwrap_or_default()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The reply of [`NonTlsServer`]: a plain HTTP error, which no TLS client accepts as a
/// ServerHello.
pub const NON_TLS_REPLY: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n";

/// A TCP server on 127.0.0.1 that reads what a client sends first, replies with
/// [`NON_TLS_REPLY`] and closes the connection. It runs in a thread of the test process and
/// stops when dropped.
pub struct NonTlsServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NonTlsServer {
    /// Starts the server on a port the kernel picks.
    pub fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("the bound address").port();
        listener
            .set_nonblocking(true)
            .expect("make the listener non-blocking");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || serve_non_tls(&listener, &stop)
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// Returns the port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for NonTlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_non_tls(listener: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(TIMEOUT));
                // Reading the ClientHello first makes the close send a FIN, not a reset.
                let mut hello = [0u8; 4096];
                let _ = stream.read(&mut hello);
                let _ = stream.write_all(NON_TLS_REPLY);
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => panic!("accept on the non-TLS server failed: {error}"),
        }
    }
}

/// A TCP port on 127.0.0.1 that is bound but not listening, so a connect to it is refused,
/// and no other program can take the port while this value lives.
pub struct ClosedPort {
    _socket: OwnedFd,
    port: u16,
}

impl ClosedPort {
    /// Binds a socket to a port the kernel picks, without calling `listen`.
    pub fn bind() -> Self {
        // SAFETY: socket has no memory arguments; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        assert!(
            fd >= 0,
            "socket failed: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd is a new socket that nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };

        let mut address = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let mut length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

        // SAFETY: address is a valid sockaddr_in and length is its size.
        let bound = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&raw const address).cast::<libc::sockaddr>(),
                length,
            )
        };
        assert_eq!(
            bound,
            0,
            "bind 127.0.0.1:0 failed: {}",
            std::io::Error::last_os_error()
        );

        // SAFETY: address and length are valid for writing, and length is the size of address.
        let named = unsafe {
            libc::getsockname(
                socket.as_raw_fd(),
                (&raw mut address).cast::<libc::sockaddr>(),
                &mut length,
            )
        };
        assert_eq!(
            named,
            0,
            "getsockname failed: {}",
            std::io::Error::last_os_error()
        );
        Self {
            _socket: socket,
            port: u16::from_be(address.sin_port),
        }
    }

    /// Returns the port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Writes a made-up self-signed P-256 certificate for the DNS name `name`, valid for a day,
/// and its key into `dir`, and returns their paths.
pub fn self_signed_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let certificate = dir.join("certificate.pem");
    let key = dir.join("private.pem");
    let output = Command::new("/usr/bin/openssl")
        .args(["req", "-x509", "-newkey", "ec"])
        .args([
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .arg("-subj")
        .arg(format!("/CN={name}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&certificate)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl req; run `cargo xtask setup` to install openssl");
    assert!(
        output.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (certificate, key)
}

/// Runs `/usr/bin/openssl` with `args` in `dir` and returns its standard output; panics with
/// its error output when it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("/usr/bin/openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("failed to run /usr/bin/openssl, which `cargo xtask setup` installs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Tells whether this test process has a controlling terminal (a developer's shell, not CI),
/// which makes every reader it starts interactive.
pub fn test_has_terminal() -> bool {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    let after_name = &stat[stat.rfind(')').expect("a stat line has a name") + 1..];
    after_name.split_whitespace().nth(4) != Some("0")
}
