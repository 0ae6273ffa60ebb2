//! Sending one export request to the collector: protobuf over HTTP/1.1, or gRPC.
//!
//! Both report whether a failed request may succeed later or never will. [`Failure::Retry`]
//! covers a collector that is down, overloaded, or rejects the credentials until an operator
//! fixes them, and the delivery loop keeps such a batch in the queue. [`Failure::Rejected`]
//! covers a request the collector reports as malformed, and the loop skips it.

use std::{
    io::{self, Read, Write},
    net::{TcpStream, ToSocketAddrs},
    path::Path,
    sync::Arc,
    time::Duration,
};

use opentelemetry_proto::tonic::collector::{
    logs::v1::{ExportLogsServiceRequest, logs_service_client::LogsServiceClient},
    metrics::v1::{ExportMetricsServiceRequest, metrics_service_client::MetricsServiceClient},
};
use prost::Message as _;
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _},
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::settings::{OtlpSettings, Protocol};

/// CA bundles of common distributions, used when no CA file is configured.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];
/// Largest response head read from an HTTP collector.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// The reason a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The request may succeed later; the batch stays in the queue.
    Retry(String),
    /// The collector refused the request as malformed; sending it again cannot help.
    Rejected(String),
}

impl Failure {
    /// Returns the message.
    pub fn message(&self) -> &str {
        match self {
            Self::Retry(message) | Self::Rejected(message) => message,
        }
    }
}

/// A connection method to the collector.
pub enum Transport {
    /// HTTP/1.1 with protobuf bodies.
    Http(HttpTransport),
    /// gRPC, on a runtime of its own.
    Grpc(Box<GrpcTransport>),
}

impl Transport {
    /// Builds the transport of `settings`, reading the TLS files. The error names the file.
    pub fn new(settings: &OtlpSettings) -> Result<Self, String> {
        match settings.protocol {
            Protocol::HttpProtobuf => HttpTransport::new(settings).map(Self::Http),
            Protocol::Grpc => GrpcTransport::new(settings).map(|grpc| Self::Grpc(Box::new(grpc))),
        }
    }

    /// Sends one request with `headers`.
    pub fn send(
        &mut self,
        request: ExportLogsServiceRequest,
        headers: &[(String, String)],
    ) -> Result<(), Failure> {
        match self {
            Self::Http(http) => http.send(&http.url, &request.encode_to_vec(), headers),
            Self::Grpc(grpc) => grpc.send(request, headers),
        }
    }

    /// Sends one metrics request with `headers`.
    pub fn send_metrics(
        &mut self,
        request: ExportMetricsServiceRequest,
        headers: &[(String, String)],
    ) -> Result<(), Failure> {
        match self {
            Self::Http(http) => http.send(&http.metrics_url, &request.encode_to_vec(), headers),
            Self::Grpc(grpc) => grpc.send_metrics(request, headers),
        }
    }
}

/// The parts of an `http://` or `https://` URL.
#[derive(Debug, PartialEq, Eq)]
struct Url {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<Url, String> {
    let (tls, rest) = match url.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        _ => return Err(format!("otlp.endpoint {url}: expected http:// or https://")),
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("otlp.endpoint {url}: `[` without `]`"))?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok(),
            None if after.is_empty() => Some(default_port),
            None => None,
        };
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().ok()),
            None => (authority.to_owned(), Some(default_port)),
        }
    };
    let port = port.ok_or_else(|| format!("otlp.endpoint {url}: the port is not a number"))?;
    if host.is_empty() {
        return Err(format!("otlp.endpoint {url}: no host"));
    }
    Ok(Url {
        tls,
        host,
        port,
        path: path.to_owned(),
    })
}

/// HTTP/1.1 to the collector, one connection per request.
pub struct HttpTransport {
    url: Url,
    metrics_url: Url,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    timeout: Duration,
}

impl HttpTransport {
    fn new(settings: &OtlpSettings) -> Result<Self, String> {
        let url = parse_url(&settings.endpoint)?;
        let metrics_url = parse_url(&settings.metrics_endpoint)?;
        let tls = if url.tls {
            let name = ServerName::try_from(url.host.clone())
                .map_err(|error| format!("otlp.endpoint host {}: {error}", url.host))?;
            Some((Arc::new(rustls_config(settings)?), name))
        } else {
            None
        };
        Ok(Self {
            url,
            metrics_url,
            tls,
            timeout: settings.timeout,
        })
    }

    fn send(&self, url: &Url, body: &[u8], headers: &[(String, String)]) -> Result<(), Failure> {
        let stream = self.connect(url).map_err(Failure::Retry)?;
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: credwatch/{}\r\n",
            url.path,
            url.host,
            url.port,
            body.len(),
            env!("CARGO_PKG_VERSION")
        );
        for (name, value) in headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let response = match &self.tls {
            Some((config, name)) => {
                let connection = ClientConnection::new(config.clone(), name.clone())
                    .map_err(|error| Failure::Retry(format!("TLS setup failed: {error}")))?;
                exchange(StreamOwned::new(connection, stream), head.as_bytes(), body)
            }
            None => exchange(stream, head.as_bytes(), body),
        }
        .map_err(|error| Failure::Retry(self.describe(url, &error)))?;
        status_outcome(&response)
    }

    fn connect(&self, url: &Url) -> Result<TcpStream, String> {
        let target = format!("{}:{}", url.host, url.port);
        let addresses = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|error| format!("failed to resolve {target}: {error}"))?;
        let mut last = format!("{target} has no address");
        for address in addresses {
            match TcpStream::connect_timeout(&address, self.timeout) {
                Ok(stream) => {
                    stream
                        .set_read_timeout(Some(self.timeout))
                        .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
                        .map_err(|error| format!("{target}: {error}"))?;
                    return Ok(stream);
                }
                Err(error) => last = format!("failed to connect to {address}: {error}"),
            }
        }
        Err(last)
    }

    fn describe(&self, url: &Url, error: &io::Error) -> String {
        let target = format!("{}:{}", url.host, url.port);
        let text = error.to_string();
        if let Some(hint) = tls_hint(&text) {
            return format!("TLS with {target} failed: {text}; {hint}");
        }
        if self.tls.is_some() && (text.contains("certificate") || text.contains("Certificate")) {
            return format!(
                "TLS with {target} failed: {text}; check otlp.ca_file and the name in the \
                 collector's certificate"
            );
        }
        if matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            return format!("{target} did not answer within the timeout");
        }
        format!("{target}: {text}")
    }
}

/// Writes the request and reads the response head.
fn exchange(mut stream: impl Read + Write, head: &[u8], body: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(head)?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut response = Vec::new();
    let mut buffer = [0_u8; 4096];
    while !response.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..read]);
        if response.len() > MAX_RESPONSE_HEAD {
            break;
        }
    }
    Ok(response)
}

/// Maps an HTTP status to the outcome: 2xx delivered, 400 and 413 rejected, the rest retried
/// (429 and 5xx by the OTLP rules, 401, 403 and 404 until an operator fixes the settings).
fn status_outcome(response: &[u8]) -> Result<(), Failure> {
    let line = response
        .split(|byte| *byte == b'\n')
        .next()
        .unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let status: Option<u16> = line
        .starts_with("HTTP/")
        .then(|| line.split_whitespace().nth(1))
        .flatten()
        .and_then(|code| code.parse().ok());
    match status {
        Some(200..=299) => Ok(()),
        Some(code @ (400 | 413)) => Err(Failure::Rejected(format!(
            "the collector rejected the request with HTTP {code}"
        ))),
        Some(code @ (401 | 403)) => Err(Failure::Retry(format!(
            "the collector refused the credentials with HTTP {code}; check otlp.headers and \
             otlp.header_files"
        ))),
        Some(404) => Err(Failure::Retry(
            "the collector answered HTTP 404; check the path of otlp.endpoint (usually /v1/logs)"
                .to_owned(),
        )),
        Some(code) => Err(Failure::Retry(format!(
            "the collector answered HTTP {code}"
        ))),
        None if response.is_empty() => Err(Failure::Retry(
            "the collector closed the connection without an answer; if it serves TLS, the \
             endpoint needs https://"
                .to_owned(),
        )),
        None => Err(Failure::Retry(
            "the collector's answer is not HTTP; check otlp.protocol (gRPC listens on 4317, \
             HTTP on 4318)"
                .to_owned(),
        )),
    }
}

/// Builds the rustls configuration: the configured CA or the system bundle, and the client
/// identity for mutual TLS.
fn rustls_config(settings: &OtlpSettings) -> Result<ClientConfig, String> {
    let roots = root_store(settings.ca_file.as_deref())?;
    // The ring provider is the one the workspace builds; it supports TLS 1.2 and 1.3. Its
    // deprecation concerns post-quantum key exchange, which collectors do not require.
    #[allow(deprecated)]
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("TLS setup failed: {error}"))?
            .with_root_certificates(roots);
    match &settings.client_identity {
        Some((certificate, key)) => {
            let chain = read_certificates(certificate, "otlp.client_certificate_file")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|error| {
                format!(
                    "otlp.client_key_file {}: {error}; it must be a PEM private key",
                    key.display()
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| format!("the client certificate and key do not match: {error}"))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let (path, key) = match ca_file {
        Some(path) => (path.to_path_buf(), "otlp.ca_file"),
        None => {
            let found = SYSTEM_BUNDLES
                .iter()
                .map(Path::new)
                .find(|path| path.is_file())
                .ok_or_else(|| {
                    "no system CA bundle found; set otlp.ca_file to the collector's CA".to_owned()
                })?;
            (found.to_path_buf(), "the system CA bundle")
        }
    };
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(&path, key)? {
        roots
            .add(certificate)
            .map_err(|error| format!("{key} {}: {error}", path.display()))?;
    }
    Ok(roots)
}

fn read_certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|error| format!("{key} {}: {error}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|error| format!("{key} {}: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "{key} {} contains no PEM certificate",
            path.display()
        ));
    }
    Ok(certificates)
}

/// gRPC to the collector through tonic, driven by a single-threaded runtime that only this
/// transport uses.
pub struct GrpcTransport {
    runtime: tokio::runtime::Runtime,
    client: LogsServiceClient<Channel>,
    metrics: MetricsServiceClient<Channel>,
    timeout: Duration,
}

impl GrpcTransport {
    fn new(settings: &OtlpSettings) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| format!("failed to start the gRPC runtime: {error}"))?;
        let url = parse_url(&settings.endpoint)?;
        let mut endpoint = Endpoint::from_shared(settings.endpoint.clone())
            .map_err(|error| format!("otlp.endpoint {}: {error}", settings.endpoint))?
            .connect_timeout(settings.timeout)
            .timeout(settings.timeout);
        if url.tls {
            endpoint = endpoint
                .tls_config(tonic_tls(settings, &url.host)?)
                .map_err(|error| format!("TLS setup failed: {error}"))?;
        }
        let channel = {
            let _guard = runtime.enter();
            endpoint.connect_lazy()
        };
        Ok(Self {
            runtime,
            client: LogsServiceClient::new(channel.clone()),
            metrics: MetricsServiceClient::new(channel),
            timeout: settings.timeout,
        })
    }

    fn send(
        &mut self,
        request: ExportLogsServiceRequest,
        headers: &[(String, String)],
    ) -> Result<(), Failure> {
        let request = self.request(request, headers)?;
        let client = &mut self.client;
        match self.runtime.block_on(client.export(request)) {
            Ok(_) => Ok(()),
            Err(status) => Err(grpc_failure(&status)),
        }
    }

    fn send_metrics(
        &mut self,
        request: ExportMetricsServiceRequest,
        headers: &[(String, String)],
    ) -> Result<(), Failure> {
        let request = self.request(request, headers)?;
        let client = &mut self.metrics;
        match self.runtime.block_on(client.export(request)) {
            Ok(_) => Ok(()),
            Err(status) => Err(grpc_failure(&status)),
        }
    }

    /// Wraps a message with the timeout and the headers as metadata.
    fn request<T>(
        &self,
        message: T,
        headers: &[(String, String)],
    ) -> Result<tonic::Request<T>, Failure> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        for (name, value) in headers {
            let name = tonic::metadata::MetadataKey::from_bytes(name.as_bytes()).map_err(|_| {
                Failure::Rejected(format!("header name {name} is not valid gRPC metadata"))
            })?;
            let value = value.parse().map_err(|_| {
                Failure::Rejected(format!(
                    "the value of header {name} is not valid gRPC metadata"
                ))
            })?;
            request.metadata_mut().insert(name, value);
        }
        Ok(request)
    }
}

fn tonic_tls(settings: &OtlpSettings, host: &str) -> Result<ClientTlsConfig, String> {
    let ca_path = match &settings.ca_file {
        Some(path) => path.clone(),
        None => SYSTEM_BUNDLES
            .iter()
            .map(Path::new)
            .find(|path| path.is_file())
            .map(Path::to_path_buf)
            .ok_or_else(|| {
                "no system CA bundle found; set otlp.ca_file to the collector's CA".to_owned()
            })?,
    };
    // Reading the certificates checks the file the way the HTTP transport does.
    read_certificates(&ca_path, "otlp.ca_file")?;
    let ca = std::fs::read(&ca_path)
        .map_err(|error| format!("otlp.ca_file {}: {error}", ca_path.display()))?;
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(host.to_owned());
    if let Some((certificate, key)) = &settings.client_identity {
        read_certificates(certificate, "otlp.client_certificate_file")?;
        let certificate_pem = std::fs::read(certificate).map_err(|error| {
            format!(
                "otlp.client_certificate_file {}: {error}",
                certificate.display()
            )
        })?;
        let key_pem = std::fs::read(key)
            .map_err(|error| format!("otlp.client_key_file {}: {error}", key.display()))?;
        tls = tls.identity(Identity::from_pem(certificate_pem, key_pem));
    }
    Ok(tls)
}

/// Maps a gRPC status: `INVALID_ARGUMENT` is a rejection, everything else is retried, as the
/// OTLP specification lists for `UNAVAILABLE`, `RESOURCE_EXHAUSTED` and the like.
fn grpc_failure(status: &tonic::Status) -> Failure {
    use tonic::Code;
    let detail = status.message();
    match status.code() {
        Code::InvalidArgument => {
            Failure::Rejected(format!("the collector rejected the request: {detail}"))
        }
        Code::Unauthenticated | Code::PermissionDenied => Failure::Retry(format!(
            "the collector refused the credentials ({}): {detail}; check otlp.headers and \
             otlp.header_files",
            status.code()
        )),
        Code::Unimplemented => Failure::Retry(
            "the collector has no gRPC logs service there; check otlp.endpoint and otlp.protocol \
             (gRPC listens on 4317, HTTP on 4318)"
                .to_owned(),
        ),
        code => {
            let text = source_text(status);
            let hint = if text.contains("frame with invalid size") || text.contains("http2 error") {
                "; the endpoint does not speak gRPC: check otlp.protocol (gRPC listens on 4317, \
                 HTTP on 4318)"
            } else {
                tls_hint(&text).map_or("", |hint| hint)
            };
            let separator = if hint.is_empty() || hint.starts_with(';') {
                ""
            } else {
                "; "
            };
            Failure::Retry(format!("gRPC {code}: {text}{separator}{hint}"))
        }
    }
}

/// Returns advice for the TLS errors that have a usual cause.
fn tls_hint(text: &str) -> Option<&'static str> {
    if text.contains("InvalidContentType") || text.contains("corrupt message") {
        Some("the endpoint does not speak TLS; use http:// or the collector's TLS port")
    } else if text.contains("CaUsedAsEndEntity") {
        Some(
            "the collector presents a CA certificate as its own; give it a certificate issued \
             by the CA in otlp.ca_file",
        )
    } else if text.contains("UnknownIssuer") {
        Some("the collector's certificate is not issued by a CA in otlp.ca_file")
    } else if text.contains("NotValidForName") {
        Some("the collector's certificate does not name the host of otlp.endpoint")
    } else {
        None
    }
}

/// Returns the status message, or the transport error behind it, which names refused
/// connections and TLS failures.
fn source_text(status: &tonic::Status) -> String {
    let mut text = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        text.push_str(": ");
        text.push_str(&error.to_string());
        source = error.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            parse_url("http://127.0.0.1:4318/v1/logs").unwrap(),
            Url {
                tls: false,
                host: "127.0.0.1".into(),
                port: 4318,
                path: "/v1/logs".into()
            }
        );
        let ipv6 = parse_url("https://[::1]:4318/v1/logs").unwrap();
        assert_eq!(
            (ipv6.host.as_str(), ipv6.port, ipv6.tls),
            ("::1", 4318, true)
        );
        let default_port = parse_url("https://collector.example.test").unwrap();
        assert_eq!((default_port.port, default_port.path.as_str()), (443, "/"));
        assert!(parse_url("ftp://collector").is_err());
        assert!(parse_url("http://collector:port").is_err());
    }

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(status_outcome(b"HTTP/1.1 200 OK\r\n\r\n"), Ok(()));
        assert!(matches!(
            status_outcome(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
            Err(Failure::Rejected(_))
        ));
        for response in [
            &b"HTTP/1.1 503 Service Unavailable\r\n\r\n"[..],
            b"HTTP/1.1 429 Too Many Requests\r\n\r\n",
            b"HTTP/1.1 401 Unauthorized\r\n\r\n",
            b"",
            b"\x00\x00\x12\x04",
            b"SIP/2.0 200 OK\r\n\r\n",
        ] {
            assert!(
                matches!(status_outcome(response), Err(Failure::Retry(_))),
                "{response:?}"
            );
        }
    }

    #[test]
    fn tls_errors_get_hints() {
        let cases = [
            (
                "received corrupt message of type InvalidContentType",
                "does not speak TLS",
            ),
            (
                "invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
                "CA certificate",
            ),
            (
                "invalid peer certificate: UnknownIssuer",
                "not issued by a CA",
            ),
        ];
        for (text, expected) in cases {
            assert!(
                tls_hint(text).is_some_and(|hint| hint.contains(expected)),
                "{text}"
            );
        }
        assert_eq!(tls_hint("connection refused"), None);
    }

    #[test]
    fn grpc_codes_map_to_outcomes() {
        let rejected = grpc_failure(&tonic::Status::invalid_argument("bad"));
        let retried = grpc_failure(&tonic::Status::unavailable("down"));
        assert!(matches!(rejected, Failure::Rejected(_)));
        assert!(matches!(retried, Failure::Retry(_)));
    }
}
