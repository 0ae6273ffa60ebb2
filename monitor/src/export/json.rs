//! The JSON-lines sink: one event per line, to standard output or a file.

use std::{
    fs::OpenOptions,
    io::{self, BufWriter, Write},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use thiserror::Error;

use super::event::{Event, Resource};

/// The sink could not be opened or written.
#[derive(Debug, Error)]
pub enum ExportError {
    /// The output file could not be opened.
    #[error("failed to open the event file {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing failed.
    #[error("failed to write events to {target}")]
    Write {
        /// `stdout` or the file path.
        target: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl ExportError {
    /// Returns whether the reader of the output went away (a closed pipe), so no later write can
    /// succeed either.
    pub fn is_closed_output(&self) -> bool {
        match self {
            Self::Write { source, .. } => source.kind() == io::ErrorKind::BrokenPipe,
            Self::Open { .. } => false,
        }
    }
}

/// Writes events as JSON lines. Output is buffered; [`JsonLinesSink::flush`] is called after
/// every batch read from the ring buffer and at shutdown.
pub struct JsonLinesSink {
    target: String,
    /// The file, for sinks that write to one; `None` for standard output.
    path: Option<PathBuf>,
    writer: BufWriter<Box<dyn Write + Send>>,
    resource: Resource,
}

impl JsonLinesSink {
    /// Creates a sink on standard output.
    pub fn stdout(resource: Resource) -> Self {
        Self::new("stdout".into(), Box::new(io::stdout()), resource)
    }

    /// Creates a sink appending to a file, created with mode 0640 when missing.
    pub fn file(path: &Path, resource: Resource) -> Result<Self, ExportError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
            .map_err(|source| ExportError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let mut sink = Self::new(path.display().to_string(), Box::new(file), resource);
        sink.path = Some(path.to_path_buf());
        Ok(sink)
    }

    fn new(target: String, writer: Box<dyn Write + Send>, resource: Resource) -> Self {
        Self {
            target,
            path: None,
            writer: BufWriter::new(writer),
            resource,
        }
    }

    /// Flushes and opens the file again by name, so that a rotated file (renamed by
    /// logrotate) is replaced by a new one. Standard output is only flushed.
    pub fn reopen(&mut self) -> Result<(), ExportError> {
        self.flush()?;
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let reopened = Self::file(&path, self.resource.clone())?;
        self.writer = reopened.writer;
        Ok(())
    }

    /// Returns where events go: `stdout` or the file path.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Writes one event.
    pub fn write(&mut self, event: &Event) -> Result<(), ExportError> {
        let line = event.line(&self.resource);
        serde_json::to_writer(&mut self.writer, &line)
            .map_err(io::Error::from)
            .and_then(|()| self.writer.write_all(b"\n"))
            .map_err(|source| ExportError::Write {
                target: self.target.clone(),
                source,
            })
    }

    /// Flushes buffered events.
    pub fn flush(&mut self) -> Result<(), ExportError> {
        self.writer.flush().map_err(|source| ExportError::Write {
            target: self.target.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::export::event::Severity;

    #[test]
    fn event_is_one_json_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut sink = JsonLinesSink::file(&path, Resource::detect()).unwrap();
        let mut event = Event::new("credwatch.credential.access", Severity::Info, UNIX_EPOCH);
        event
            .set("process.pid", 42)
            .set("file.path", "/root/.aws/credentials");
        sink.write(&event).unwrap();
        sink.write(&event).unwrap();
        sink.flush().unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let value: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(value["event_name"], "credwatch.credential.access");
        assert_eq!(value["time"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(value["attributes"]["process.pid"], 42);
        assert_eq!(value["resource"]["service.name"], "credwatch");
        assert_eq!(value["severity_number"], 9);
        assert_eq!(value["severity_text"], "INFO");
        assert!(value["observed_time"].as_str().unwrap().ends_with('Z'));
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "attributes",
                "event_name",
                "observed_time",
                "resource",
                "severity_number",
                "severity_text",
                "time"
            ]
        );
        assert!(
            lines[0].starts_with("{\"attributes\":{\"file.path\""),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn reopen_follows_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let rotated = dir.path().join("events.jsonl.1");
        let mut sink = JsonLinesSink::file(&path, Resource::detect()).unwrap();
        let event = Event::new("credwatch.credential.access", Severity::Info, UNIX_EPOCH);
        sink.write(&event).unwrap();
        sink.flush().unwrap();

        std::fs::rename(&path, &rotated).unwrap();
        sink.reopen().unwrap();
        sink.write(&event).unwrap();
        sink.flush().unwrap();

        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap().lines().count(),
            1
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }

    #[test]
    fn unopenable_file_names_path() {
        let error = JsonLinesSink::file(
            Path::new("/nonexistent/dir/events.jsonl"),
            Resource::detect(),
        )
        .err()
        .unwrap();
        assert!(error.to_string().contains("/nonexistent/dir/events.jsonl"));
    }
}
