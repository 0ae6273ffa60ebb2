//! One `GET /pods` to the kubelet: plain HTTP on its read-only port, or TLS with a bearer token
//! on its authenticated port.
//!
//! The request is HTTP/1.0, so the response comes without chunked encoding and ends when the
//! kubelet closes the connection. Over TLS the token file is read again for every request,
//! because projected service-account tokens rotate. The token goes into the request and
//! nowhere else: errors name the token file, never its content.

use std::{
    fs,
    io::{self, Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned,
    pki_types::{CertificateDer, ServerName, pem::PemObject as _},
};
use zeroize::Zeroizing;

use crate::config::KubernetesConfig;

/// Time allowed to connect and for each read or write.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for a whole response, so that a kubelet sending a byte at a time cannot hold
/// the worker.
const RESPONSE_DEADLINE: Duration = Duration::from_secs(10);
/// Largest response read; a node runs at most a few hundred pods.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// Largest token file read; a service-account token is a few kilobytes.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// The way to the kubelet.
pub enum Transport {
    /// Plain HTTP, the read-only port.
    Plain,
    /// TLS with a bearer token, the authenticated port.
    Tls(TlsTransport),
}

/// The TLS settings of the authenticated port.
pub struct TlsTransport {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    token_file: PathBuf,
}

impl Transport {
    /// Builds the transport the `kubernetes` section selects. Over TLS, the CA file must
    /// contain at least one certificate and the token file must be readable. The error names
    /// the key and the file, and the fix.
    pub fn from_config(settings: &KubernetesConfig, address: &str) -> Result<Self, String> {
        if !settings.kubelet_tls {
            return Ok(Self::Plain);
        }
        let roots = load_roots(&settings.kubelet_ca_file)?;
        let server_name = server_name(settings.kubelet_server_name.as_deref(), address)?;
        read_token(&settings.kubelet_token_file)?;
        // rustls deprecates the ring provider because it lacks post-quantum key exchange. It is
        // kept because it builds without cmake, and the kubelet is on the node's own network.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("failed to set up TLS for the kubelet: {error}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self::Tls(TlsTransport {
            config: Arc::new(config),
            server_name,
            token_file: settings.kubelet_token_file.clone(),
        }))
    }

    /// Sends `GET /pods` to `address` and returns the body of a 200 response.
    pub fn fetch_pods(&self, address: SocketAddr) -> Result<Vec<u8>, String> {
        let stream = connect(address)?;
        let response = match self {
            Self::Plain => exchange(stream, &request(address, None))?,
            Self::Tls(tls) => {
                let token = read_token(&tls.token_file)?;
                let request = Zeroizing::new(request(address, Some(&token)));
                let connection =
                    ClientConnection::new(Arc::clone(&tls.config), tls.server_name.clone())
                        .map_err(|error| format!("TLS: {error}"))?;
                exchange(StreamOwned::new(connection, stream), &request)
                    .map_err(|error| tls_hint(error, &tls.server_name))?
            }
        };
        body_of_ok(&response)
    }
}

/// Adds what to check to a TLS failure.
fn tls_hint(error: String, server_name: &ServerName<'_>) -> String {
    if error.contains("UnknownIssuer") || error.contains("BadSignature") {
        format!(
            "{error}; kubernetes.kubelet_ca_file must hold the CA that signed the kubelet's \
             serving certificate"
        )
    } else if error.contains("NotValidForName") {
        format!(
            "{error}; the kubelet's certificate does not name {:?}: set \
             kubernetes.kubelet_server_name to a name it carries",
            server_name.to_str()
        )
    } else if error.contains("certificate") {
        format!("{error}; check kubernetes.kubelet_ca_file and kubernetes.kubelet_server_name")
    } else if error.contains("InvalidContentType") || error.contains("corrupt message") {
        format!(
            "{error}; the port does not speak TLS: use the kubelet's authenticated port \
             (usually 10250) or set kubernetes.kubelet_tls to false"
        )
    } else {
        error
    }
}

/// Reads the CA bundle into a root store.
fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let fix = "set kubernetes.kubelet_ca_file to the PEM file of the CA that signed the \
               kubelet's serving certificate";
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| {
            format!(
                "kubernetes.kubelet_ca_file {}: {error}; {fix}",
                path.display()
            )
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            format!(
                "kubernetes.kubelet_ca_file {} is not PEM: {error}; {fix}",
                path.display()
            )
        })?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(format!(
            "kubernetes.kubelet_ca_file {} holds no usable certificate; {fix}",
            path.display()
        ));
    }
    Ok(roots)
}

/// Returns the name checked against the kubelet's certificate: the configured one, or the host
/// part of the address (an IP address is matched against the certificate's IP entries).
fn server_name(configured: Option<&str>, address: &str) -> Result<ServerName<'static>, String> {
    let (key, name) = match configured {
        Some(name) => ("kubernetes.kubelet_server_name", name.to_owned()),
        None => ("kubernetes.kubelet_address", host_of(address)),
    };
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(name.clone()).map_err(|error| {
        format!(
            "{key} {name:?} is not a DNS name or IP address to check the kubelet's certificate \
             against: {error}"
        )
    })
}

/// Returns the host of `host:port`, without the brackets of an IPv6 address.
fn host_of(address: &str) -> String {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

/// Reads the bearer token, trimmed of the trailing newline.
fn read_token(path: &Path) -> Result<Zeroizing<String>, String> {
    let fix = "mount a service-account token into the credwatch pod or set \
               kubernetes.kubelet_token_file";
    let file = fs::File::open(path).map_err(|error| {
        format!(
            "kubernetes.kubelet_token_file {}: {error}; {fix}",
            path.display()
        )
    })?;
    let mut token = Zeroizing::new(String::new());
    file.take(MAX_TOKEN_BYTES)
        .read_to_string(&mut token)
        .map_err(|error| format!("kubernetes.kubelet_token_file {}: {error}", path.display()))?;
    let trimmed = Zeroizing::new(token.trim().to_owned());
    let valid = !trimmed.is_empty() && trimmed.bytes().all(|byte| byte.is_ascii_graphic());
    if !valid {
        return Err(format!(
            "kubernetes.kubelet_token_file {} holds no token (it is empty or not one line of \
             printable text); {fix}",
            path.display()
        ));
    }
    Ok(trimmed)
}

fn connect(address: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&address, TIMEOUT)
        .map_err(|error| format!("connect: {error}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|error| format!("socket: {error}"))?;
    Ok(stream)
}

fn request(address: SocketAddr, token: Option<&str>) -> String {
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    format!(
        "GET /pods HTTP/1.0\r\nHost: {address}\r\nAccept: application/json\r\n{authorization}\r\n"
    )
}

/// Sends the request and reads the response until the kubelet closes the connection. A TLS
/// peer that closes without a close-notify alert ends the response too: a cut body fails to
/// parse later.
fn exchange(mut stream: impl Read + Write, request: &str) -> Result<Vec<u8>, String> {
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(|error| format!("send: {error}"))?;
    let deadline = Instant::now() + RESPONSE_DEADLINE;
    let mut response = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(response),
            Ok(read) => response.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof && !response.is_empty() => {
                return Ok(response);
            }
            Err(error) if is_timeout(&error) => {
                return Err(format!(
                    "read: timed out after {} s without data",
                    TIMEOUT.as_secs()
                ));
            }
            Err(error) => return Err(format!("read: {error}")),
        }
        if response.len() as u64 > MAX_RESPONSE_BYTES {
            return Err(format!(
                "the response is larger than {} MiB",
                MAX_RESPONSE_BYTES >> 20
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "timed out: the response took longer than {} s",
                RESPONSE_DEADLINE.as_secs()
            ));
        }
    }
}

/// Tells whether a read failed on its socket timeout (`EAGAIN` on Linux).
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Returns the body of a `200` response.
fn body_of_ok(response: &[u8]) -> Result<Vec<u8>, String> {
    let header_end = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or("the response has no HTTP header")?;
    let status_line = response[..header_end]
        .split(|&byte| byte == b'\r')
        .next()
        .unwrap_or_default();
    let status = String::from_utf8_lossy(status_line);
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(response[header_end + 4..].to_vec()),
        Some("401") => Err(format!(
            "the kubelet responded {status:?}: it did not accept the token (expired, revoked, or \
             for another audience); check kubernetes.kubelet_token_file"
        )),
        Some("403") => Err(format!(
            "the kubelet responded {status:?}: the token's service account may not read pods; \
             it needs `get` on the `nodes/proxy` resource"
        )),
        _ => Err(format!("the kubelet responded {status:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> KubernetesConfig {
        KubernetesConfig {
            kubelet_tls: true,
            kubelet_token_file: dir.join("token"),
            kubelet_ca_file: dir.join("ca.crt"),
            ..KubernetesConfig::default()
        }
    }

    #[test]
    fn plain_transport_needs_no_files() {
        let settings = KubernetesConfig::default();
        let transport = Transport::from_config(&settings, "127.0.0.1:10255").unwrap();
        assert!(matches!(transport, Transport::Plain));
    }

    #[test]
    fn missing_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let error = Transport::from_config(&settings(dir.path()), "127.0.0.1:10250")
            .err()
            .unwrap();
        assert!(error.contains("kubernetes.kubelet_ca_file"), "{error}");
        assert!(error.contains("ca.crt"), "{error}");
    }

    #[test]
    fn ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ca.crt"), "not a certificate\n").unwrap();
        let error = Transport::from_config(&settings(dir.path()), "127.0.0.1:10250")
            .err()
            .unwrap();
        assert!(error.contains("no usable certificate"), "{error}");
    }

    #[test]
    fn token_errors_never_show_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, "made-up token with spaces\n").unwrap();
        let error = read_token(&path).err().unwrap();
        assert!(error.contains("holds no token"), "{error}");
        assert!(!error.contains("made-up"), "{error}");

        fs::write(&path, "madeUpTokenValue\n").unwrap();
        assert_eq!(read_token(&path).unwrap().as_str(), "madeUpTokenValue");
        let missing = read_token(&dir.path().join("absent")).err().unwrap();
        assert!(
            missing.contains("kubernetes.kubelet_token_file"),
            "{missing}"
        );
    }

    #[test]
    fn server_name_defaults_to_the_address_host() {
        assert_eq!(
            server_name(None, "127.0.0.1:10250").unwrap(),
            ServerName::IpAddress("127.0.0.1".parse::<IpAddr>().unwrap().into())
        );
        assert_eq!(
            server_name(None, "[::1]:10250").unwrap(),
            ServerName::IpAddress("::1".parse::<IpAddr>().unwrap().into())
        );
        assert_eq!(
            server_name(None, "node-1.example.test:10250")
                .unwrap()
                .to_str(),
            "node-1.example.test"
        );
        assert_eq!(
            server_name(Some("kubelet.example.test"), "127.0.0.1:10250")
                .unwrap()
                .to_str(),
            "kubelet.example.test"
        );
        let error = server_name(Some("bad name!"), "127.0.0.1:10250").unwrap_err();
        assert!(error.contains("kubernetes.kubelet_server_name"), "{error}");
    }

    #[test]
    fn request_carries_the_token_only_over_tls() {
        let address: SocketAddr = "127.0.0.1:10250".parse().unwrap();
        assert!(!request(address, None).contains("Authorization"));
        assert!(request(address, Some("abc")).contains("Authorization: Bearer abc\r\n"));
    }

    /// A stream whose reads fail as a socket timeout does.
    struct Silent;

    impl Read for Silent {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    impl Write for Silent {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn silent_kubelet_times_out_in_words() {
        let error = exchange(Silent, "GET /pods HTTP/1.0\r\n\r\n").unwrap_err();
        assert_eq!(error, "read: timed out after 3 s without data");
    }

    #[test]
    fn tls_errors_say_what_to_check() {
        let name = ServerName::try_from("node-1.example.test").unwrap();
        let issuer = tls_hint("invalid peer certificate: UnknownIssuer".into(), &name);
        assert!(issuer.contains("kubelet_ca_file"), "{issuer}");
        assert!(!issuer.contains("kubelet_server_name"), "{issuer}");
        let wrong_name = tls_hint("invalid peer certificate: NotValidForName".into(), &name);
        assert!(wrong_name.contains("node-1.example.test"), "{wrong_name}");
        let plain = tls_hint(
            "received corrupt message of type InvalidContentType".into(),
            &name,
        );
        assert!(plain.contains("kubelet_tls"), "{plain}");
    }

    #[test]
    fn refused_token_names_the_permission() {
        let error = body_of_ok(b"HTTP/1.1 403 Forbidden\r\n\r\n").unwrap_err();
        assert!(error.contains("nodes/proxy"), "{error}");
        let error = body_of_ok(b"HTTP/1.1 401 Unauthorized\r\n\r\n").unwrap_err();
        assert!(error.contains("did not accept the token"), "{error}");
        assert_eq!(
            body_of_ok(b"HTTP/1.0 200 OK\r\n\r\n{}").unwrap(),
            b"{}".to_vec()
        );
        assert!(body_of_ok(b"garbage").is_err());
    }
}
