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
    rotation: Option<Rotation>,
    /// Bytes in the current file, counted when rotation is on.
    written: u64,
}

/// Size-based rotation of the event file: `events.jsonl` becomes `events.jsonl.1`, the old
/// `.1` becomes `.2`, and so on; the file past `keep` is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Size at which the file is rotated, in bytes.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
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
        let written = file.metadata().map_or(0, |metadata| metadata.len());
        let mut sink = Self::new(path.display().to_string(), Box::new(file), resource);
        sink.path = Some(path.to_path_buf());
        sink.written = written;
        Ok(sink)
    }

    /// Rotates the file once it reaches `rotation.max_bytes`.
    pub fn with_rotation(mut self, rotation: Rotation) -> Self {
        self.rotation = Some(rotation);
        self
    }

    fn new(target: String, writer: Box<dyn Write + Send>, resource: Resource) -> Self {
        Self {
            target,
            path: None,
            writer: BufWriter::new(writer),
            resource,
            rotation: None,
            written: 0,
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
        self.written = reopened.written;
        Ok(())
    }

    /// Renames the file to `.1` (shifting older ones up to `keep`) and starts a new one, when
    /// it reached the rotation size.
    fn rotate_if_full(&mut self) -> Result<(), ExportError> {
        let (Some(rotation), Some(path)) = (self.rotation, self.path.clone()) else {
            return Ok(());
        };
        if self.written < rotation.max_bytes {
            return Ok(());
        }
        self.flush()?;
        let numbered = |index: u32| {
            let mut name = path.clone().into_os_string();
            name.push(format!(".{index}"));
            PathBuf::from(name)
        };
        let shifted = (1..=rotation.keep).rev().try_for_each(|index| {
            let from = if index == 1 {
                path.clone()
            } else {
                numbered(index - 1)
            };
            match std::fs::rename(&from, numbered(index)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            }
        });
        let result = shifted.and_then(|()| {
            if rotation.keep == 0 {
                std::fs::remove_file(&path)
            } else {
                Ok(())
            }
        });
        if let Err(source) = result {
            // The events go on to the full file rather than being lost.
            tracing::warn!(path = %path.display(), error = %source, "failed to rotate the event file");
            self.written = 0;
            return Ok(());
        }
        self.reopen()
    }

    /// Returns where events go: `stdout` or the file path.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Writes one event, after rotating the file when it is full.
    pub fn write(&mut self, event: &Event) -> Result<(), ExportError> {
        self.rotate_if_full()?;
        let line = event.line(&self.resource);
        let mut counted = CountingWriter {
            inner: &mut self.writer,
            count: 0,
        };
        let result = serde_json::to_writer(&mut counted, &line)
            .map_err(io::Error::from)
            .and_then(|()| counted.write_all(b"\n"));
        self.written += counted.count;
        result.map_err(|source| ExportError::Write {
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

/// A writer that counts the bytes passed through.
struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.count += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::export::event::{Severity, name};

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

    #[test]
    fn full_file_rotates_and_keeps_two() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut sink = JsonLinesSink::file(&path, Resource::detect())
            .unwrap()
            .with_rotation(Rotation {
                max_bytes: 2_000,
                keep: 2,
            });
        for index in 0..40 {
            let mut event = Event::new(name::MONITOR_HEALTH, Severity::Info, UNIX_EPOCH);
            event.set("index", index);
            sink.write(&event).unwrap();
        }
        sink.flush().unwrap();

        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]);
        for name in &names {
            let size = std::fs::metadata(dir.path().join(name)).unwrap().len();
            // A file is rotated at the first write past the size, so it ends one line above it.
            assert!(size < 2_000 + 1_000, "{name} has {size} bytes");
        }
        let newest = std::fs::read_to_string(&path).unwrap();
        let last: serde_json::Value = serde_json::from_str(newest.lines().last().unwrap()).unwrap();
        assert_eq!(last["attributes"]["index"], 39);
    }
}
