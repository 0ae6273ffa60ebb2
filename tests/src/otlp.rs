//! A stand-in OpenTelemetry Collector on loopback. It accepts OTLP logs and metrics over gRPC
//! (the official `LogsService` and `MetricsService`) or over HTTP/1.1 `POST /v1/logs` and
//! `POST /v1/metrics` with protobuf bodies. It decodes each request and stores the records,
//! their resource, the request headers and the metrics.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{
            ExportLogsServiceRequest, ExportLogsServiceResponse,
            logs_service_server::{LogsService, LogsServiceServer},
        },
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
    },
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::{metric, number_data_point},
};
use prost::Message as _;
use serde_json::{Map, Value};

use crate::TIMEOUT;

/// One received log record, with JSON values as the JSON-lines sink writes them.
#[derive(Clone, Debug)]
pub struct Received {
    /// `event_name`.
    pub event_name: String,
    /// `severity_text`.
    pub severity_text: String,
    /// `severity_number`.
    pub severity_number: i32,
    /// `time_unix_nano`.
    pub time_unix_nano: u64,
    /// Attributes.
    pub attributes: Map<String, Value>,
    /// The body as JSON, `null` when the record has none.
    pub body: Value,
    /// Resource attributes of the request.
    pub resource: Map<String, Value>,
    /// Headers or gRPC metadata of the request, names in lowercase.
    pub headers: BTreeMap<String, String>,
}

type Store = Arc<Mutex<Vec<Received>>>;
type MetricStore = Arc<Mutex<Vec<ExportMetricsServiceRequest>>>;

/// One data point of a received metric: its attributes and its integer value.
#[derive(Clone, Debug)]
pub struct Point {
    /// Attributes of the point.
    pub attributes: Map<String, Value>,
    /// The value.
    pub value: i64,
}

/// A running receiver, stopped on drop.
pub struct OtlpReceiver {
    port: u16,
    received: Store,
    metrics: MetricStore,
    stop: Arc<AtomicBool>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Returns a loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a loopback port")
        .port()
}

impl OtlpReceiver {
    /// Listens for OTLP/HTTP on 127.0.0.1:`port` (0 for any).
    pub fn http(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the OTLP/HTTP port");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Store::default();
        let metrics = MetricStore::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let received = received.clone();
            let metrics = metrics.clone();
            let stop = stop.clone();
            std::thread::spawn(move || serve_http(&listener, &received, &metrics, &stop))
        };
        Self {
            port,
            received,
            metrics,
            stop,
            shutdown: None,
            thread: Some(thread),
        }
    }

    /// Listens for OTLP/gRPC on 127.0.0.1:`port` (0 for any).
    pub fn grpc(port: u16) -> Self {
        Self::grpc_with(port, None)
    }

    /// Listens for OTLP/gRPC over TLS with the PEM certificate and key `identity`, and requires
    /// client certificates issued by the PEM CA `client_ca`.
    pub fn grpc_mutual_tls(port: u16, identity: (Vec<u8>, Vec<u8>), client_ca: Vec<u8>) -> Self {
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(identity.0, identity.1))
            .client_ca_root(tonic::transport::Certificate::from_pem(client_ca));
        Self::grpc_with(port, Some(tls))
    }

    fn grpc_with(port: u16, tls: Option<tonic::transport::ServerTlsConfig>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the OTLP/gRPC port");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Store::default();
        let metrics = MetricStore::default();
        let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
        let thread = {
            let received = received.clone();
            let metrics = metrics.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let incoming = tonic::transport::server::TcpIncoming::from(listener);
                    let mut builder = tonic::transport::Server::builder();
                    if let Some(tls) = tls {
                        builder = builder.tls_config(tls).unwrap();
                    }
                    builder
                        .add_service(LogsServiceServer::new(GrpcReceiver { received }))
                        .add_service(MetricsServiceServer::new(GrpcMetrics { metrics }))
                        .serve_with_incoming_shutdown(incoming, async {
                            let _ = signal.await;
                        })
                        .await
                        .unwrap();
                });
            })
        };
        Self {
            port,
            received,
            metrics,
            stop: Arc::new(AtomicBool::new(false)),
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Returns the port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns every record received so far, in arrival order.
    pub fn records(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Returns the points of metric `name` in the newest metrics request that has it.
    pub fn metric_points(&self, name: &str) -> Vec<Point> {
        let requests = self.metrics.lock().unwrap();
        for request in requests.iter().rev() {
            let found = request
                .resource_metrics
                .iter()
                .flat_map(|resource| &resource.scope_metrics)
                .flat_map(|scope| &scope.metrics)
                .find(|metric| metric.name == name);
            let Some(metric) = found else {
                continue;
            };
            let points = match &metric.data {
                Some(metric::Data::Sum(sum)) => &sum.data_points,
                Some(metric::Data::Gauge(gauge)) => &gauge.data_points,
                _ => return Vec::new(),
            };
            return points
                .iter()
                .map(|point| Point {
                    attributes: object(&point.attributes),
                    value: match point.value {
                        Some(number_data_point::Value::AsInt(value)) => value,
                        Some(number_data_point::Value::AsDouble(value)) => value as i64,
                        None => 0,
                    },
                })
                .collect();
        }
        Vec::new()
    }

    /// Waits until a record matches, and returns it.
    pub fn wait_for(&self, what: &str, matches: impl Fn(&Received) -> bool) -> Received {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(found) = self.records().into_iter().find(&matches) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "the collector did not receive {what} within {TIMEOUT:?}; it has {} records",
                self.records().len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct GrpcReceiver {
    received: Store,
}

struct GrpcMetrics {
    metrics: MetricStore,
}

#[tonic::async_trait]
impl MetricsService for GrpcMetrics {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.metrics.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .iter()
            .filter_map(|entry| match entry {
                tonic::metadata::KeyAndValueRef::Ascii(name, value) => Some((
                    name.as_str().to_owned(),
                    value.to_str().unwrap_or_default().to_owned(),
                )),
                tonic::metadata::KeyAndValueRef::Binary(..) => None,
            })
            .collect();
        keep(&self.received, request.into_inner(), &headers);
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

fn serve_http(listener: &TcpListener, received: &Store, metrics: &MetricStore, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = answer_http(stream, received, metrics);
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => return,
        }
    }
}

/// Reads one request, keeps its records and responds 200, or 400 when the body does not decode.
fn answer_http(stream: TcpStream, received: &Store, metrics: &MetricStore) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|length| length.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut stream = stream;
    if request_line.starts_with("POST /v1/metrics ") {
        return match ExportMetricsServiceRequest::decode(body.as_slice()) {
            Ok(request) => {
                metrics.lock().unwrap().push(request);
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            }
            Err(_) => stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            ),
        };
    }
    let decoded = request_line
        .starts_with("POST /v1/logs ")
        .then(|| ExportLogsServiceRequest::decode(body.as_slice()).ok())
        .flatten();
    match decoded {
        Some(request) => {
            keep(received, request, &headers);
            stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
        }
        None => stream.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ),
    }
}

fn keep(received: &Store, request: ExportLogsServiceRequest, headers: &BTreeMap<String, String>) {
    let mut kept = received.lock().unwrap();
    for resource_logs in request.resource_logs {
        let resource = resource_logs
            .resource
            .map(|resource| object(&resource.attributes))
            .unwrap_or_default();
        for scope_logs in resource_logs.scope_logs {
            for record in scope_logs.log_records {
                kept.push(Received {
                    event_name: record.event_name,
                    severity_text: record.severity_text,
                    severity_number: record.severity_number,
                    time_unix_nano: record.time_unix_nano,
                    attributes: object(&record.attributes),
                    body: record.body.as_ref().map_or(Value::Null, json),
                    resource: resource.clone(),
                    headers: headers.clone(),
                });
            }
        }
    }
}

fn object(pairs: &[KeyValue]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|pair| {
            let value = pair.value.as_ref().map_or(Value::Null, json);
            (pair.key.clone(), value)
        })
        .collect()
}

/// Returns an OTLP value as JSON: the inverse of credwatch's mapping.
fn json(value: &AnyValue) -> Value {
    match &value.value {
        Some(any_value::Value::StringValue(text)) => Value::String(text.clone()),
        Some(any_value::Value::BoolValue(flag)) => Value::Bool(*flag),
        Some(any_value::Value::IntValue(integer)) => Value::from(*integer),
        Some(any_value::Value::DoubleValue(double)) => Value::from(*double),
        Some(any_value::Value::ArrayValue(array)) => {
            Value::Array(array.values.iter().map(json).collect())
        }
        Some(any_value::Value::KvlistValue(list)) => Value::Object(object(&list.values)),
        Some(any_value::Value::BytesValue(bytes)) => Value::from(bytes.clone()),
        // credwatch sends no dictionary-encoded strings.
        Some(any_value::Value::StringValueStrindex(index)) => Value::from(*index),
        None => Value::Null,
    }
}
