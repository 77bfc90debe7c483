//! The output of a chained payload: compression (or none) over the encrypting writer, with
//! the switch from body to tail. At the switch the zstd frame ends, the writer marks the
//! tail's start, and a new frame begins, so that the tail decompresses on its own.

use std::io::{self, Write};

use super::backup::TailWrite;
use super::JobError;
use crate::stream::{EncryptWriter, Finished};

type Zstd<W> = zstd::stream::write::Encoder<'static, EncryptWriter<W>>;

/// Where the payload's bytes go.
enum State<W: Write> {
    /// Stored as is.
    Raw(EncryptWriter<W>),
    /// Through a zstd frame.
    Zstd(Zstd<W>),
    /// After a failure: every write fails.
    Broken,
}

/// The sink of a [`super::backup::ChainedPayload`].
pub(crate) struct Sink<W: Write> {
    state: State<W>,
    level: Option<i32>,
    tail: bool,
}

impl<W: Write> Sink<W> {
    /// A sink over `enc`, compressing at `level` with `threads` workers, or storing (`None`).
    pub(crate) fn new(
        enc: EncryptWriter<W>,
        level: Option<i32>,
        threads: u32,
    ) -> Result<Self, JobError> {
        let state = match level {
            Some(l) => State::Zstd(super::backup::compressor(enc, l, threads)?),
            None => State::Raw(enc),
        };
        Ok(Sink {
            state,
            level,
            tail: false,
        })
    }

    /// Ends the last frame and the archive's final segment.
    pub(crate) fn finish(self) -> Result<Finished<W>, JobError> {
        let enc = match self.state {
            State::Raw(e) => e,
            State::Zstd(z) => z
                .finish()
                .map_err(|e| JobError::io("finishing compression", e))?,
            State::Broken => {
                return Err(JobError::io(
                    "writing the archive",
                    io::Error::other("an earlier write failed"),
                ))
            }
        };
        enc.finish()
            .map_err(|e| JobError::io("writing the archive", e))
    }

    fn writer(&mut self) -> io::Result<&mut dyn Write> {
        match &mut self.state {
            State::Raw(e) => Ok(e),
            State::Zstd(z) => Ok(z),
            State::Broken => Err(io::Error::other("an earlier write failed")),
        }
    }
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer()?.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer()?.flush()
    }
}

impl<W: Write> TailWrite for Sink<W> {
    fn start_tail(&mut self) -> io::Result<()> {
        if self.tail {
            return Err(io::Error::other("the tail was started twice"));
        }
        self.tail = true;
        let mut enc = match std::mem::replace(&mut self.state, State::Broken) {
            State::Raw(e) => e,
            State::Zstd(z) => z.finish()?,
            State::Broken => return Err(io::Error::other("an earlier write failed")),
        };
        enc.mark_tail();
        self.state = match self.level {
            // The manifest is small: one thread.
            Some(l) => State::Zstd(Zstd::new(enc, l)?),
            None => State::Raw(enc),
        };
        Ok(())
    }
}
