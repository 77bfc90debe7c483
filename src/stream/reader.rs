//! The decrypting reader: authenticated plaintext out of an archive stream.

use std::io::{self, BufRead, Read};

use super::{io_error, ArchiveHead, Framer};
use crate::format::{segment, ArchiveKeys, FormatError, Header};
use crate::secret::Dek;
use aws_lc_rs::digest;

/// Reads the plaintext payload of an archive. Each segment is authenticated before any of its
/// bytes are returned, and `Ok(0)` (end of file) comes only after the final segment
/// authenticated, so a reader that reached end of file has seen the whole, untouched payload.
pub struct DecryptReader<R> {
    framer: Framer<R>,
    keys: ArchiveKeys,
    prefix: [u8; 7],
    mac: [u8; 32],
    header: Header,
    pos: usize,
    end: usize,
    plain_total: u64,
    header_digest: [u8; 32],
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
        let framer = match first {
            // A whole archive: its digest is hashed beside the decryption.
            None => Framer::hashing_on_thread(
                inner,
                head.header.segment_size,
                head.header.trailer_len(),
                &block,
            ),
            Some(first) => Framer::new(
                inner,
                head.header.segment_size,
                head.header.trailer_len(),
                &[],
            )
            .starting_at(first),
        };
        let mut d = digest::Context::new(&digest::SHA256);
        block.iter().for_each(|b| d.update(b));
        Ok(DecryptReader {
            header_digest: d.finish().as_ref().try_into().expect("32 bytes"),
            framer,
            keys,
            prefix: head.header.nonce_prefix,
            mac: head.mac,
            header: head.header,
            pos: 0,
            end: 0,
            plain_total: 0,
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
        self.framer.is_done() && self.pos == self.end
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
        self.framer.stream_digest()
    }

    /// Reads to the end, discarding plaintext, so that the final segment is authenticated.
    pub fn drain(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }
}

impl<R: Read> DecryptReader<R> {
    /// Opens the next segment once the current one is used up; false at the end.
    fn next_segment(&mut self) -> io::Result<bool> {
        while self.pos == self.end {
            let Some(seg) = self.framer.advance()? else {
                return Ok(false);
            };
            let counter =
                u32::try_from(seg.index).map_err(|_| io_error(FormatError::TooManySegments))?;
            let buf = self.framer.segment_mut(seg.len);
            let n = segment::open(
                self.keys.payload(),
                &self.prefix,
                counter,
                seg.last,
                &self.mac,
                buf,
            )
            .map_err(io_error)?;
            self.pos = 0;
            self.end = n;
        }
        Ok(true)
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
        Ok(&self.framer.segment(self.end)[self.pos..self.end])
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.pos);
        self.pos += n;
        self.plain_total += n as u64;
    }
}
