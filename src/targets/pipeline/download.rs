//! [`Prefetched`]: a reader that reads ahead on a thread of its own.

use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Duration;

use super::{CHUNK, DEPTH};

/// How long dropping a [`Prefetched`] waits for its thread to let go of the connection.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// A reader whose reads happen ahead, on a thread of their own, at most [`DEPTH`] chunks
/// ahead. The first error is returned once, in order, after the bytes before it.
pub struct Prefetched {
    rx: Option<Receiver<io::Result<Vec<u8>>>>,
    spare: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
    stopped: Receiver<()>,
}

impl Prefetched {
    /// Starts reading `inner` ahead.
    pub fn new(inner: Box<dyn Read + Send>) -> io::Result<Prefetched> {
        let (tx, rx) = mpsc::sync_channel(DEPTH);
        let (spare, spare_rx) = mpsc::sync_channel::<Vec<u8>>(DEPTH + 1);
        let (stopped_tx, stopped) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("offbox-download".into())
            .spawn(move || {
                read_ahead(inner, tx, spare_rx);
                // `inner` (the connection's reader) is closed by now.
                let _ = stopped_tx.send(());
            })?;
        Ok(Prefetched {
            rx: Some(rx),
            spare,
            cur: Vec::new(),
            pos: 0,
            done: false,
            stopped,
        })
    }
}

/// The read-ahead thread: sends full chunks (only the last may be short), then an empty
/// chunk for the end, or the error after the bytes read before it.
fn read_ahead(
    mut inner: Box<dyn Read + Send>,
    tx: SyncSender<io::Result<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
) {
    loop {
        // A reused buffer is full-sized already: no zeroing per chunk.
        let mut buf = spare.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        let mut n = 0;
        let mut end = None;
        while n < CHUNK {
            match inner.read(&mut buf[n..]) {
                Ok(0) => {
                    end = Some(Ok(Vec::new()));
                    break;
                }
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    end = Some(Err(e));
                    break;
                }
            }
        }
        buf.truncate(n);
        if n > 0 && tx.send(Ok(buf)).is_err() {
            return;
        }
        if let Some(last) = end {
            let _ = tx.send(last);
            return;
        }
    }
}

impl Read for Prefetched {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.done || out.is_empty() {
                return Ok(0);
            }
            let Some(rx) = self.rx.as_ref() else {
                return Ok(0);
            };
            let next = match rx.recv() {
                Ok(Ok(chunk)) => chunk,
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Err(io::Error::other("the download thread stopped"));
                }
            };
            if next.is_empty() {
                self.done = true;
            }
            let old = std::mem::replace(&mut self.cur, next);
            let _ = self.spare.try_send(old);
            self.pos = 0;
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Stops the thread and waits (at most [`STOP_WAIT`]) until it closed the connection's
/// reader, so that a reader dropped early (a refused archive) does not leave the thread in
/// the transport's library while the process exits. A thread blocked on a stalled server is
/// left to the target's timeout.
impl Drop for Prefetched {
    fn drop(&mut self) {
        drop(self.rx.take());
        // Unblock a thread waiting to send a chunk: the channel holds at most DEPTH of them.
        let _ = self.stopped.recv_timeout(STOP_WAIT);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_data as data;
    use super::*;

    /// Reads `data` in pieces of `step`, then fails with `ConnectionReset` if `fail`.
    struct Src {
        data: Vec<u8>,
        pos: usize,
        step: usize,
        fail: bool,
    }

    impl Read for Src {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.data.len() && self.fail {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone"));
            }
            let n = out.len().min(self.step).min(self.data.len() - self.pos);
            out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn prefetched_reads_give_the_same_bytes_then_eof() {
        let d = data(4 * CHUNK + 999);
        for step in [1000, CHUNK, 3 * CHUNK] {
            let src = Src {
                data: d.clone(),
                pos: 0,
                step,
                fail: false,
            };
            let mut p = Prefetched::new(Box::new(src)).unwrap();
            let mut got = Vec::new();
            p.read_to_end(&mut got).unwrap();
            assert!(got == d, "step {step}");
            assert_eq!(p.read(&mut [0u8; 8]).unwrap(), 0, "EOF stays EOF");
        }
    }

    #[test]
    fn prefetched_error_comes_after_the_bytes_before_it() {
        let d = data(2 * CHUNK + 7);
        let src = Src {
            data: d.clone(),
            pos: 0,
            step: 4096,
            fail: true,
        };
        let mut p = Prefetched::new(Box::new(src)).unwrap();
        let mut got = vec![0u8; d.len()];
        p.read_exact(&mut got).unwrap();
        assert!(got == d);
        let e = p.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    }

    /// Endless data that records when it is dropped.
    struct Endless(std::sync::Arc<std::sync::atomic::AtomicBool>);

    impl Read for Endless {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            out.fill(7);
            Ok(out.len())
        }
    }

    impl Drop for Endless {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn dropping_early_closes_the_source_before_returning() {
        let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut p = Prefetched::new(Box::new(Endless(closed.clone()))).unwrap();
        let mut some = vec![0u8; 10];
        p.read_exact(&mut some).unwrap();
        drop(p);
        assert!(closed.load(std::sync::atomic::Ordering::SeqCst));
    }
}
