//! The encrypting writer: an archive stream out of plaintext.

use std::io::{self, Write};

use aws_lc_rs::digest;

use super::sha256_of;
use crate::format::{segment, ArchiveKeys, FormatError, Header, HEADER_MAC_LEN, TAG_LEN};
use crate::secret::Dek;

/// Writes an archive: the header block at creation, then one sealed segment per
/// `segment_size` plaintext bytes. [`EncryptWriter::finish`] seals the final segment; without
/// it the stream has no final segment and every reader rejects it as truncated.
pub struct EncryptWriter<W: Write> {
    inner: W,
    keys: ArchiveKeys,
    prefix: [u8; 7],
    mac: [u8; HEADER_MAC_LEN],
    segment_size: usize,
    buf: Vec<u8>,
    counter: u64,
    digest: Option<digest::Context>,
    header_digest: [u8; 32],
    tail: Option<Tail>,
    bytes_in: u64,
    bytes_out: u64,
    failed: bool,
}

/// The tail being hashed (version-3 archives): where it starts and the digest so far.
struct Tail {
    start: u64,
    segment: u64,
    digest: digest::Context,
}

/// What a finished writer hands back.
pub struct Finished<W> {
    /// The underlying writer, flushed. For a signed archive the caller appends the signature.
    pub inner: W,
    /// Plaintext bytes written.
    pub bytes_in: u64,
    /// Archive bytes written (header block and segments, no trailer).
    pub bytes_out: u64,
    /// SHA-256 of all archive bytes written, when the header names a signer.
    pub stream_digest: Option<[u8; 32]>,
    /// SHA-256 of the header block (header and MAC).
    pub header_digest: [u8; 32],
    /// The tail's plaintext start and the SHA-256 of its segments, when
    /// [`EncryptWriter::mark_tail`] was called.
    pub tail: Option<(u64, [u8; 32])>,
}

impl<W: Write> EncryptWriter<W> {
    /// Writes the header block and returns a writer for the payload.
    pub fn new(mut inner: W, header: &Header, dek: &Dek) -> io::Result<Self> {
        let encoded = header.encode().map_err(super::io_error)?;
        let keys = ArchiveKeys::derive(dek, &header.salt);
        let mac = keys.header_mac(&encoded);
        inner.write_all(&encoded)?;
        inner.write_all(&mac)?;
        let mut digest = header
            .signer
            .is_some()
            .then(|| digest::Context::new(&digest::SHA256));
        if let Some(d) = digest.as_mut() {
            d.update(&encoded);
            d.update(&mac);
        }
        let mut hd = digest::Context::new(&digest::SHA256);
        hd.update(&encoded);
        hd.update(&mac);
        let header_digest = hd
            .finish()
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        let segment_size = header.segment_size as usize;
        Ok(EncryptWriter {
            inner,
            keys,
            prefix: header.nonce_prefix,
            mac,
            segment_size,
            buf: Vec::with_capacity(segment_size + TAG_LEN),
            counter: 0,
            digest,
            header_digest,
            tail: None,
            bytes_in: 0,
            bytes_out: (encoded.len() + HEADER_MAC_LEN) as u64,
            failed: false,
        })
    }

    fn seal_and_write(&mut self, last: bool) -> io::Result<()> {
        if self.failed {
            return Err(failed_earlier());
        }
        // Any failure from here on poisons the writer: the segment is consumed either way,
        // so a later write must not append to it or seal it again.
        self.failed = true;
        let counter = u32::try_from(self.counter)
            .map_err(|_| super::io_error(FormatError::TooManySegments))?;
        segment::seal(
            self.keys.payload(),
            &self.prefix,
            counter,
            last,
            &self.mac,
            &mut self.buf,
        );
        if let Some(d) = self.digest.as_mut() {
            d.update(&self.buf);
        }
        if let Some(t) = self.tail.as_mut().filter(|t| self.counter >= t.segment) {
            t.digest.update(&self.buf);
        }
        let written = self.inner.write_all(&self.buf);
        let len = self.buf.len() as u64;
        self.buf.clear();
        written?;
        self.bytes_out += len;
        self.counter += 1;
        self.failed = false;
        Ok(())
    }

    /// Seals the final segment, flushes, and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<Finished<W>> {
        self.seal_and_write(true)?;
        self.inner.flush()?;
        Ok(Finished {
            stream_digest: self.digest.take().map(sha256_of),
            header_digest: self.header_digest,
            tail: self.tail.take().map(|t| {
                let d = t.digest.finish();
                (t.start, d.as_ref().try_into().expect("SHA-256 is 32 bytes"))
            }),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            inner: self.inner,
        })
    }

    /// Marks the next plaintext byte as the start of the archive's tail (its manifest):
    /// from the segment that will hold it on, the sealed bytes are also hashed on their own
    /// for the version-3 trailer (`crate::format::trailer`). Called once.
    pub fn mark_tail(&mut self) {
        debug_assert!(self.tail.is_none(), "one tail per archive");
        self.tail = Some(Tail {
            start: self.bytes_in,
            segment: self.bytes_in / self.segment_size as u64,
            digest: digest::Context::new(&digest::SHA256),
        });
    }

    /// Plaintext bytes accepted so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(failed_earlier());
        }
        if data.is_empty() {
            return Ok(0);
        }
        // A full buffer is sealed as non-final only once more data arrives: the final
        // segment may be full-sized.
        if self.buf.len() == self.segment_size {
            self.seal_and_write(false)?;
        }
        let n = data.len().min(self.segment_size - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.bytes_in += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn failed_earlier() -> io::Error {
    io::Error::other(
        "an earlier write of this archive failed; the archive is incomplete and must be discarded",
    )
}
