//! The decrypting reader: authenticated plaintext out of an archive stream.

use std::io::{self, BufRead, Read};

use super::opener::{Opener, Opening};
use super::{io_error, sha256_of, ArchiveHead, Framer};
use crate::format::{segment, ArchiveKeys, FormatError, Header};
use crate::secret::Dek;
use aws_lc_rs::digest;

/// Reads the plaintext payload of an archive. Each segment is authenticated before any of its
/// bytes are returned, and `Ok(0)` (end of file) comes only after the final segment
/// authenticated, so a reader that reached end of file has seen the whole, untouched payload.
///
/// A whole archive is read with its segments hashed and opened on two threads of a pipeline
/// (`super::opener`); a tail read opens them inline. After a failure, every later read
/// returns it again and releases nothing more.
pub struct DecryptReader<R> {
    framer: Framer<R>,
    mode: Mode,
    header: Header,
    /// The plaintext being read: the current segment's buffer (opened on the worker) or
    /// empty (opened inline, in the framer's buffer).
    cur: Vec<u8>,
    pos: usize,
    end: usize,
    plain_total: u64,
    header_digest: [u8; 32],
    /// The stream digest the worker computed, once the final segment was delivered.
    worker_digest: Option<[u8; 32]>,
    /// The first failure: every later read returns it again, and releases nothing more.
    failure: Option<Failure>,
}

/// A failure kept to be returned again (an `io::Error` cannot be copied).
enum Failure {
    /// The archive is damaged or forged.
    Format(FormatError),
    /// Reading it failed.
    Io(io::ErrorKind, String),
}

impl Failure {
    fn of(e: &io::Error) -> Failure {
        match super::format_error_in(e) {
            Some(f) => Failure::Format(f.clone()),
            None => Failure::Io(e.kind(), e.to_string()),
        }
    }

    fn again(&self) -> io::Error {
        match self {
            Failure::Format(f) => io_error(f.clone()),
            Failure::Io(kind, msg) => io::Error::new(*kind, msg.clone()),
        }
    }
}

/// Where segments are opened.
enum Mode {
    /// In the framer's buffer, by the reading thread.
    Inline(Box<Opening>),
    /// By the pipeline's threads.
    Ahead(Opener),
}

impl<R: Read> DecryptReader<R> {
    /// Checks the header MAC with the data key and prepares to read the body.
    pub fn new(inner: R, head: ArchiveHead, dek: &Dek) -> Result<Self, FormatError> {
        Self::open(inner, head, dek, None)
    }

    /// Like [`DecryptReader::new`], for a stream that starts at segment `first` of the body
    /// (a tail read from a target at its offset, see `crate::format::trailer`). The stream
    /// digest then covers only the segments read: the tail digest.
    pub fn new_at(inner: R, head: ArchiveHead, dek: &Dek, first: u64) -> Result<Self, FormatError> {
        Self::open(inner, head, dek, Some(first))
    }

    fn open(
        inner: R,
        head: ArchiveHead,
        dek: &Dek,
        first: Option<u64>,
    ) -> Result<Self, FormatError> {
        let keys = ArchiveKeys::derive(dek, &head.header.salt);
        keys.check_header_mac(&head.encoded, &head.mac)?;
        let block: [&[u8]; 2] = [&head.encoded, &head.mac];
        // A full read hashes the header block into the stream digest; a tail read does not.
        let (prelude, first_index) = match first {
            None => (&block[..], 0),
            Some(first) => (&[][..], first),
        };
        let mut framer = Framer::new(
            inner,
            head.header.segment_size,
            head.header.trailer_len(),
            prelude,
        )
        .starting_at(first_index);
        let mut opening = Box::new(Opening {
            keys,
            prefix: head.header.nonce_prefix,
            mac: head.mac,
            digest: None,
        });
        let mode = if first.is_none() {
            // A whole archive: the worker hashes and opens its segments.
            opening.digest = framer.take_digest();
            match Opener::start(opening) {
                Ok(o) => Mode::Ahead(o),
                Err(mut opening) => {
                    if let Some(ctx) = opening.digest.take() {
                        framer.put_digest(ctx);
                    }
                    Mode::Inline(opening)
                }
            }
        } else {
            Mode::Inline(opening)
        };
        let mut d = digest::Context::new(&digest::SHA256);
        block.iter().for_each(|b| d.update(b));
        Ok(DecryptReader {
            header_digest: sha256_of(d),
            framer,
            mode,
            header: head.header,
            cur: Vec::new(),
            pos: 0,
            end: 0,
            plain_total: 0,
            worker_digest: None,
            failure: None,
        })
    }

    /// SHA-256 of the header block (header and MAC) this reader was opened with.
    pub fn header_digest(&self) -> [u8; 32] {
        self.header_digest
    }

    /// The authenticated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// True once the final segment authenticated.
    pub fn is_complete(&self) -> bool {
        let idle = match &self.mode {
            Mode::Inline(_) => true,
            Mode::Ahead(o) => o.is_idle(),
        };
        self.framer.is_done() && idle && self.pos == self.end
    }

    /// Plaintext bytes released so far.
    pub fn plaintext_len(&self) -> u64 {
        self.plain_total
    }

    /// Archive bytes read so far.
    pub(crate) fn archive_len(&self) -> u64 {
        self.framer.bytes_read()
    }

    /// The trailer (signature) bytes, once complete.
    pub fn trailer(&self) -> &[u8] {
        self.framer.trailer()
    }

    /// SHA-256 of everything before the trailer, once complete (signed archives only).
    pub fn stream_digest(&self) -> Option<[u8; 32]> {
        match &self.mode {
            Mode::Inline(_) => self.framer.stream_digest(),
            Mode::Ahead(_) => self.worker_digest.filter(|_| self.is_complete()),
        }
    }

    /// Reads to the end, discarding plaintext, so that the final segment is authenticated.
    pub fn drain(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }
}

impl<R: Read> DecryptReader<R> {
    /// Opens the next segment once the current one is used up; false at the end. After a
    /// failure, returns it again.
    fn next_segment(&mut self) -> io::Result<bool> {
        if let Some(f) = &self.failure {
            return Err(f.again());
        }
        self.advance_segment()
            .inspect_err(|e| self.failure = Some(Failure::of(e)))
    }

    fn advance_segment(&mut self) -> io::Result<bool> {
        while self.pos == self.end {
            let more = match &mut self.mode {
                Mode::Inline(o) => open_inline(&mut self.framer, o)?,
                Mode::Ahead(o) => {
                    o.give_back(std::mem::take(&mut self.cur));
                    feed(&mut self.framer, o);
                    match o.next()? {
                        Some(opened) => {
                            if opened.digest.is_some() {
                                self.worker_digest = opened.digest;
                            }
                            self.cur = opened.buf;
                            Some(opened.len)
                        }
                        None => None,
                    }
                }
            };
            let Some(n) = more else {
                return Ok(false);
            };
            self.pos = 0;
            self.end = n;
        }
        Ok(true)
    }

    /// The plaintext of the current segment.
    fn plaintext(&self) -> &[u8] {
        match self.mode {
            Mode::Inline(_) => self.framer.segment(self.end),
            Mode::Ahead(_) => &self.cur[..self.end],
        }
    }
}

/// Reads and opens the next segment in the framer's own buffer; `None` at the end.
fn open_inline<R: Read>(framer: &mut Framer<R>, o: &Opening) -> io::Result<Option<usize>> {
    let Some(seg) = framer.advance()? else {
        return Ok(None);
    };
    let counter = u32::try_from(seg.index).map_err(|_| io_error(FormatError::TooManySegments))?;
    let buf = framer.segment_mut(seg.len);
    let n = segment::open(o.keys.payload(), &o.prefix, counter, seg.last, &o.mac, buf)
        .map_err(io_error)?;
    Ok(Some(n))
}

/// Reads segments ahead and hands them to the worker until it has enough in flight, the
/// stream ends, or reading fails (the error is held until the segments before it are
/// delivered).
fn feed<R: Read>(framer: &mut Framer<R>, o: &mut Opener) {
    while o.wants_more() && !framer.is_done() {
        match framer.advance() {
            Ok(Some(seg)) => {
                let buf = framer.take_segment(o.spare());
                o.submit(buf, seg);
            }
            Ok(None) => break,
            Err(e) => o.hold(e),
        }
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = {
            let avail = self.fill_buf()?;
            let n = out.len().min(avail.len());
            out[..n].copy_from_slice(&avail[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

/// The authenticated plaintext of the current segment, in place: a decompressor reads it
/// without a copy into a buffer of its own.
impl<R: Read> BufRead for DecryptReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if !self.next_segment()? {
            return Ok(&[]);
        }
        Ok(&self.plaintext()[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.pos);
        self.pos += n;
        self.plain_total += n as u64;
    }
}
