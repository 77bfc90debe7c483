//! The SHA-256 that an archive signature covers, computed beside the reader.
//!
//! Reading a large archive, the digest of its ciphertext costs as much as decrypting it, on
//! the one thread that also decompresses and parses. [`StreamHasher::threaded`] moves it to
//! a thread of its own: each segment is copied into one of [`BUFFERS`] buffers and hashed
//! there, in order, while the reader opens it in place and goes on; [`StreamHasher::finish`]
//! waits for the thread and returns the same digest as hashing inline would. Small reads
//! (tails, headers, tests) keep [`StreamHasher::inline`].

use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use aws_lc_rs::digest;

/// Copies of segments waiting to be hashed, at most: memory stays at most this many
/// segments whatever the archive's size.
const BUFFERS: usize = 4;

/// SHA-256 over a sequence of byte slices, inline or on a thread of its own.
pub(crate) enum StreamHasher {
    /// Hashed by the caller.
    Inline(digest::Context),
    /// Hashed by a thread; `None` once finished.
    Threaded(Option<Worker>),
}

/// The hashing thread, its queue, and the buffers it hands back.
pub(crate) struct Worker {
    queue: SyncSender<Vec<u8>>,
    free: Receiver<Vec<u8>>,
    spare: usize,
    handle: JoinHandle<[u8; 32]>,
}

impl StreamHasher {
    /// A hasher that hashes in the caller's thread.
    #[cfg(test)]
    pub(crate) fn inline() -> StreamHasher {
        StreamHasher::Inline(digest::Context::new(&digest::SHA256))
    }

    /// A hasher with a thread of its own; inline when no thread can be started.
    #[cfg(test)]
    pub(crate) fn threaded() -> StreamHasher {
        StreamHasher::threaded_from(digest::Context::new(&digest::SHA256))
    }

    /// A hasher with a thread of its own that goes on from `ctx` (which may hold a prelude
    /// hashed already); inline from `ctx` when no thread can be started.
    pub(crate) fn threaded_from(ctx: digest::Context) -> StreamHasher {
        let (queue, jobs) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
        let (give_back, free) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
        // The thread gets a copy: on a failed spawn the closure, and `ctx` with it, is gone.
        let start = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("archive-digest".into())
            .spawn(move || {
                let mut ctx = start;
                for buf in jobs {
                    ctx.update(&buf);
                    // Never blocks: at most BUFFERS buffers exist. The reader may be gone.
                    let _ = give_back.try_send(buf);
                }
                to_array(ctx)
            });
        match spawned {
            Ok(handle) => StreamHasher::Threaded(Some(Worker {
                queue,
                free,
                spare: BUFFERS,
                handle,
            })),
            Err(_) => StreamHasher::Inline(ctx),
        }
    }

    /// Adds `data` to the digest.
    pub(crate) fn update(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            StreamHasher::Inline(ctx) => {
                ctx.update(data);
                Ok(())
            }
            StreamHasher::Threaded(Some(w)) => {
                let mut buf = if w.spare > 0 {
                    w.spare -= 1;
                    Vec::with_capacity(data.len())
                } else {
                    w.free.recv().map_err(|_| stopped())?
                };
                buf.clear();
                buf.extend_from_slice(data);
                w.queue.send(buf).map_err(|_| stopped())
            }
            StreamHasher::Threaded(None) => Err(stopped()),
        }
    }

    /// The digest of everything added. A threaded hasher waits for its thread, and takes
    /// no more data afterwards.
    pub(crate) fn finish(&mut self) -> io::Result<[u8; 32]> {
        match self {
            StreamHasher::Inline(ctx) => Ok(to_array(ctx.clone())),
            StreamHasher::Threaded(w) => {
                let w = w.take().ok_or_else(stopped)?;
                drop(w.queue);
                w.handle.join().map_err(|_| stopped())
            }
        }
    }
}

fn to_array(ctx: digest::Context) -> [u8; 32] {
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

fn stopped() -> io::Error {
    io::Error::other("the archive digest thread stopped unexpectedly")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threaded and inline hashing give SHA-256 of the concatenation, for pieces of every
    /// size, more of them than there are buffers.
    #[test]
    fn threaded_matches_inline_and_sha256() {
        let pieces: Vec<Vec<u8>> = (0..40u32)
            .map(|i| (0..(i * 977) % 70_001).map(|j| (j ^ i) as u8).collect())
            .collect();
        let mut inline = StreamHasher::inline();
        let mut threaded = StreamHasher::threaded();
        let mut all = Vec::new();
        for p in &pieces {
            inline.update(p).unwrap();
            threaded.update(p).unwrap();
            all.extend_from_slice(p);
        }
        let want = digest::digest(&digest::SHA256, &all);
        assert_eq!(inline.finish().unwrap(), want.as_ref());
        assert_eq!(threaded.finish().unwrap(), want.as_ref());
        // Finished: a threaded hasher takes nothing more.
        assert!(threaded.update(b"more").is_err());
        assert!(threaded.finish().is_err());
        // Going on from a context that holds a prelude already.
        let mut pre = digest::Context::new(&digest::SHA256);
        pre.update(b"prelude");
        let mut from = StreamHasher::threaded_from(pre);
        pieces.iter().for_each(|p| from.update(p).unwrap());
        let mut with_prelude = b"prelude".to_vec();
        with_prelude.extend_from_slice(&all);
        assert_eq!(
            from.finish().unwrap(),
            digest::digest(&digest::SHA256, &with_prelude).as_ref()
        );
        // The empty stream.
        assert_eq!(
            StreamHasher::threaded().finish().unwrap(),
            digest::digest(&digest::SHA256, b"").as_ref()
        );
    }
}
