//! The data session: SFTP (openssh-sftp-client) over OpenSSH's own `ssh` ([`super::openssh`]),
//! with many requests in flight both ways. Uploads send WRITE requests without waiting for
//! each answer (up to [`WRITE_IN_FLIGHT`] bytes); downloads keep [`READS_IN_FLIGHT`] READs
//! ahead of the reader. The client's own tasks run on one worker thread of a runtime that
//! stays inside this module ([`Blocking::with_worker`]); every blocking call is bounded by
//! the target's timeout.

use std::collections::VecDeque;
use std::io::{self, SeekFrom};
use std::net::TcpStream;
use std::num::NonZeroU16;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use openssh_sftp_client::file::File;
use openssh_sftp_client::metadata::Permissions;
use openssh_sftp_client::{Error as SftpError, Sftp, SftpOptions};
use tokio::io::AsyncSeekExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::openssh::{Ssh, SshArgs};
use crate::targets::runtime::Blocking;
use crate::targets::{Retry, TargetError};

/// Bytes of WRITE requests sent and not yet answered, per upload. 1 MiB (five requests)
/// keeps the link busy and the data still in the core's cache when `ssh` reads it; 4 MiB
/// measured 0.98x the OpenSSH pipe against 1.06x (docs/performance.md).
const WRITE_IN_FLIGHT: usize = 1 << 20;
/// Bytes per WRITE request: OpenSSH's largest (its limits@openssh.com says 255 KiB); a
/// server that takes less gets each piece in several requests.
const WRITE_LEN: usize = 255 << 10;
/// READ requests sent ahead of the reader, per download.
const READS_IN_FLIGHT: usize = 16;
/// Capacity asked for the pipes to and from `ssh`.
const PIPE_SIZE: i32 = 1 << 20;
/// The first READ's size; the server's answer tells its largest read (OpenSSH: 255 KiB).
const FIRST_READ: u32 = 256 << 10;

/// One `ssh` process and the SFTP session over it.
pub(super) struct Channel {
    sftp: Option<Sftp>,
    rt: Blocking,
    ssh: Mutex<Ssh>,
}

impl Channel {
    /// Starts `ssh` on `tcp` (dialled through the guard) and SFTP over it.
    pub(super) fn open(a: &SshArgs, tcp: TcpStream) -> Result<Arc<Channel>, TargetError> {
        let timeout = Duration::from_secs(a.timeout_secs.max(1));
        let rt = Blocking::with_worker(&a.url, "SFTP", timeout)?;
        let (ssh, stdin, stdout) = Ssh::start(a, tcp)?;
        // Larger pipes to and from ssh: fewer wake-ups of both sides per MiB (best effort,
        // the kernel caps it at /proc/sys/fs/pipe-max-size).
        for fd in [stdin.as_fd(), stdout.as_fd()] {
            let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        }
        let ssh = Mutex::new(ssh);
        let opts = SftpOptions::new()
            .max_pending_requests(NonZeroU16::new(1024).expect("nonzero"))
            .flush_interval(Duration::ZERO);
        let started = rt.run("starting SFTP over ssh", async {
            let w = pipe::Sender::from_owned_fd(OwnedFd::from(stdin)).map_err(SftpError::IOError);
            let r =
                pipe::Receiver::from_owned_fd(OwnedFd::from(stdout)).map_err(SftpError::IOError);
            Ok(match (w, r) {
                (Ok(w), Ok(r)) => Sftp::new(w, r, opts).await,
                (Err(e), _) | (_, Err(e)) => Err(e),
            })
        })?;
        let sftp = started.map_err(|e| {
            let mut s = ssh.lock().unwrap_or_else(|p| p.into_inner());
            s.failure(
                "starting SFTP over ssh (is the sftp subsystem enabled?)",
                &e.to_string(),
            )
        })?;
        Ok(Arc::new(Channel {
            sftp: Some(sftp),
            rt,
            ssh,
        }))
    }

    fn sftp(&self) -> &Sftp {
        self.sftp.as_ref().expect("open until dropped")
    }

    /// The error of `op` from the client's error `e`: the server's status, or what `ssh`
    /// said when the session itself failed.
    pub(super) fn error(&self, op: &str, e: &SftpError) -> TargetError {
        use openssh_sftp_client::error::SftpErrorKind as K;
        let target = self.rt.url().to_string();
        match e {
            SftpError::SftpError(K::NoSuchFile, _) => TargetError::NotFound {
                target,
                what: op.to_string(),
            },
            SftpError::SftpError(K::PermDenied, m) => TargetError::Permission {
                target,
                op: op.to_string(),
                detail: m.to_string(),
            },
            SftpError::SftpError(_, m) => TargetError::Io {
                target,
                op: op.to_string(),
                detail: m.to_string(),
                retry: Retry::Temporary,
            },
            other => self
                .ssh
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .failure(op, &other.to_string()),
        }
    }

    /// Runs one client call within the timeout; its error becomes [`Channel::error`].
    fn run<T>(
        &self,
        op: &str,
        fut: impl std::future::Future<Output = Result<T, SftpError>>,
    ) -> Result<T, TargetError> {
        match self.rt.run(op, async { Ok(fut.await) })? {
            Ok(v) => Ok(v),
            Err(e) => Err(self.error(op, &e)),
        }
    }

    /// Creates `path`, which must not exist (mode 0600), for writing.
    pub(super) fn create(self: &Arc<Self>, path: &Path) -> Result<Writer, TargetError> {
        let mut o = self.sftp().options();
        o.write(true).create_new(true);
        let file = self.run("creating the upload file", async {
            let mut f = o.open(path).await?;
            // Readable by the backup user only (the archive is encrypted, but its size and
            // name are nobody else's business).
            f.set_permissions(Permissions::from(0o600)).await?;
            Ok(f)
        })?;
        Ok(Writer {
            file: Some(file),
            pending: BytesMut::new(),
            spare: Vec::new(),
            next: 0,
            ahead: VecDeque::new(),
            ahead_bytes: 0,
            ch: self.clone(),
        })
    }

    /// Opens `path` for reading, with reads kept ahead.
    pub(super) fn read(
        self: &Arc<Self>,
        path: &Path,
        what: &str,
        offset: u64,
    ) -> Result<Reader, TargetError> {
        let mut o = self.sftp().options();
        o.read(true);
        let file = self.run(what, o.open(path))?;
        let (tx, rx) = mpsc::channel(READS_IN_FLIGHT);
        let _g = self.rt.enter();
        tokio::spawn(pump(file, tx, offset));
        Ok(Reader {
            rx,
            cur: BytesMut::new(),
            ch: self.clone(),
            done: false,
        })
    }

    /// Checks that `dir` is a directory; a missing one is [`TargetError::NoDirectory`],
    /// with the command that creates it as `user`.
    pub(super) fn check_dir(&self, dir: &Path, user: &str) -> Result<(), TargetError> {
        let mut fs = self.sftp().fs();
        let op = format!("directory {}", dir.display());
        match self.run(&op, fs.metadata(dir)) {
            Ok(m) if m.file_type().is_some_and(|t| t.is_dir()) => Ok(()),
            Ok(_) => Err(TargetError::Invalid {
                target: self.rt.url().to_string(),
                why: format!("{} is not a directory", dir.display()),
            }),
            Err(TargetError::NotFound { .. }) => Err(TargetError::NoDirectory {
                target: self.rt.url().to_string(),
                dir: dir.display().to_string(),
                create: format!(
                    "create it on the server, writable by {user} (`mkdir -p {d}` as {user}, or as root followed by `chown {user} {d}`)",
                    d = dir.display()
                ),
            }),
            Err(e) => Err(e),
        }
    }

    /// The regular files in `dir`, with their sizes.
    pub(super) fn list(&self, dir: &Path) -> Result<Vec<(String, Option<u64>)>, TargetError> {
        use futures_util::StreamExt;
        let mut fs = self.sftp().fs();
        self.run("listing", async {
            let mut entries = Box::pin(fs.open_dir(dir).await?.read_dir());
            let mut out = Vec::new();
            while let Some(e) = entries.next().await {
                let e = e?;
                if e.file_type().is_some_and(|t| t.is_file()) {
                    let name = e.filename().to_string_lossy().into_owned();
                    out.push((name, e.metadata().len()));
                }
            }
            Ok(out)
        })
    }

    /// Whether `path` exists (any kind of file).
    pub(super) fn exists(&self, path: &Path) -> bool {
        let mut fs = self.sftp().fs();
        self.run("looking up", fs.symlink_metadata(path)).is_ok()
    }

    /// Deletes the file `path`.
    pub(super) fn remove(&self, path: &Path, op: &str) -> Result<(), TargetError> {
        let mut fs = self.sftp().fs();
        self.run(op, fs.remove_file(path))
    }

    /// Renames `from` to `to` (SFTP v3 RENAME: OpenSSH never replaces an existing `to`).
    pub(super) fn rename(&self, from: &Path, to: &Path, op: &str) -> Result<(), TargetError> {
        let mut fs = self.sftp().fs();
        self.run(op, fs.rename(from, to))
    }

    /// Free bytes where `dir` lies (statvfs@openssh.com), if the server tells.
    pub(super) fn free_space(&self, dir: &Path) -> Option<u64> {
        if !self.sftp().support_statvfs() {
            return None;
        }
        let mut fs = self.sftp().fs();
        let v = self.run("reading the free space", fs.statvfs(dir)).ok()?;
        Some(v.bavail.saturating_mul(v.frsize))
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let _g = self.rt.enter();
        if let Some(s) = self.sftp.take() {
            let _ = self
                .rt
                .run_for("closing SFTP", Duration::from_secs(2), async {
                    Ok(s.close().await)
                });
        }
    }
}

/// An upload's file: writes gather into [`WRITE_LEN`] bytes, which go out as one WRITE
/// request (its data sent as is, not serialized byte by byte) answered in the background;
/// [`Writer::finish`] sends the rest and waits for every answer.
pub(super) struct Writer {
    file: Option<File>,
    /// Written and not sent yet (less than [`WRITE_LEN`] bytes).
    pending: BytesMut,
    /// Buffers of answered writes, for the next requests: a fresh allocation per request
    /// cost thousands of page faults per 100 MiB.
    spare: Vec<BytesMut>,
    /// Offset of the next write.
    next: u64,
    /// The writes not yet answered, oldest first, with their sizes.
    ahead: VecDeque<(usize, JoinHandle<Result<Bytes, SftpError>>)>,
    ahead_bytes: usize,
    ch: Arc<Channel>,
}

/// Writes `data` at `at`, and hands the buffer back.
async fn write_at(mut f: File, at: u64, data: Bytes) -> Result<Bytes, SftpError> {
    f.seek(SeekFrom::Start(at))
        .await
        .map_err(SftpError::IOError)?;
    let mut bufs = [data];
    f.write_all_zero_copy(&mut bufs).await?;
    let [data] = bufs;
    Ok(data)
}

impl Writer {
    /// Takes as much of `buf` as fills the pending request (all of it, or up to
    /// [`WRITE_LEN`] bytes), and sends the request once it is full. Returns at once unless
    /// [`WRITE_IN_FLIGHT`] bytes are unanswered: then it first waits for the oldest answer.
    /// An error may belong to an earlier write.
    pub(super) fn write(&mut self, buf: &[u8]) -> Result<usize, TargetError> {
        if self.pending.capacity() == 0 {
            self.pending = self
                .spare
                .pop()
                .unwrap_or_else(|| BytesMut::with_capacity(WRITE_LEN));
        }
        let n = buf.len().min(WRITE_LEN - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == WRITE_LEN {
            self.send()?;
        }
        Ok(n)
    }

    /// Sends the pending bytes as one WRITE request, once fewer than [`WRITE_IN_FLIGHT`]
    /// bytes are unanswered.
    fn send(&mut self) -> Result<(), TargetError> {
        while self.ahead_bytes >= WRITE_IN_FLIGHT {
            self.wait_oldest()?;
        }
        let data: Bytes = self.pending.split().freeze();
        let n = data.len();
        if n == 0 {
            return Ok(());
        }
        let f = self.file.as_ref().expect("open until finished").clone();
        let task = {
            let _g = self.ch.rt.enter();
            tokio::spawn(write_at(f, self.next, data))
        };
        self.ahead.push_back((n, task));
        self.ahead_bytes += n;
        self.next += n as u64;
        Ok(())
    }

    /// Waits for the oldest unanswered write.
    fn wait_oldest(&mut self) -> Result<(), TargetError> {
        let Some((n, task)) = self.ahead.pop_front() else {
            return Ok(());
        };
        self.ahead_bytes -= n;
        let r = self.ch.rt.run("writing", async {
            Ok(task
                .await
                .unwrap_or_else(|e| Err(SftpError::TaskJoinError(e))))
        })?;
        let data = r.map_err(|e| self.ch.error("writing the archive", &e))?;
        // The buffer comes back once the client let go of it (else it is simply freed).
        if let Ok(mut b) = data.try_into_mut() {
            b.clear();
            self.spare.push(b);
        }
        Ok(())
    }

    /// Waits for every write, syncs the file (`fsync@openssh.com`, where the server has
    /// it), and closes it.
    pub(super) fn finish(mut self) -> Result<(), TargetError> {
        self.send()?;
        while !self.ahead.is_empty() {
            self.wait_oldest()?;
        }
        let mut file = self.file.take().expect("open until finished");
        let ch = self.ch.clone();
        match ch.run("syncing the upload", file.sync_all()) {
            Ok(()) => {}
            Err(_) if !ch.sftp().support_fsync() => {}
            Err(e) => return Err(e),
        }
        ch.run("closing the upload", file.close())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _g = self.ch.rt.enter();
        for (_, t) in self.ahead.drain(..) {
            t.abort();
        }
        drop(self.file.take());
    }
}

/// A download: chunks arrive in order from [`pump`].
pub(super) struct Reader {
    rx: mpsc::Receiver<Result<BytesMut, SftpError>>,
    cur: BytesMut,
    ch: Arc<Channel>,
    done: bool,
}

impl io::Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() && !self.done {
            let rx = &mut self.rx;
            match self
                .ch
                .rt
                .run("reading the archive", async { Ok(rx.recv().await) })
            {
                Err(e) => return Err(e.into_io()),
                Ok(None) => self.done = true,
                Ok(Some(Ok(b))) => self.cur = b,
                Ok(Some(Err(e))) => {
                    return Err(self.ch.error("reading the archive", &e).into_io());
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// Reads `n` bytes at `at` (fewer at the end); `None` at or past the end.
async fn read_at(mut f: File, at: u64, n: u32) -> Result<Option<BytesMut>, SftpError> {
    f.seek(SeekFrom::Start(at))
        .await
        .map_err(SftpError::IOError)?;
    f.read(n, BytesMut::with_capacity(n as usize)).await
}

/// Reads `file` from the start into `tx`, in order, with [`READS_IN_FLIGHT`] requests
/// ahead. The first read tells the server's read size; a short read is completed before
/// the next chunk goes out, so no byte is skipped whatever the server answers.
async fn pump(file: File, tx: mpsc::Sender<Result<BytesMut, SftpError>>, offset: u64) {
    let first = match read_at(file.clone(), offset, FIRST_READ).await {
        Ok(Some(b)) => b,
        Ok(None) => return,
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            return;
        }
    };
    let chunk = first.len().max(1) as u64;
    let mut next = offset + chunk;
    if tx.send(Ok(first)).await.is_err() {
        return;
    }
    let mut ahead: VecDeque<(u64, tokio::task::JoinHandle<_>)> = VecDeque::new();
    loop {
        while ahead.len() < READS_IN_FLIGHT {
            let f = file.clone();
            ahead.push_back((next, tokio::spawn(read_at(f, next, chunk as u32))));
            next += chunk;
        }
        let (at, task) = ahead.pop_front().expect("requests ahead");
        let got = match task.await {
            Ok(r) => r,
            Err(e) => Err(SftpError::TaskJoinError(e)),
        };
        match got {
            Ok(None) => return,
            Ok(Some(b)) => {
                let mut pos = at + b.len() as u64;
                if tx.send(Ok(b)).await.is_err() {
                    return;
                }
                // A short read: fetch the rest of this chunk before the next one.
                while pos < at + chunk {
                    match read_at(file.clone(), pos, (at + chunk - pos) as u32).await {
                        // No progress: treat as the end rather than asking forever.
                        Ok(Some(b)) if b.is_empty() => return,
                        Ok(Some(b)) => {
                            pos += b.len() as u64;
                            if tx.send(Ok(b)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => return,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}
