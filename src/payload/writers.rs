//! The pool of threads that write the regular files of a restore, while the parsing thread
//! authenticates, decompresses and splits the tar stream.
//!
//! Memory is bounded whatever the archive's size: file data travels in at most [`BUFFERS`]
//! buffers of at most [`CHUNK`] bytes each, which circulate between the parsing thread and
//! the writers (a writer hands a buffer back once its bytes are written, and the parsing
//! thread waits for a free one). Small files go to the writers in turn (a directory of many
//! small files would otherwise keep one writer busy while the others wait, as measured),
//! and each writer keeps the descriptor of the directory it wrote to last; the chunks of a
//! large file go to the writers in turn too, each written at its offset, and the writer that
//! completes the last one applies the file's metadata.
//!
//! Entries whose paths meet (`a` and `a/b`, or one path twice) are never in flight
//! together: the parsing thread waits for the earlier to be finished ([`Writers::settle`]),
//! so they take effect in archive order, as in a serial restore.
//!
//! The first failure of a writer (already naming the entry) stops the restore: the other
//! writers skip what is queued, the parsing thread gets that error at its next hand-over,
//! and every thread is joined before the staging directory is removed. Dropping the pool
//! without [`Writers::finish`] (the parsing thread failed) also stops and joins them.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::extract::entry_error;
use super::fresh::Fresh;
use super::write_file::{create_in, finish, FileHead, Parents, Policy};
use super::xattr::XattrFailures;

/// The largest piece of file data handed to a writer at once (and the largest file that
/// travels as one job).
pub(super) const CHUNK: usize = 1 << 20;

/// How many data buffers circulate: at most `BUFFERS * CHUNK` bytes of file data are in
/// memory at any time.
pub(super) const BUFFERS: usize = 24;

/// At most this many writer threads.
const MAX_WRITERS: usize = 4;

/// A large or sparse file, created by the parsing thread and filled in chunks.
pub(super) struct Big {
    /// The open file.
    pub(super) file: File,
    /// Where it is and what it gets once written.
    pub(super) head: FileHead,
    /// Chunks not yet written: the writer that brings it to zero finishes the file.
    pub(super) remaining: AtomicUsize,
}

/// One piece of work for a writer.
enum Job {
    /// A whole small file: create, write, finish.
    Whole(Box<FileHead>, Vec<u8>),
    /// A chunk of a large file, at an offset.
    Chunk(Arc<Big>, u64, Vec<u8>),
}

/// What the parsing thread and the writers share.
struct Shared {
    root: OwnedFd,
    root_path: PathBuf,
    policy: Policy,
    /// Set on the first failure, or when the parsing thread gives up: queued work is
    /// skipped.
    stop: AtomicBool,
    /// The first writer failure.
    error: Mutex<Option<io::Error>>,
    /// The paths of the files handed over and not yet finished (at most [`BUFFERS`]).
    inflight: Mutex<Vec<PathBuf>>,
    /// Signalled when a file is finished.
    finished: Condvar,
}

impl Shared {
    fn fail(&self, e: io::Error) {
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(e);
        }
        self.stop.store(true, Ordering::Release);
    }

    /// A file is finished (or abandoned): entries waiting on its path may go on.
    fn release(&self, rel: &Path) {
        if let Ok(mut list) = self.inflight.lock() {
            if let Some(i) = list.iter().position(|p| p == rel) {
                list.swap_remove(i);
            }
        }
        self.finished.notify_all();
    }

    fn take_error(&self) -> io::Error {
        self.error
            .lock()
            .ok()
            .and_then(|mut e| e.take())
            .unwrap_or_else(|| io::Error::other("a restore writer thread stopped unexpectedly"))
    }
}

/// The writer threads of one restore.
pub(super) struct Writers {
    shared: Arc<Shared>,
    queues: Vec<SyncSender<Job>>,
    free: Receiver<Vec<u8>>,
    handles: Vec<JoinHandle<XattrFailures>>,
    next: usize,
    /// Failures of files finished on the parsing thread.
    own: XattrFailures,
}

impl Writers {
    /// Starts the writers for the staging directory `root` (its descriptor and path).
    pub(super) fn start(
        root: &OwnedFd,
        root_path: &Path,
        as_root: bool,
        skip: &[String],
    ) -> io::Result<Writers> {
        let shared = Arc::new(Shared {
            root: root.try_clone()?,
            root_path: root_path.to_path_buf(),
            policy: Policy {
                as_root,
                skip: skip.to_vec(),
                fresh: Fresh::probe(root, root_path),
            },
            stop: AtomicBool::new(false),
            error: Mutex::new(None),
            inflight: Mutex::new(Vec::new()),
            finished: Condvar::new(),
        });
        let (free_tx, free) = mpsc::sync_channel(BUFFERS);
        for _ in 0..BUFFERS {
            let _ = free_tx.send(Vec::new());
        }
        let n = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, MAX_WRITERS);
        let mut writers = Writers {
            shared,
            queues: Vec::with_capacity(n),
            free,
            handles: Vec::with_capacity(n),
            next: 0,
            own: XattrFailures::default(),
        };
        for i in 0..n {
            let (tx, rx) = mpsc::sync_channel(BUFFERS);
            let shared = Arc::clone(&writers.shared);
            let free_tx = free_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("restore-writer-{i}"))
                .spawn(move || work(&shared, rx, &free_tx))?;
            writers.queues.push(tx);
            writers.handles.push(handle);
        }
        Ok(writers)
    }

    /// The staging directory's descriptor.
    pub(super) fn root(&self) -> &OwnedFd {
        &self.shared.root
    }

    /// How files are finished.
    pub(super) fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    /// Counts attribute failures of a file finished on the parsing thread.
    pub(super) fn add_xattr_failures(&mut self, f: XattrFailures) {
        self.own.merge(f);
    }

    /// Waits until no file in flight is `rel`, beneath it or above it, so that entries
    /// whose paths meet (a file, then a file beneath a directory of that name) take effect
    /// in archive order, as in a serial restore; then, if `claim`, counts `rel` in flight
    /// until a writer finishes it. Returns the first writer failure instead, if any.
    pub(super) fn settle(&self, rel: &Path, claim: bool) -> io::Result<()> {
        let rel_bytes = rel.as_os_str().as_bytes();
        let related = |p: &PathBuf| paths_meet(p.as_os_str().as_bytes(), rel_bytes);
        let mut list = self
            .shared
            .inflight
            .lock()
            .map_err(|_| io::Error::other("a restore writer thread failed"))?;
        while list.iter().any(related) {
            if self.shared.stop.load(Ordering::Acquire) {
                drop(list);
                return Err(self.shared.take_error());
            }
            list = self
                .shared
                .finished
                .wait_timeout(list, Duration::from_millis(50))
                .map_err(|_| io::Error::other("a restore writer thread failed"))?
                .0;
        }
        if claim {
            list.push(rel.to_path_buf());
        }
        Ok(())
    }

    /// Ends the claim of a file finished on the parsing thread.
    pub(super) fn release(&self, rel: &Path) {
        self.shared.release(rel);
    }

    /// A free data buffer (waiting for a writer to hand one back), or the first writer
    /// failure.
    pub(super) fn buffer(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if self.shared.stop.load(Ordering::Acquire) {
                return Err(self.shared.take_error());
            }
            match self.free.recv_timeout(Duration::from_millis(50)) {
                Ok(buf) => return Ok(buf),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(self.shared.take_error()),
            }
        }
    }

    /// Hands a whole small file to the next writer.
    pub(super) fn small(&mut self, head: FileHead, data: Vec<u8>) -> io::Result<()> {
        self.next = (self.next + 1) % self.queues.len();
        self.send(self.next, Job::Whole(Box::new(head), data))
    }

    /// Hands a chunk of a large file to the next writer.
    pub(super) fn chunk(&mut self, big: &Arc<Big>, offset: u64, data: Vec<u8>) -> io::Result<()> {
        self.next = (self.next + 1) % self.queues.len();
        self.send(self.next, Job::Chunk(Arc::clone(big), offset, data))
    }

    fn send(&mut self, i: usize, job: Job) -> io::Result<()> {
        if self.queues[i].send(job).is_err() {
            self.shared.stop.store(true, Ordering::Release);
            return Err(self.shared.take_error());
        }
        Ok(())
    }

    /// Waits until every file handed over is written and finished; the first failure,
    /// or the attribute failures of all files, counted into `failures`.
    pub(super) fn finish(mut self, failures: &mut XattrFailures) -> io::Result<()> {
        failures.merge(std::mem::take(&mut self.own));
        for f in self.join() {
            failures.merge(f);
        }
        if self.shared.stop.load(Ordering::Acquire) {
            return Err(self.shared.take_error());
        }
        Ok(())
    }

    /// Closes the queues and joins every writer; a writer that panicked counts as a
    /// failure.
    fn join(&mut self) -> Vec<XattrFailures> {
        self.queues.clear();
        let mut out = Vec::new();
        for h in self.handles.drain(..) {
            match h.join() {
                Ok(f) => out.push(f),
                Err(_) => self.shared.stop.store(true, Ordering::Release),
            }
        }
        out
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        if !self.handles.is_empty() {
            // The parsing thread failed: skip what is queued, then wait for every writer.
            self.shared.stop.store(true, Ordering::Release);
            self.join();
        }
    }
}

/// Whether one of two checked relative paths (normal components joined by single `/`, as
/// the restore builds them) is the other or beneath it: `a` and `a/b` meet, `a` and `ab`
/// do not. Compares bytes, not components: this runs for every entry against every file
/// in flight.
fn paths_meet(a: &[u8], b: &[u8]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    long.starts_with(short) && (long.len() == short.len() || long[short.len()] == b'/')
}

/// A writer: runs jobs until the queue closes, handing every buffer back.
fn work(shared: &Shared, jobs: Receiver<Job>, free: &SyncSender<Vec<u8>>) -> XattrFailures {
    let mut parents = Parents::default();
    let mut failures = XattrFailures::default();
    for job in jobs {
        let stopped = shared.stop.load(Ordering::Acquire);
        let buf = match job {
            Job::Whole(head, data) => {
                if !stopped {
                    if let Err(e) = whole(shared, &mut parents, &head, &data, &mut failures) {
                        shared.fail(entry_error(&head.name, &shared.root_path, e));
                    }
                }
                shared.release(&head.rel);
                data
            }
            Job::Chunk(big, offset, data) => {
                if !stopped {
                    if let Err(e) = chunk(shared, &big, offset, &data, &mut failures) {
                        shared.fail(entry_error(&big.head.name, &shared.root_path, e));
                    }
                }
                data
            }
        };
        // Never blocks: there are only BUFFERS buffers. The parsing thread may be gone.
        let _ = free.try_send(buf);
    }
    failures
}

/// Creates, writes and finishes a small file.
fn whole(
    shared: &Shared,
    parents: &mut Parents,
    head: &FileHead,
    data: &[u8],
    failures: &mut XattrFailures,
) -> io::Result<()> {
    let (dir, name) = head.split()?;
    let mode = shared.policy.fresh.create_mode(head.meta.perm);
    let mut file = create_in(parents.get(&shared.root, dir)?, name, mode)?;
    file.write_all(data)?;
    finish(&file, head, &shared.policy, failures)
}

/// Writes a chunk of a large file; the last chunk finishes it.
fn chunk(
    shared: &Shared,
    big: &Big,
    offset: u64,
    data: &[u8],
    failures: &mut XattrFailures,
) -> io::Result<()> {
    big.file.write_all_at(data, offset)?;
    if big.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
        let fin = finish(&big.file, &big.head, &shared.policy, failures);
        shared.release(&big.head.rel);
        fin?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
