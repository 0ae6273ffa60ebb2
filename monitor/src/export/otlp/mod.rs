//! Export to an OpenTelemetry Collector over OTLP, with nothing lost while it is down.
//!
//! Every event goes through the on-disk queue ([`spool`]) in the state directory. A delivery
//! thread reads batches from the queue, sends them ([`transport`]) and removes them only once
//! the collector accepted them. While sending fails, the thread waits with a growing pause (1 s
//! to 30 s) and the queue grows up to its bound. Past the bound, the oldest events are dropped
//! and counted. Records are in the queue as encoded OTLP `LogRecord`s ([`encode`]).

pub mod encode;
pub mod metrics;
pub mod ocsf;
pub mod settings;
pub mod spool;
pub mod transport;

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest, logs::v1::LogRecord,
};
use prost::Message as _;
use serde_json::{Map, Value};

pub use settings::{Body, OtlpConfig, OtlpSettings, Protocol};
pub use spool::SpoolStats;

use self::{
    spool::{Batch, Spool},
    transport::{Failure, Transport},
};
use super::event::{Event, Resource};

/// Directory of the queue inside the state directory.
pub const QUEUE_DIRECTORY: &str = "otlp-queue";
/// Most bytes of records in one request.
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// First pause after a failed request.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Maximum pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Pause after a batch that was not full, to let events gather.
const LINGER: Duration = Duration::from_millis(200);
/// How long a stopping daemon keeps delivering what is queued.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Counts for the health event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Records the collector accepted.
    pub sent: u64,
    /// Records waiting in the queue.
    pub queued: u64,
    /// Records dropped because the queue reached its bound.
    pub dropped: u64,
    /// Records the collector rejected as malformed.
    pub rejected: u64,
    /// Failed requests.
    pub failures: u64,
    /// Whether the last request succeeded.
    pub connected: bool,
    /// The last failure, in words with no secret.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    /// The newest metrics waiting to be sent; a newer snapshot replaces an unsent one.
    metrics: Mutex<
        Option<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest>,
    >,
    sent: AtomicU64,
    rejected: AtomicU64,
    failures: AtomicU64,
    connected: AtomicBool,
    stop: AtomicBool,
    /// Set by the delivery thread when it returns.
    done: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// The exporter: the queue the event loop appends to, and the delivery thread.
pub struct Exporter {
    spool: Arc<Spool>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    failed_appends: u64,
    /// The resource, for OCSF bodies; None without them.
    ocsf_resource: Option<Map<String, Value>>,
    /// The resource of metrics requests.
    resource: Map<String, Value>,
    /// How often metrics are sent; zero when they are off.
    metrics_interval: Duration,
}

impl Exporter {
    /// Opens the queue below `state_dir` and starts delivering to the collector of `settings`.
    /// The error names the file or setting that failed.
    pub fn start(
        settings: OtlpSettings,
        resource: &Resource,
        state_dir: &Path,
    ) -> Result<Self, String> {
        let directory = state_dir.join(QUEUE_DIRECTORY);
        let spool = Spool::open(&directory, settings.queue_max_bytes)
            .map_err(|error| format!("failed to open the OTLP queue: {error}"))?;
        let spool = Arc::new(spool);
        let transport = Transport::new(&settings)?;
        let shared = Arc::new(Shared::default());
        let resource = resource_attributes(resource, &settings);
        let ocsf_resource = (settings.body == Body::Ocsf).then(|| resource.clone());
        let metrics_resource = resource.clone();
        let metrics_interval = settings.metrics_interval;
        let pending = spool.stats().pending;
        tracing::info!(
            endpoint = %settings.endpoint,
            protocol = ?settings.protocol,
            queued = pending,
            queue = %directory.display(),
            "exporting events over OTLP"
        );
        let delivery = Delivery {
            rejected_batches: 0,
            spool: spool.clone(),
            shared: shared.clone(),
            transport,
            settings,
            resource,
        };
        let thread = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || delivery.run())
            .map_err(|error| format!("failed to start the OTLP export thread: {error}"))?;
        Ok(Self {
            spool,
            shared,
            thread: Some(thread),
            failed_appends: 0,
            ocsf_resource,
            resource: metrics_resource,
            metrics_interval,
        })
    }

    /// Queues one event. A queue that cannot be written is logged once per hundred failures.
    pub fn push(&mut self, event: &Event) {
        let mut record = encode::log_record(event, SystemTime::now());
        if let Some(resource) = &self.ocsf_resource {
            record.body = ocsf::body(event, resource).map(|body| encode::any_value(&body));
        }
        let record = record.encode_to_vec();
        if let Err(error) = self.spool.append(&record) {
            self.failed_appends += 1;
            if self.failed_appends % 100 == 1 {
                tracing::error!(%error, failures = self.failed_appends, "failed to queue an event for OTLP export");
            }
        }
    }

    /// Returns how often the daemon should hand over metrics; zero when they are off.
    pub fn metrics_interval(&self) -> Duration {
        self.metrics_interval
    }

    /// Hands a snapshot of the counters to the delivery thread, which sends it as OTLP metrics
    /// between batches of events. An unsent older snapshot is replaced: sums are cumulative.
    pub fn push_metrics(&self, snapshot: &metrics::Snapshot) {
        let request = metrics::request(snapshot, &self.resource, SystemTime::now());
        if let Ok(mut pending) = self.shared.metrics.lock() {
            *pending = Some(request);
        }
        self.spool_wake();
    }

    fn spool_wake(&self) {
        if let Err(error) = self.spool.flush() {
            tracing::warn!(%error, "failed to write the OTLP queue");
        }
    }

    /// Writes queued events to disk and wakes the delivery thread.
    pub fn flush(&self) {
        if let Err(error) = self.spool.flush() {
            tracing::warn!(%error, "failed to write the OTLP queue");
        }
    }

    /// Returns the counts.
    pub fn stats(&self) -> ExportStats {
        let queue = self.spool.stats();
        ExportStats {
            sent: self.shared.sent.load(Ordering::Relaxed),
            queued: queue.pending,
            dropped: queue.dropped + self.failed_appends,
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            failures: self.shared.failures.load(Ordering::Relaxed),
            connected: self.shared.connected.load(Ordering::Relaxed),
            last_error: self
                .shared
                .last_error
                .lock()
                .map(|error| error.clone())
                .unwrap_or_default(),
        }
    }

    /// Flushes the queue, gives the delivery thread up to [`STOP_GRACE`] to send what waits,
    /// and stops it. What is still queued stays on disk for the next start. A request still
    /// waiting for the collector then is abandoned with the thread, and its batch is sent
    /// again at the next start.
    pub fn stop(mut self) {
        self.flush();
        self.shared.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + STOP_GRACE + Duration::from_millis(500);
        while !self.shared.done.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        match self.thread.take() {
            Some(thread) if self.shared.done.load(Ordering::Relaxed) => {
                let _ = thread.join();
            }
            // The thread is blocked in a request; it ends with the process.
            _ => tracing::warn!(
                "the collector did not answer before the stop; the batch in flight stays queued"
            ),
        }
        let left = self.spool.stats().pending;
        if left > 0 {
            tracing::info!(
                queued = left,
                "OTLP events left in the queue for the next start"
            );
        }
    }
}

/// Returns the resource of every request: the detected attributes, then the configured ones.
fn resource_attributes(resource: &Resource, settings: &OtlpSettings) -> Map<String, Value> {
    let mut attributes = resource.attributes.clone();
    for (name, value) in &settings.resource {
        attributes.insert(name.clone(), Value::String(value.clone()));
    }
    attributes
}

/// The delivery thread's state.
struct Delivery {
    /// Batches the collector rejected, for the log's rate limit.
    rejected_batches: u64,
    spool: Arc<Spool>,
    shared: Arc<Shared>,
    transport: Transport,
    settings: OtlpSettings,
    resource: Map<String, Value>,
}

impl Delivery {
    fn run(mut self) {
        self.deliver_until_stopped();
        self.shared.done.store(true, Ordering::Relaxed);
    }

    fn deliver_until_stopped(&mut self) {
        let mut backoff = FIRST_BACKOFF;
        let mut stopping_since: Option<Instant> = None;
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= STOP_GRACE || self.spool.stats().pending == 0 {
                    return;
                }
            }
            // A request stays within a quarter of the queue, so that the segments it holds
            // back from the bound while it is on its way are few.
            let max_bytes = MAX_REQUEST_BYTES.min((self.settings.queue_max_bytes / 4) as usize);
            let batch = match self.spool.peek(self.settings.batch_max, max_bytes) {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(%error, "failed to read the OTLP queue");
                    self.pause(MAX_BACKOFF);
                    continue;
                }
            };
            self.send_metrics();
            if batch.records.is_empty() {
                self.spool.wait(Duration::from_millis(200));
                continue;
            }
            let full = batch.records.len() >= self.settings.batch_max;
            match self.deliver(&batch) {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    // A batch that was not full lets events gather for a moment, so that a
                    // steady trickle goes in a few requests instead of one per event.
                    if !full && stopping_since.is_none() {
                        self.pause(LINGER);
                    }
                }
                Err(()) => {
                    if stopping_since.is_some() {
                        return;
                    }
                    self.pause(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Sends one batch and commits it when the collector accepted or rejected it.
    fn deliver(&mut self, batch: &Batch) -> Result<(), ()> {
        let records: Vec<LogRecord> = batch
            .records
            .iter()
            .filter_map(|bytes| LogRecord::decode(bytes.as_slice()).ok())
            .collect();
        let count = batch.records.len() as u64;
        let request = ExportLogsServiceRequest {
            resource_logs: vec![encode::resource_logs(&self.resource, records)],
        };
        let headers = match self.headers() {
            Ok(headers) => headers,
            Err(message) => {
                self.spool.release();
                self.failed(&message);
                return Err(());
            }
        };
        match self.transport.send(request, &headers) {
            Ok(()) => {
                self.shared.sent.fetch_add(count, Ordering::Relaxed);
                self.succeeded();
            }
            Err(Failure::Rejected(message)) => {
                let before = self.shared.rejected.fetch_add(count, Ordering::Relaxed);
                self.rejected_batches += 1;
                // The first rejection and then every hundredth are logged.
                if self.rejected_batches % 100 == 1 {
                    tracing::error!(error = %message, records = count, rejected = before + count, "the collector rejected a batch as malformed; it is dropped");
                }
            }
            Err(Failure::Retry(message)) => {
                self.spool.release();
                self.failed(&message);
                return Err(());
            }
        }
        if let Err(error) = self.spool.commit(count, batch.next) {
            tracing::error!(%error, "failed to store the OTLP queue position; the batch may be sent again after a restart");
        }
        Ok(())
    }

    /// Sends the pending metrics, if any. A failure is logged at debug level only: the events'
    /// own delivery reports the collector's state, and the next snapshot carries the totals.
    fn send_metrics(&mut self) {
        // A stopping daemon spends its grace period on events.
        if self.shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let pending = self
            .shared
            .metrics
            .lock()
            .ok()
            .and_then(|mut pending| pending.take());
        let Some(request) = pending else {
            return;
        };
        let Ok(headers) = self.headers() else {
            return;
        };
        if let Err(failure) = self.transport.send_metrics(request, &headers) {
            tracing::debug!(error = %failure.message(), "failed to send metrics");
        }
    }

    /// Returns the fixed headers and those read from files. A file that cannot be read fails
    /// the request, and the message names the file but never its content.
    fn headers(&self) -> Result<Vec<(String, String)>, String> {
        let mut headers = self.settings.headers.clone();
        for (name, path) in &self.settings.header_files {
            let value = std::fs::read_to_string(path)
                .map_err(|error| format!("otlp.header_files.{name} {}: {error}", path.display()))?;
            let value = value.trim().to_owned();
            if value
                .bytes()
                .any(|byte| byte < 0x20 && byte != b'\t' || byte == 0x7f)
            {
                return Err(format!(
                    "otlp.header_files.{name} {}: the value has control characters or line breaks",
                    path.display()
                ));
            }
            headers.retain(|(known, _)| known != name);
            headers.push((name.clone(), value));
        }
        Ok(headers)
    }

    fn succeeded(&self) {
        let was_connected = self.shared.connected.swap(true, Ordering::Relaxed);
        if let Ok(mut last) = self.shared.last_error.lock() {
            *last = None;
        }
        let had_failures = self.shared.failures.load(Ordering::Relaxed) > 0;
        if !was_connected && had_failures {
            tracing::info!(endpoint = %self.settings.endpoint, queued = self.spool.stats().pending, "the collector accepts events again");
        }
    }

    fn failed(&self, message: &str) {
        self.shared.failures.fetch_add(1, Ordering::Relaxed);
        let was_connected = self.shared.connected.swap(false, Ordering::Relaxed);
        let mut last = self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Each distinct failure is logged once, and again after a success.
        if was_connected || last.as_deref() != Some(message) {
            tracing::error!(endpoint = %self.settings.endpoint, error = %message, queued = self.spool.stats().pending, "failed to export events; they stay queued and are sent again");
        }
        *last = Some(message.to_owned());
    }

    /// Sleeps for `pause`, waking early when the daemon stops.
    fn pause(&self, pause: Duration) {
        let deadline = Instant::now() + pause;
        while Instant::now() < deadline && !self.shared.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50).min(deadline - Instant::now()));
        }
    }
}
