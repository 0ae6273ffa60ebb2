//! SHA-256 of executables, computed once per file version on a background thread.
//!
//! At exec the daemon opens `/proc/PID/exe`, which refers to the executed file even when it
//! was replaced or deleted since, and keys it by device, inode, size and modification time.
//! A file version not seen before is hashed by a worker thread, so a large binary never
//! stalls the event loop. Events written before the hash is ready go without it. Files larger
//! than [`MAX_HASHED_BYTES`] are not hashed.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    io::Read as _,
    os::unix::fs::MetadataExt as _,
    sync::{
        Arc, Mutex,
        mpsc::{self, SyncSender, TrySendError},
    },
};

use sha2::{Digest as _, Sha256};

/// Largest executable hashed, in bytes.
pub const MAX_HASHED_BYTES: u64 = 256 * 1024 * 1024;
/// Files waiting for the worker at most; more are skipped and counted.
const QUEUE_LEN: usize = 1024;
/// Most file versions remembered; the cache starts over when full.
const MAX_ENTRIES: usize = 16_384;

/// A version of an executable file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i64,
}

/// Counters for the health event.
#[derive(Clone, Copy, Debug, Default)]
pub struct HashStats {
    /// Executables hashed.
    pub hashed: u64,
    /// Executables not hashed: too large, unreadable, or the queue was full.
    pub skipped: u64,
}

/// The hashes known so far and the worker that computes new ones.
pub struct ExecutableHashes {
    done: Arc<Mutex<HashMap<FileKey, String>>>,
    stats: Arc<Mutex<HashStats>>,
    submitted: HashSet<FileKey>,
    queue: Option<SyncSender<(FileKey, File)>>,
}

impl ExecutableHashes {
    /// Starts the worker thread. Without a worker (the thread could not start) no hash is
    /// computed and every executable is counted as skipped.
    pub fn start() -> Self {
        let done = Arc::new(Mutex::new(HashMap::new()));
        let stats = Arc::new(Mutex::new(HashStats::default()));
        let (sender, receiver) = mpsc::sync_channel::<(FileKey, File)>(QUEUE_LEN);
        let worker_done = Arc::clone(&done);
        let worker_stats = Arc::clone(&stats);
        let spawned = std::thread::Builder::new()
            .name("exe-hash".into())
            .spawn(move || {
                for (key, file) in receiver {
                    let hash = hash_file(file, key.size);
                    let mut stats = lock(&worker_stats);
                    match hash {
                        Some(hash) => {
                            stats.hashed += 1;
                            let mut done = lock(&worker_done);
                            if done.len() >= MAX_ENTRIES {
                                done.clear();
                            }
                            done.insert(key, hash);
                        }
                        None => stats.skipped += 1,
                    }
                }
            });
        let queue = match spawned {
            Ok(_) => Some(sender),
            Err(error) => {
                tracing::warn!(%error, "failed to start the executable hash thread; events carry no executable hash");
                None
            }
        };
        Self {
            done,
            stats,
            submitted: HashSet::new(),
            queue,
        }
    }

    /// Opens the executable of `pid` and queues it for hashing when its version is new.
    /// Returns its key, for [`ExecutableHashes::get`], or `None` when the process is gone.
    pub fn exec(&mut self, pid: u32) -> Option<FileKey> {
        let file = File::open(format!("/proc/{pid}/exe")).ok()?;
        let metadata = file.metadata().ok()?;
        let key = FileKey {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified_ns: metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec(),
        };
        if self.submitted.len() >= MAX_ENTRIES {
            self.submitted.clear();
        }
        if !self.submitted.insert(key) {
            return Some(key);
        }
        if key.size > MAX_HASHED_BYTES {
            lock(&self.stats).skipped += 1;
            return Some(key);
        }
        let queued = match &self.queue {
            Some(queue) => match queue.try_send((key, file)) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !queued {
            // Forgotten, so that a later exec of the same file tries again.
            self.submitted.remove(&key);
            lock(&self.stats).skipped += 1;
        }
        Some(key)
    }

    /// Returns the hash of a file version, once the worker has computed it.
    pub fn get(&self, key: &FileKey) -> Option<String> {
        lock(&self.done).get(key).cloned()
    }

    /// Returns the counters.
    pub fn stats(&self) -> HashStats {
        *lock(&self.stats)
    }
}

/// The executable file version of each live process, and its hash.
pub struct Executables {
    hashes: ExecutableHashes,
    keys: HashMap<u32, FileKey>,
}

impl Executables {
    /// Starts the hash worker.
    pub fn start() -> Self {
        Self {
            hashes: ExecutableHashes::start(),
            keys: HashMap::new(),
        }
    }

    /// Records the executable of a new program of `pid`.
    pub fn exec(&mut self, pid: u32) {
        match self.hashes.exec(pid) {
            Some(key) => {
                if self.keys.len() >= MAX_ENTRIES && !self.keys.contains_key(&pid) {
                    self.keys.clear();
                }
                self.keys.insert(pid, key);
            }
            None => {
                self.keys.remove(&pid);
            }
        }
    }

    /// Returns the SHA-256 of the executable of `pid`, when it is known by now. A process
    /// not seen at exec (it forked, or ran before the daemon) is looked up on first use.
    pub fn hash_of(&mut self, pid: u32) -> Option<String> {
        if !self.keys.contains_key(&pid) {
            self.exec(pid);
        }
        self.keys.get(&pid).and_then(|key| self.hashes.get(key))
    }

    /// Forgets an exited process.
    pub fn exited(&mut self, pid: u32) {
        self.keys.remove(&pid);
    }

    /// Returns the counters.
    pub fn stats(&self) -> HashStats {
        self.hashes.stats()
    }
}

/// Locks a mutex, also after a panic of the other thread, whose data is still consistent:
/// every update is a single insert or increment.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Returns the lowercase hex SHA-256 of `file`, or `None` when it cannot be read or its size
/// changed while it was read.
fn hash_file(file: File, size: u64) -> Option<String> {
    let mut hasher = Sha256::new();
    let mut reader = file.take(MAX_HASHED_BYTES + 1);
    let mut buffer = vec![0_u8; 1 << 16];
    let mut total = 0_u64;
    loop {
        let read = reader.read(&mut buffer).ok()?;
        if read == 0 {
            break;
        }
        total += read as u64;
        hasher.update(&buffer[..read]);
    }
    if total != size {
        return None;
    }
    Some(
        hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_executable_is_hashed_once() {
        let mut hashes = ExecutableHashes::start();
        let pid = std::process::id();

        let key = hashes.exec(pid).unwrap();
        let again = hashes.exec(pid).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let hash = loop {
            if let Some(hash) = hashes.get(&key) {
                break hash;
            }
            assert!(std::time::Instant::now() < deadline, "no hash after 30 s");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };

        assert_eq!(key, again);
        assert_eq!(hash.len(), 64);
        let expected = hash_file(File::open("/proc/self/exe").unwrap(), key.size).unwrap();
        assert_eq!(hash, expected);
        assert_eq!(hashes.stats().hashed, 1);
    }

    #[test]
    fn known_content_and_changed_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"abc").unwrap();

        let hash = hash_file(File::open(&path).unwrap(), 3);

        assert_eq!(
            hash.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(hash_file(File::open(&path).unwrap(), 4), None);
    }

    #[test]
    fn gone_process_has_no_key() {
        let mut hashes = ExecutableHashes::start();
        assert_eq!(hashes.exec(4_194_304 + 77), None);
    }
}
