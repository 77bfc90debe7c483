//! [`Pipelined`]: an [`Upload`] whose writes happen on a thread of their own. The first
//! error of the writer thread is returned by the next `write`, `flush` or
//! [`Upload::commit`], as the target reported it (so "the target is full" stays that);
//! dropping a [`Pipelined`] stops the thread and drops the inner upload, which removes its
//! temporary file.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{CHUNK, DEPTH};
use crate::targets::{Retry, TargetError, Upload};

enum Msg {
    Data(Vec<u8>),
    /// Flush the inner upload and answer.
    Flush(SyncSender<io::Result<()>>),
}

/// What the writer thread hands back: the upload, and its first error.
struct Outcome {
    upload: Box<dyn Upload>,
    error: Option<io::Error>,
}

/// An [`Upload`] whose writes happen on a thread of their own.
pub struct Pipelined {
    buf: Vec<u8>,
    tx: Option<SyncSender<Msg>>,
    spare: Receiver<Vec<u8>>,
    worker: Option<JoinHandle<Outcome>>,
    abort: Arc<AtomicBool>,
    temp: String,
    url: String,
    /// Set once the writer's error was returned: later calls repeat its text.
    failed: Option<String>,
}

impl Pipelined {
    /// Starts the writer thread for `upload`; `url` names the target in messages.
    pub fn new(upload: Box<dyn Upload>, url: &str) -> io::Result<Pipelined> {
        let temp = upload.temp_name().to_string();
        let (tx, rx) = mpsc::sync_channel::<Msg>(DEPTH);
        let (spare_tx, spare) = mpsc::sync_channel::<Vec<u8>>(DEPTH + 1);
        let abort = Arc::new(AtomicBool::new(false));
        let stop = abort.clone();
        let worker = std::thread::Builder::new()
            .name("offbox-upload".into())
            .spawn(move || write_all(upload, rx, spare_tx, &stop))?;
        Ok(Pipelined {
            buf: Vec::with_capacity(CHUNK),
            tx: Some(tx),
            spare,
            worker: Some(worker),
            abort,
            temp,
            url: url.to_string(),
            failed: None,
        })
    }

    /// Hands the buffer to the writer thread.
    fn ship(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let chunk = std::mem::replace(&mut self.buf, next);
        self.send(Msg::Data(chunk))
    }

    fn send(&mut self, msg: Msg) -> io::Result<()> {
        let sent = match &self.tx {
            Some(tx) => tx.send(msg).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            // The writer stopped: it failed.
            Err(self.writer_error())
        }
    }

    /// Joins the writer thread after it stopped on an error and returns that error once;
    /// later calls get its text.
    fn writer_error(&mut self) -> io::Error {
        if let Some(f) = &self.failed {
            return io::Error::other(format!("the upload already failed: {f}"));
        }
        let e = match self.join() {
            // The inner upload is dropped here: that removes its temporary file.
            Ok(Outcome { error, .. }) => {
                error.unwrap_or_else(|| io::Error::other("the upload thread stopped"))
            }
            Err(e) => e.into_io(),
        };
        self.failed = Some(e.to_string());
        e
    }

    fn join(&mut self) -> Result<Outcome, TargetError> {
        self.tx = None;
        let worker = self.worker.take().ok_or_else(|| TargetError::Io {
            target: self.url.clone(),
            op: "writing the archive".into(),
            detail: "the upload thread is gone".into(),
            retry: Retry::Temporary,
        })?;
        worker.join().map_err(|_| TargetError::Io {
            target: self.url.clone(),
            op: "writing the archive".into(),
            detail: "the upload thread panicked".into(),
            retry: Retry::Temporary,
        })
    }

    fn check(&self) -> io::Result<()> {
        match &self.failed {
            Some(f) => Err(io::Error::other(format!("the upload already failed: {f}"))),
            None => Ok(()),
        }
    }
}

/// The writer thread: writes every chunk in order until the channel closes, an error
/// happens, or the upload is aborted.
fn write_all(
    mut upload: Box<dyn Upload>,
    rx: Receiver<Msg>,
    spare: SyncSender<Vec<u8>>,
    abort: &AtomicBool,
) -> Outcome {
    for msg in rx {
        if abort.load(Ordering::Relaxed) {
            break;
        }
        match msg {
            Msg::Data(mut chunk) => {
                if let Err(error) = upload.write_all(&chunk) {
                    return Outcome {
                        upload,
                        error: Some(error),
                    };
                }
                chunk.clear();
                let _ = spare.try_send(chunk);
            }
            Msg::Flush(answer) => {
                let r = upload.flush();
                let failed = r.is_err();
                let _ = answer.send(r);
                if failed {
                    return Outcome {
                        upload,
                        error: None,
                    };
                }
            }
        }
    }
    Outcome {
        upload,
        error: None,
    }
}

impl Write for Pipelined {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check()?;
        let n = (CHUNK - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.ship()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        self.ship()?;
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Msg::Flush(tx))?;
        match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.failed = Some(e.to_string());
                Err(e)
            }
            Err(_) => Err(self.writer_error()),
        }
    }
}

impl Upload for Pipelined {
    fn commit(mut self: Box<Self>, name: &str) -> Result<(), TargetError> {
        if let Some(f) = &self.failed {
            return Err(TargetError::Io {
                target: self.url.clone(),
                op: format!("publishing {name}"),
                detail: format!("the upload had failed: {f}"),
                retry: Retry::Temporary,
            });
        }
        let shipped = self.ship();
        let Outcome { upload, error } = self.join()?;
        if let Some(e) = error.or(shipped.err()) {
            drop(upload);
            return Err(match TargetError::find(&e) {
                Some(_) => *e
                    .into_inner()
                    .and_then(|b| b.downcast::<TargetError>().ok())
                    .expect("found above"),
                None => TargetError::from_io(&self.url, "writing the archive", &e),
            });
        }
        upload.commit(name)
    }

    fn temp_name(&self) -> &str {
        &self.temp
    }
}

impl Drop for Pipelined {
    fn drop(&mut self) {
        if self.worker.is_some() {
            // Not committed: stop writing, and let the inner upload remove its temporary.
            self.abort.store(true, Ordering::Relaxed);
            let _ = self.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_data as data;
    use super::*;
    use std::sync::Mutex;

    /// An in-memory upload that records what arrived and can fail after `fail_after` bytes.
    struct Mem {
        got: Arc<Mutex<Vec<u8>>>,
        log: Arc<Mutex<Vec<String>>>,
        fail_after: usize,
    }

    impl Write for Mem {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let mut got = self.got.lock().unwrap();
            if got.len() + b.len() > self.fail_after {
                return Err(TargetError::NoSpace {
                    target: "mem://".into(),
                    detail: "full".into(),
                }
                .into_io());
            }
            got.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.log.lock().unwrap().push("flush".into());
            Ok(())
        }
    }

    impl Upload for Mem {
        fn commit(self: Box<Self>, name: &str) -> Result<(), TargetError> {
            self.log.lock().unwrap().push(format!("commit {name}"));
            Ok(())
        }
        fn temp_name(&self) -> &str {
            ".offbox-tmp.mem"
        }
    }

    impl Drop for Mem {
        fn drop(&mut self) {
            self.log.lock().unwrap().push("drop".into());
        }
    }

    type Shared<T> = Arc<Mutex<Vec<T>>>;

    fn mem(fail_after: usize) -> (Box<Mem>, Shared<u8>, Shared<String>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let m = Box::new(Mem {
            got: got.clone(),
            log: log.clone(),
            fail_after,
        });
        (m, got, log)
    }

    #[test]
    fn bytes_arrive_in_order_and_commit_runs_after_them() {
        let (m, got, log) = mem(usize::MAX);
        let mut p = Box::new(Pipelined::new(m, "mem://").unwrap());
        assert_eq!(p.temp_name(), ".offbox-tmp.mem");
        let d = data(5 * CHUNK + 12345);
        for piece in d.chunks(77_777) {
            p.write_all(piece).unwrap();
        }
        p.flush().unwrap();
        p.write_all(b"tail").unwrap();
        p.commit("final").unwrap();
        let mut want = d;
        want.extend_from_slice(b"tail");
        assert!(*got.lock().unwrap() == want);
        assert_eq!(*log.lock().unwrap(), ["flush", "commit final", "drop"]);
    }

    #[test]
    fn a_writer_error_is_returned_as_the_target_said_it() {
        let (m, got, log) = mem(2 * CHUNK + 5);
        let mut p = Box::new(Pipelined::new(m, "mem://").unwrap());
        let d = data(8 * CHUNK);
        let e = p.write_all(&d).unwrap_err();
        assert!(
            matches!(TargetError::find(&e), Some(TargetError::NoSpace { .. })),
            "{e}"
        );
        // Later calls repeat it, and commit refuses.
        let e2 = p.write(b"x").unwrap_err();
        assert!(
            e2.to_string().starts_with("the upload already failed: "),
            "{e2}"
        );
        // The transports keep no "failed" flag of their own: the upload gets no write and
        // no flush after its error (the checks below: nothing more arrived, only a drop).
        for _ in 0..3 {
            assert!(p.write_all(&data(CHUNK)).is_err());
            assert!(p.flush().is_err());
        }
        let c = p.commit("final").unwrap_err();
        assert!(c.to_string().contains("the upload had failed"), "{c}");
        assert_eq!(got.lock().unwrap().len(), 2 * CHUNK);
        assert_eq!(*log.lock().unwrap(), ["drop"], "never committed");
    }

    #[test]
    fn an_error_found_at_commit_keeps_its_kind() {
        let (m, _, log) = mem(CHUNK / 2);
        let mut p = Box::new(Pipelined::new(m, "mem://").unwrap());
        p.write_all(&data(CHUNK - 1)).unwrap(); // stays in the buffer
        let e = p.commit("final").unwrap_err();
        assert!(matches!(e, TargetError::NoSpace { .. }), "{e}");
        assert_eq!(*log.lock().unwrap(), ["drop"]);
    }

    #[test]
    fn dropping_without_commit_drops_the_upload() {
        let (m, _, log) = mem(usize::MAX);
        let mut p = Pipelined::new(m, "mem://").unwrap();
        p.write_all(&data(3 * CHUNK)).unwrap();
        drop(p);
        assert_eq!(*log.lock().unwrap(), ["drop"]);
    }
}
