//! Opening the segments of a whole archive on a thread of its own.
//!
//! Reading a large archive, the thread that reads it also decompresses and parses the
//! payload; authenticating each segment (AES-GCM) and hashing it for the signature (SHA-256)
//! would cost that thread as much again. [`Opener`] moves both off it, to two stages of a
//! pipeline: the reading thread hands over each sealed segment, read straight into a buffer
//! of its own (no copy); the `archive-digest` thread hashes it (signed archives) and passes
//! it on; the `archive-open` thread opens it in place and hands the plaintext back, in
//! order. On incompressible data the hash is the largest cost of a restore's serial path,
//! and the two stages share it out over the cores. At most [`DEPTH`] segments are in
//! flight, so memory stays a few segments whatever the archive's size.
//!
//! Nothing changes for the caller of [`super::DecryptReader`]: plaintext comes only out of
//! a segment that authenticated, errors come in stream order (a read error of a later
//! segment waits until the earlier ones are delivered), and the digest is the one the
//! inline reader computes.

use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use aws_lc_rs::digest;

use super::{io_error, sha256_of, SegmentRef};
use crate::format::{segment, ArchiveKeys, FormatError};

/// Sealed segments in flight between the reading thread and the worker, at most.
pub(crate) const DEPTH: usize = 6;

/// A segment handed to the worker: its buffer (the sealed bytes at the front), where it is,
/// and with the final segment the stream digest when another thread hashed it.
struct Job {
    buf: Vec<u8>,
    seg: SegmentRef,
    digest: Option<[u8; 32]>,
}

/// An opened segment: the buffer with the plaintext at the front, and its length.
pub(crate) struct Opened {
    /// The buffer; its first `len` bytes are the segment's plaintext.
    pub(crate) buf: Vec<u8>,
    /// Plaintext length.
    pub(crate) len: usize,
    /// The stream digest, with the final segment of a signed archive.
    pub(crate) digest: Option<[u8; 32]>,
}

/// What the worker needs to open segments: the payload key, the nonce prefix, the header
/// MAC (each segment's associated data) and, for a signed archive, the digest so far.
pub(crate) struct Opening {
    /// The archive's keys.
    pub(crate) keys: ArchiveKeys,
    /// The nonce prefix from the header.
    pub(crate) prefix: [u8; 7],
    /// The header MAC.
    pub(crate) mac: [u8; 32],
    /// SHA-256 of the header block, for a signed archive.
    pub(crate) digest: Option<digest::Context>,
}

/// The worker threads and the segments in flight.
pub(crate) struct Opener {
    jobs: Option<SyncSender<Job>>,
    opened: Option<Receiver<Result<Opened, FormatError>>>,
    handles: Vec<JoinHandle<()>>,
    spare: Vec<Vec<u8>>,
    in_flight: usize,
    /// A read error met while segments were in flight, returned once they are delivered.
    pending: Option<io::Error>,
    /// Set once the worker reported a failure: it has stopped.
    failed: bool,
    /// Set when a hand-over found the workers gone: the failure that stopped them is on
    /// its way back (or they died, which [`Opener::next`] reports once nothing is left).
    closed: bool,
}

impl Opener {
    /// Starts the workers; gives `opening` back when no thread can be started. When the
    /// digest thread cannot be started, the opening thread hashes too.
    pub(crate) fn start(mut opening: Box<Opening>) -> Result<Opener, Box<Opening>> {
        let (open_tx, open_rx) = mpsc::sync_channel::<Job>(DEPTH);
        let (done_tx, opened) = mpsc::sync_channel(DEPTH);
        let (give, take) = mpsc::sync_channel::<Box<Opening>>(1);
        let spawned = std::thread::Builder::new()
            .name("archive-open".into())
            .spawn(move || {
                // The opening comes through a channel, so that a failed spawn keeps it.
                if let Ok(o) = take.recv() {
                    open_all(*o, open_rx, done_tx);
                }
            });
        let Ok(open_handle) = spawned else {
            return Err(opening);
        };
        let mut handles = vec![open_handle];
        let mut jobs = open_tx.clone();
        if let Some(ctx) = opening.digest.take() {
            let (hash_tx, hash_rx) = mpsc::sync_channel::<Job>(DEPTH);
            let (give_ctx, take_ctx) = mpsc::sync_channel::<digest::Context>(1);
            let spawned = std::thread::Builder::new()
                .name("archive-digest".into())
                .spawn(move || {
                    if let Ok(ctx) = take_ctx.recv() {
                        hash_all(ctx, hash_rx, open_tx);
                    }
                });
            match spawned {
                Ok(h) => {
                    // The thread waits for it: never blocks.
                    let _ = give_ctx.send(ctx);
                    handles.push(h);
                    jobs = hash_tx;
                }
                // The opening thread hashes as well.
                Err(_) => opening.digest = Some(ctx),
            }
        }
        // The thread waits for it: never blocks, never fails while it runs.
        let _ = give.send(opening);
        Ok(Opener {
            jobs: Some(jobs),
            opened: Some(opened),
            handles,
            spare: Vec::with_capacity(DEPTH + 1),
            in_flight: 0,
            pending: None,
            failed: false,
            closed: false,
        })
    }

    /// True when another segment can be handed over: fewer than [`DEPTH`] in flight and no
    /// read error waiting.
    pub(crate) fn wants_more(&self) -> bool {
        self.in_flight < DEPTH && self.pending.is_none() && !self.failed && !self.closed
    }

    /// A buffer to read the next segment into (one handed back, or a new one).
    pub(crate) fn spare(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Takes back a buffer whose plaintext was used up.
    pub(crate) fn give_back(&mut self, buf: Vec<u8>) {
        if self.spare.len() <= DEPTH {
            self.spare.push(buf);
        }
    }

    /// Hands the sealed segment at the front of `buf` to the workers. When they have
    /// stopped (an earlier segment failed), nothing more is handed over: the failure comes
    /// from [`Opener::next`], in its place in the stream.
    pub(crate) fn submit(&mut self, buf: Vec<u8>, seg: SegmentRef) {
        let job = Job {
            buf,
            seg,
            digest: None,
        };
        match self.jobs.as_ref().map(|j| j.send(job)) {
            Some(Ok(())) => self.in_flight += 1,
            _ => self.closed = true,
        }
    }

    /// Keeps a read error until the segments in flight are delivered.
    pub(crate) fn hold(&mut self, e: io::Error) {
        self.pending = Some(e);
    }

    /// The next opened segment in stream order; `None` when nothing is in flight (the
    /// caller hands over more, or the stream is at its end). A held read error comes once
    /// everything before it is delivered.
    pub(crate) fn next(&mut self) -> io::Result<Option<Opened>> {
        if self.failed {
            return Err(stopped());
        }
        if self.in_flight == 0 {
            return match self.pending.take() {
                Some(e) => {
                    self.failed = true;
                    Err(e)
                }
                None if self.closed => {
                    self.failed = true;
                    Err(stopped())
                }
                None => Ok(None),
            };
        }
        let rx = self.opened.as_ref().ok_or_else(stopped)?;
        match rx.recv() {
            Ok(Ok(o)) => {
                self.in_flight -= 1;
                Ok(Some(o))
            }
            Ok(Err(e)) => {
                self.failed = true;
                Err(io_error(e))
            }
            Err(_) => {
                self.failed = true;
                Err(stopped())
            }
        }
    }

    /// True when no segment is in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight == 0
    }
}

impl Drop for Opener {
    fn drop(&mut self) {
        // Closing both ends of the pipeline ends the workers, wherever they wait; then they
        // are joined.
        self.jobs.take();
        self.opened.take();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// The digest stage: hashes each sealed segment in order and passes it on, the stream
/// digest with the final one, until the queue closes or the next stage is gone.
fn hash_all(mut ctx: digest::Context, jobs: Receiver<Job>, next: SyncSender<Job>) {
    for mut job in jobs {
        let Some(sealed) = job.buf.get(..job.seg.len) else {
            // Cannot happen (the framer made it); the opening stage reports it.
            if next.send(job).is_err() {
                return;
            }
            continue;
        };
        ctx.update(sealed);
        if job.seg.last {
            job.digest = Some(sha256_of(ctx.clone()));
        }
        if next.send(job).is_err() {
            return;
        }
    }
}

/// The opening stage: (hashes, when no digest stage runs, then) opens each segment in
/// place, in order, until the queue closes, the reader is gone, or a segment fails
/// (reported, then the stage stops).
fn open_all(mut o: Opening, jobs: Receiver<Job>, done: SyncSender<Result<Opened, FormatError>>) {
    for Job {
        mut buf,
        seg,
        digest: hashed,
    } in jobs
    {
        let result = open_one(&mut o, &mut buf, seg).map(|(len, digest)| Opened {
            buf,
            len,
            digest: digest.or(hashed),
        });
        let failed = result.is_err();
        if done.send(result).is_err() || failed {
            return;
        }
    }
}

/// Hashes (for a signed archive) and opens one segment; the digest comes with the last.
fn open_one(
    o: &mut Opening,
    buf: &mut [u8],
    seg: SegmentRef,
) -> Result<(usize, Option<[u8; 32]>), FormatError> {
    let sealed = buf
        .get_mut(..seg.len)
        .ok_or(FormatError::Truncated(seg.index))?;
    let mut digest = None;
    if let Some(ctx) = o.digest.as_mut() {
        ctx.update(sealed);
        if seg.last {
            digest = Some(sha256_of(o.digest.take().expect("present")));
        }
    }
    let counter = u32::try_from(seg.index).map_err(|_| FormatError::TooManySegments)?;
    let n = segment::open(
        o.keys.payload(),
        &o.prefix,
        counter,
        seg.last,
        &o.mac,
        sealed,
    )?;
    Ok((n, digest))
}

fn stopped() -> io::Error {
    io::Error::other("the archive opening thread stopped unexpectedly")
}
