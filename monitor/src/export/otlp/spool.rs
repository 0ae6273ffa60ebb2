//! The delivery queue on disk: every event bound for the collector is appended here first, and
//! leaves only once the collector has accepted it.
//!
//! The queue is a directory of segment files (`<sequence>.seg`, 4 MiB at most), each a run of
//! records of a 4-byte little-endian length and that many bytes. A cursor file names the next
//! record to deliver (segment, byte offset, record index), and is replaced by a rename after
//! each accepted batch. Records leave in the order they came, also across restarts. A record
//! that was sent but whose acceptance was not yet stored when the daemon died is sent again,
//! so delivery is at least once. When the queue grows past its bound, the oldest segment is
//! deleted and its undelivered records are counted as dropped. The segments of a batch that
//! is being sent are kept until the collector responds, so the next oldest goes instead.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Read, Seek, SeekFrom, Write},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{Condvar, Mutex, MutexGuard},
    time::Duration,
};

/// Largest segment file.
const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
/// Largest record; a longer length field means a damaged segment.
const MAX_RECORD_BYTES: u32 = 16 * 1024 * 1024;
/// Name of the cursor file.
const CURSOR_FILE: &str = "cursor";
/// Suffix of segment files.
const SEGMENT_SUFFIX: &str = ".seg";

/// The position of the next record to deliver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Segment sequence number.
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
    /// Records before it in the segment.
    pub index: u64,
}

/// Counts for the health event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Records waiting for delivery.
    pub pending: u64,
    /// Records deleted undelivered because the queue reached its bound.
    pub dropped: u64,
    /// Bytes of the segment files.
    pub bytes: u64,
}

/// A batch of records read from the queue, and the position after it.
#[derive(Debug, Default)]
pub struct Batch {
    /// The records, oldest first.
    pub records: Vec<Vec<u8>>,
    /// Position of the next batch once this one is accepted.
    pub next: Position,
}

#[derive(Debug)]
struct Segment {
    sequence: u64,
    bytes: u64,
    records: u64,
}

#[derive(Debug)]
struct Inner {
    directory: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    writer: Option<BufWriter<File>>,
    cursor: Position,
    /// End of the batch being sent: its segments are kept when the bound is reached, because
    /// their records may already be delivered.
    in_flight: Option<Position>,
    stats: SpoolStats,
}

/// The queue, shared by the event loop (which appends) and the delivery thread (which reads
/// and commits).
#[derive(Debug)]
pub struct Spool {
    inner: Mutex<Inner>,
    appended: Condvar,
}

impl Spool {
    /// Opens the queue in `directory`, creating it with mode 0700, and finds the records left
    /// undelivered by an earlier run. A damaged record at the end of the last segment (a write
    /// cut short) is cut off.
    pub fn open(directory: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(directory)
            .map_err(|error| with_path(error, directory))?;
        let mut segments = VecDeque::new();
        for sequence in segment_sequences(directory)? {
            let path = segment_path(directory, sequence);
            let (bytes, records) = scan_segment(&path)?;
            segments.push_back(Segment {
                sequence,
                bytes,
                records,
            });
        }
        let cursor = read_cursor(directory, &segments);
        let mut inner = Inner {
            directory: directory.to_path_buf(),
            max_bytes,
            segment_bytes: SEGMENT_BYTES.min((max_bytes / 4).max(1)),
            segments,
            writer: None,
            cursor,
            in_flight: None,
            stats: SpoolStats::default(),
        };
        inner.count();
        Ok(Self {
            inner: Mutex::new(inner),
            appended: Condvar::new(),
        })
    }

    /// Appends one record. The record reaches the file at the next [`Spool::flush`] or when the
    /// buffer fills.
    pub fn append(&self, record: &[u8]) -> io::Result<()> {
        let mut inner = self.lock();
        inner.append(record)
    }

    /// Writes buffered records to the segment file and wakes the delivery thread.
    pub fn flush(&self) -> io::Result<()> {
        let result = self.lock().flush();
        self.appended.notify_all();
        result
    }

    /// Returns up to `max_records` records (and at least one, if any waits) whose total length
    /// stays within `max_bytes`, starting at the cursor. The cursor does not move until
    /// [`Spool::commit`].
    pub fn peek(&self, max_records: usize, max_bytes: usize) -> io::Result<Batch> {
        let mut inner = self.lock();
        inner.flush()?;
        let batch = inner.read_batch(max_records, max_bytes)?;
        inner.in_flight = (!batch.records.is_empty()).then_some(batch.next);
        Ok(batch)
    }

    /// Marks everything before `next` as delivered, stores the cursor and deletes the segments
    /// fully delivered.
    pub fn commit(&self, delivered: u64, next: Position) -> io::Result<()> {
        let mut inner = self.lock();
        inner.in_flight = None;
        inner.commit(delivered, next)
    }

    /// Ends the batch in flight without delivering it, after a failed request, so that the
    /// bound may drop its segments again.
    pub fn release(&self) {
        self.lock().in_flight = None;
    }

    /// Waits until a record is appended and flushed, or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        let inner = self.lock();
        if inner.stats.pending > 0 {
            return;
        }
        let _ = self.appended.wait_timeout(inner, timeout);
    }

    /// Returns the counts.
    pub fn stats(&self) -> SpoolStats {
        self.lock().stats
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while the lock was held leaves plain counters and file handles, which are
        // still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn append(&mut self, record: &[u8]) -> io::Result<()> {
        let length = u32::try_from(record.len())
            .ok()
            .filter(|length| *length <= MAX_RECORD_BYTES)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?;
        let size = 4 + u64::from(length);
        let full = self
            .segments
            .back()
            .is_none_or(|last| last.bytes > 0 && last.bytes + size > self.segment_bytes);
        if full || self.writer.is_none() {
            self.open_writer(full)?;
        }
        let writer = self.writer.as_mut().expect("a writer was just opened");
        writer.write_all(&length.to_le_bytes())?;
        writer.write_all(record)?;
        let last = self.segments.back_mut().expect("a segment was just opened");
        last.bytes += size;
        last.records += 1;
        self.stats.pending += 1;
        self.stats.bytes += size;
        self.enforce_bound();
        Ok(())
    }

    /// Opens the last segment for appending, or a new one after it when `new` is set.
    fn open_writer(&mut self, new: bool) -> io::Result<()> {
        self.flush()?;
        if new || self.segments.is_empty() {
            let sequence = self.segments.back().map_or(1, |last| last.sequence + 1);
            self.segments.push_back(Segment {
                sequence,
                bytes: 0,
                records: 0,
            });
        }
        let last = self.segments.back().expect("a segment exists");
        let path = segment_path(&self.directory, last.sequence);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|error| with_path(error, &path))?;
        self.writer = Some(BufWriter::new(file));
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.writer {
            Some(writer) => writer.flush(),
            None => Ok(()),
        }
    }

    /// Deletes the oldest segments while the queue is over its bound, keeping the one being
    /// written and those of the batch in flight, and counts their undelivered records as
    /// dropped.
    fn enforce_bound(&mut self) {
        while self.stats.bytes > self.max_bytes {
            let in_flight = self.in_flight.map(|end| self.cursor.segment..=end.segment);
            let last = self.segments.len().saturating_sub(1);
            let Some(index) = self.segments.iter().take(last).position(|segment| {
                !in_flight
                    .as_ref()
                    .is_some_and(|range| range.contains(&segment.sequence))
            }) else {
                return;
            };
            let dropped = self.segments.remove(index).expect("the index is in range");
            self.drop_segment(&dropped);
        }
    }

    /// Counts the undelivered records of a deleted segment, moves the cursor past it when it
    /// pointed into it, and deletes its file.
    fn drop_segment(&mut self, dropped: &Segment) {
        let undelivered = match dropped.sequence.cmp(&self.cursor.segment) {
            std::cmp::Ordering::Less => 0,
            std::cmp::Ordering::Equal => dropped.records.saturating_sub(self.cursor.index),
            std::cmp::Ordering::Greater => dropped.records,
        };
        self.stats.dropped += undelivered;
        self.stats.pending = self.stats.pending.saturating_sub(undelivered);
        self.stats.bytes = self.stats.bytes.saturating_sub(dropped.bytes);
        if self.cursor.segment == dropped.sequence {
            let next = self
                .segments
                .iter()
                .find(|segment| segment.sequence > dropped.sequence)
                .map_or(dropped.sequence + 1, |segment| segment.sequence);
            self.cursor = Position {
                segment: next,
                offset: 0,
                index: 0,
            };
        }
        let path = segment_path(&self.directory, dropped.sequence);
        if let Err(error) = fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), %error, "failed to delete a full queue segment");
        }
    }

    fn read_batch(&mut self, max_records: usize, max_bytes: usize) -> io::Result<Batch> {
        let mut batch = Batch {
            records: Vec::new(),
            next: self.cursor,
        };
        let mut total = 0;
        let sequences: Vec<(u64, u64)> = self
            .segments
            .iter()
            .filter(|segment| segment.sequence >= self.cursor.segment)
            .map(|segment| (segment.sequence, segment.bytes))
            .collect();
        for (sequence, bytes) in sequences {
            if batch.next.segment != sequence {
                batch.next = Position {
                    segment: sequence,
                    offset: 0,
                    index: 0,
                };
            }
            if batch.next.offset >= bytes {
                continue;
            }
            let path = segment_path(&self.directory, sequence);
            let mut file = File::open(&path).map_err(|error| with_path(error, &path))?;
            file.seek(SeekFrom::Start(batch.next.offset))?;
            let mut reader = io::BufReader::new(file.take(bytes - batch.next.offset));
            while batch.records.len() < max_records {
                let Some(record) = read_record(&mut reader)? else {
                    break;
                };
                if !batch.records.is_empty() && total + record.len() > max_bytes {
                    return Ok(batch);
                }
                total += record.len();
                batch.next.offset += 4 + record.len() as u64;
                batch.next.index += 1;
                batch.records.push(record);
            }
            if batch.records.len() >= max_records {
                break;
            }
        }
        Ok(batch)
    }

    fn commit(&mut self, delivered: u64, next: Position) -> io::Result<()> {
        // Segments may have been dropped for the bound while the batch was on its way. Their
        // records were counted as dropped then, so only later positions move the cursor.
        if next.segment < self.cursor.segment
            || (next.segment == self.cursor.segment && next.offset <= self.cursor.offset)
        {
            return Ok(());
        }
        self.cursor = next;
        self.stats.pending = self.stats.pending.saturating_sub(delivered);
        write_cursor(&self.directory, &self.cursor)?;
        while self.segments.len() > 1
            && self
                .segments
                .front()
                .is_some_and(|oldest| oldest.sequence < self.cursor.segment)
        {
            let oldest = self.segments.pop_front().expect("a segment exists");
            self.stats.bytes = self.stats.bytes.saturating_sub(oldest.bytes);
            let path = segment_path(&self.directory, oldest.sequence);
            if let Err(error) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), %error, "failed to delete a delivered queue segment");
            }
        }
        Ok(())
    }

    /// Sets the counts from the segments and the cursor, at open.
    fn count(&mut self) {
        self.stats.bytes = self.segments.iter().map(|segment| segment.bytes).sum();
        self.stats.pending = self
            .segments
            .iter()
            .map(|segment| match segment.sequence.cmp(&self.cursor.segment) {
                std::cmp::Ordering::Less => 0,
                std::cmp::Ordering::Equal => segment.records.saturating_sub(self.cursor.index),
                std::cmp::Ordering::Greater => segment.records,
            })
            .sum();
    }
}

fn read_record(reader: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut length = [0_u8; 4];
    match reader.read_exact(&mut length) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = u32::from_le_bytes(length);
    if length > MAX_RECORD_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("queue record of {length} bytes"),
        ));
    }
    let mut record = vec![0; length as usize];
    reader.read_exact(&mut record)?;
    Ok(Some(record))
}

/// Returns the bytes and records of the complete records of a segment, and cuts off a damaged
/// or partial record at its end.
fn scan_segment(path: &Path) -> io::Result<(u64, u64)> {
    let file = File::open(path).map_err(|error| with_path(error, path))?;
    let size = file.metadata()?.len();
    let mut reader = io::BufReader::new(file);
    let (mut bytes, mut records) = (0_u64, 0_u64);
    loop {
        let mut length = [0_u8; 4];
        if reader.read_exact(&mut length).is_err() {
            break;
        }
        let length = u64::from(u32::from_le_bytes(length));
        if length > u64::from(MAX_RECORD_BYTES) || bytes + 4 + length > size {
            break;
        }
        io::copy(&mut (&mut reader).take(length), &mut io::sink())?;
        bytes += 4 + length;
        records += 1;
    }
    if bytes < size {
        tracing::warn!(path = %path.display(), kept = bytes, size, "cut a damaged record off the end of a queue segment");
        OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|file| file.set_len(bytes))
            .map_err(|error| with_path(error, path))?;
    }
    Ok((bytes, records))
}

fn segment_sequences(directory: &Path) -> io::Result<Vec<u64>> {
    let mut sequences: Vec<u64> = fs::read_dir(directory)
        .map_err(|error| with_path(error, directory))?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            name.to_str()?.strip_suffix(SEGMENT_SUFFIX)?.parse().ok()
        })
        .collect();
    sequences.sort_unstable();
    Ok(sequences)
}

fn segment_path(directory: &Path, sequence: u64) -> PathBuf {
    directory.join(format!("{sequence:016}{SEGMENT_SUFFIX}"))
}

/// Reads the cursor, or starts at the oldest segment when it is missing, damaged or points at a
/// segment that no longer exists.
fn read_cursor(directory: &Path, segments: &VecDeque<Segment>) -> Position {
    let start = Position {
        segment: segments.front().map_or(0, |oldest| oldest.sequence),
        offset: 0,
        index: 0,
    };
    let Ok(text) = fs::read_to_string(directory.join(CURSOR_FILE)) else {
        return start;
    };
    let numbers: Vec<u64> = text
        .split_whitespace()
        .filter_map(|part| part.parse().ok())
        .collect();
    let [segment, offset, index] = numbers[..] else {
        tracing::warn!(path = %directory.join(CURSOR_FILE).display(), "the queue cursor is damaged; delivering from the oldest segment");
        return start;
    };
    let cursor = Position {
        segment,
        offset,
        index,
    };
    match segments.iter().find(|known| known.sequence == segment) {
        Some(known) if offset <= known.bytes && index <= known.records => cursor,
        Some(_) => start,
        // The cursor's segment was delivered and deleted: delivery goes on after it.
        None => match segments.iter().find(|known| known.sequence > segment) {
            Some(later) => Position {
                segment: later.sequence,
                offset: 0,
                index: 0,
            },
            None => cursor,
        },
    }
}

fn write_cursor(directory: &Path, cursor: &Position) -> io::Result<()> {
    let path = directory.join(CURSOR_FILE);
    let temporary = directory.join(format!("{CURSOR_FILE}.new"));
    let text = format!("{} {} {}\n", cursor.segment, cursor.offset, cursor.index);
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|error| with_path(error, &temporary))?;
    fs::rename(&temporary, &path).map_err(|error| with_path(error, &path))
}

fn with_path(error: io::Error, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(index: usize) -> Vec<u8> {
        format!("event {index:04}").into_bytes()
    }

    fn drain(spool: &Spool, batch_size: usize) -> Vec<Vec<u8>> {
        let mut delivered = Vec::new();
        loop {
            let batch = spool.peek(batch_size, usize::MAX).unwrap();
            if batch.records.is_empty() {
                return delivered;
            }
            let count = batch.records.len() as u64;
            delivered.extend(batch.records);
            spool.commit(count, batch.next).unwrap();
        }
    }

    #[test]
    fn records_leave_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        for index in 0..100 {
            spool.append(&record(index)).unwrap();
        }
        spool.flush().unwrap();

        let delivered = drain(&spool, 7);

        assert_eq!(delivered, (0..100).map(record).collect::<Vec<_>>());
        assert_eq!(spool.stats().pending, 0);
    }

    #[test]
    fn unaccepted_batch_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        for index in 0..3 {
            spool.append(&record(index)).unwrap();
        }

        let first = spool.peek(2, usize::MAX).unwrap();
        let again = spool.peek(2, usize::MAX).unwrap();

        assert_eq!(first.records, again.records);
        assert_eq!(spool.stats().pending, 3);
    }

    #[test]
    fn undelivered_records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path(), 1 << 20).unwrap();
            for index in 0..10 {
                spool.append(&record(index)).unwrap();
            }
            spool.flush().unwrap();
            let batch = spool.peek(4, usize::MAX).unwrap();
            spool.commit(4, batch.next).unwrap();
        }

        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.stats().pending, 6);
        spool.append(&record(10)).unwrap();

        assert_eq!(drain(&spool, 3), (4..11).map(record).collect::<Vec<_>>());
    }

    #[test]
    fn bound_drops_oldest_and_counts_exactly() {
        let dir = tempfile::tempdir().unwrap();
        // Segments of 256 bytes: 21 records of 12 bytes each.
        let spool = Spool::open(dir.path(), 1024).unwrap();
        for index in 0..200 {
            spool.append(&record(index)).unwrap();
        }
        spool.flush().unwrap();
        let stats = spool.stats();

        let delivered = drain(&spool, 50);

        assert!(stats.bytes <= 1024, "{stats:?}");
        assert_eq!(stats.dropped + delivered.len() as u64, 200, "{stats:?}");
        assert_eq!(stats.pending, delivered.len() as u64);
        // What is left is the newest records, in order.
        let first = 200 - delivered.len();
        assert_eq!(delivered, (first..200).map(record).collect::<Vec<_>>());
    }

    #[test]
    fn batch_in_flight_is_never_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1024).unwrap();
        for index in 0..60 {
            spool.append(&record(index)).unwrap();
        }
        let batch = spool.peek(10, usize::MAX).unwrap();
        // The collector keeps the request open while the daemon goes on writing.
        for index in 60..200 {
            spool.append(&record(index)).unwrap();
        }
        spool.commit(10, batch.next).unwrap();
        let dropped = spool.stats().dropped;

        let rest = drain(&spool, 1000);

        assert_eq!(batch.records, (0..10).map(record).collect::<Vec<_>>());
        assert_eq!(10 + rest.len() as u64 + dropped, 200);
        assert_eq!(spool.stats().pending, 0);
    }

    #[test]
    fn partial_record_at_end_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path(), 1 << 20).unwrap();
            spool.append(&record(0)).unwrap();
            spool.append(&record(1)).unwrap();
            spool.flush().unwrap();
        }
        let segment = segment_path(dir.path(), 1);
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(&[200, 0, 0, 0, b'x']).unwrap();
        drop(file);

        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&record(2)).unwrap();

        assert_eq!(drain(&spool, 10), (0..3).map(record).collect::<Vec<_>>());
    }

    #[test]
    fn delivered_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 4096).unwrap();
        for index in 0..300 {
            spool.append(&record(index)).unwrap();
        }
        spool.flush().unwrap();
        drain(&spool, 1000);

        let segments = segment_sequences(dir.path()).unwrap();
        assert_eq!(segments.len(), 1, "{segments:?}");
        assert_eq!(spool.stats().pending, 0);
    }

    #[test]
    fn damaged_cursor_restarts_at_oldest() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path(), 1 << 20).unwrap();
            spool.append(&record(0)).unwrap();
            spool.flush().unwrap();
        }
        fs::write(dir.path().join(CURSOR_FILE), "garbage").unwrap();

        let spool = Spool::open(dir.path(), 1 << 20).unwrap();

        assert_eq!(drain(&spool, 10), vec![record(0)]);
    }
}
