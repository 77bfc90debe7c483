//! Cutting the body of an archive into segments without any key.
//!
//! The framer holds one segment plus `trailer_len + 1` bytes of look-ahead. When a full
//! segment is followed by more than a trailer's worth of bytes, it is not the last; at end of
//! stream, everything but the trailer is the last segment. Both the decrypting reader and the
//! keyless verifier use it, and it keeps the SHA-256 that archive signatures cover.

use std::io::{self, Read};

use aws_lc_rs::digest;

use super::{io_error, sha256_of};
use crate::format::{FormatError, TAG_LEN};

/// Where the current segment is: its index and whether it is the final one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRef {
    /// Position of the segment in the stream, from 0.
    pub index: u64,
    /// True for the final segment.
    pub last: bool,
    /// Length of the sealed segment (ciphertext and tag).
    pub len: usize,
}

/// Splits an archive body into sealed segments and the trailer.
pub struct Framer<R> {
    inner: R,
    raw: Vec<u8>,
    filled: usize,
    consumed: usize,
    sealed_len: usize,
    trailer_len: usize,
    next_index: u64,
    done: bool,
    digest: Option<digest::Context>,
    /// The stream digest, once the final segment was reached.
    stream_digest: Option<[u8; 32]>,
    trailer: Vec<u8>,
    bytes_read: u64,
    prelude_digest: [u8; 32],
}

impl<R: Read> Framer<R> {
    /// Starts framing after the header block. `prelude` is the header block; it is hashed
    /// first when `trailer_len > 0` (the archive is signed).
    pub fn new(inner: R, segment_size: u32, trailer_len: usize, prelude: &[&[u8]]) -> Self {
        let sealed_len = segment_size as usize + TAG_LEN;
        let mut pd = digest::Context::new(&digest::SHA256);
        for p in prelude {
            pd.update(p);
        }
        let prelude_digest = sha256_of(pd);
        let digest = (trailer_len > 0).then(|| {
            let mut ctx = digest::Context::new(&digest::SHA256);
            for p in prelude {
                ctx.update(p);
            }
            ctx
        });
        Framer {
            inner,
            raw: vec![0u8; sealed_len + trailer_len + 1],
            filled: 0,
            consumed: 0,
            sealed_len,
            trailer_len,
            next_index: 0,
            done: false,
            digest,
            stream_digest: None,
            trailer: Vec::new(),
            bytes_read: prelude.iter().map(|p| p.len() as u64).sum(),
            prelude_digest,
        }
    }

    /// Starts at segment `index` instead of 0: for reading an archive's tail from its
    /// first segment (the stream digest then covers the prelude and the segments read).
    pub fn starting_at(mut self, index: u64) -> Self {
        self.next_index = index;
        self
    }

    /// Takes the stream digest (of a signed archive) away from the framer, holding the
    /// prelude hashed so far: whoever takes it hashes every segment in order instead, and
    /// the framer's [`Framer::stream_digest`] stays `None`.
    pub(crate) fn take_digest(&mut self) -> Option<digest::Context> {
        self.digest.take()
    }

    /// SHA-256 of the prelude (the header block).
    pub fn prelude_digest(&self) -> [u8; 32] {
        self.prelude_digest
    }

    /// Moves to the next segment. `Ok(None)` once the final segment has been returned.
    pub fn advance(&mut self) -> io::Result<Option<SegmentRef>> {
        if self.done {
            return Ok(None);
        }
        if self.consumed > 0 {
            self.raw.copy_within(self.consumed..self.filled, 0);
            self.filled -= self.consumed;
            self.consumed = 0;
        }
        while self.filled < self.raw.len() {
            match self.inner.read(&mut self.raw[self.filled..]) {
                Ok(0) => break,
                Ok(n) => {
                    self.filled += n;
                    self.bytes_read += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let index = self.next_index;
        if index > u64::from(u32::MAX) {
            return Err(io_error(FormatError::TooManySegments));
        }
        let (len, last) = if self.filled == self.raw.len() {
            (self.sealed_len, false)
        } else {
            if self.filled < self.trailer_len + TAG_LEN {
                return Err(io_error(FormatError::Truncated(index)));
            }
            let len = self.filled - self.trailer_len;
            self.trailer = self.raw[len..self.filled].to_vec();
            self.done = true;
            (len, true)
        };
        if let Some(d) = self.digest.as_mut() {
            d.update(&self.raw[..len]);
            if last {
                self.stream_digest = Some(sha256_of(d.clone()));
            }
        }
        self.consumed = if last { self.filled } else { len };
        self.next_index += 1;
        Ok(Some(SegmentRef { index, last, len }))
    }

    /// The first `len` bytes of the current segment, mutable so that it can be opened in place.
    pub(crate) fn segment_mut(&mut self, len: usize) -> &mut [u8] {
        &mut self.raw[..len]
    }

    /// Gives the framer back a digest taken with [`Framer::take_digest`] before any segment.
    pub(crate) fn put_digest(&mut self, ctx: digest::Context) {
        self.digest = Some(ctx);
    }

    /// Takes the buffer that holds the current segment (at its front), for the caller to
    /// keep, and goes on in `spare` (which gets the look-ahead bytes): the segment leaves the
    /// framer without a copy. Call it after [`Framer::advance`] and before the next one.
    pub(crate) fn take_segment(&mut self, mut spare: Vec<u8>) -> Vec<u8> {
        spare.resize(self.raw.len(), 0);
        let rest = self.filled - self.consumed;
        spare[..rest].copy_from_slice(&self.raw[self.consumed..self.filled]);
        self.filled = rest;
        self.consumed = 0;
        std::mem::replace(&mut self.raw, spare)
    }

    /// The first `len` bytes of the current segment.
    pub fn segment(&self, len: usize) -> &[u8] {
        &self.raw[..len]
    }

    /// The trailer bytes; empty until the final segment has been reached.
    pub fn trailer(&self) -> &[u8] {
        &self.trailer
    }

    /// True once the final segment has been returned.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// SHA-256 of the header block and all segments, once done, for signed archives.
    pub fn stream_digest(&self) -> Option<[u8; 32]> {
        self.stream_digest.filter(|_| self.done)
    }

    /// Bytes read from the archive so far, header block included.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }
}
