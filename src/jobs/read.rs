//! Reading the payload of an opened archive to its authenticated end: verify and decrypt.

use std::io::{self, BufReader, Read, Write};

use crate::format::{ArchiveKind, Compression};
use crate::stream::DecryptReader;

use super::JobError;

/// Totals of a full authenticated read.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReadSummary {
    /// The archive kind.
    pub kind: &'static str,
    /// The archive id.
    pub archive_id: String,
    /// The appliance that wrote it.
    pub appliance_id: String,
    /// Creation time (Unix seconds).
    pub created_unix: i64,
    /// Archive bytes read.
    pub archive_bytes: u64,
    /// Payload bytes (after decompression).
    pub payload_bytes: u64,
    /// Tar entries (system and video archives).
    pub entries: u64,
    /// The slot kinds.
    pub slots: String,
    /// The signature check, when one was made.
    pub signature: Option<super::signature::SignatureStatus>,
}

/// Runs `consume` over the decompressed payload, then reads the archive to its end so that
/// the final segment is authenticated. Returns the reader, complete, and `consume`'s value.
pub(crate) fn with_payload<R: Read, T>(
    reader: DecryptReader<R>,
    consume: impl FnOnce(&mut dyn Read) -> io::Result<T>,
) -> Result<(DecryptReader<R>, T), JobError> {
    let compression = reader.header().compression;
    let buffered = BufReader::with_capacity(256 * 1024, reader);
    let (mut buffered, value) = match compression {
        Compression::Zstd { .. } => {
            let mut dec = zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| JobError::io("starting zstd", e))?;
            let v = consume(&mut dec).map_err(|e| JobError::io("reading the payload", e))?;
            io::copy(&mut dec, &mut io::sink())
                .map_err(|e| JobError::io("reading the payload", e))?;
            (dec.finish(), v)
        }
        Compression::None => {
            let mut b = buffered;
            let v = consume(&mut b).map_err(|e| JobError::io("reading the payload", e))?;
            (b, v)
        }
    };
    io::copy(&mut buffered, &mut io::sink()).map_err(|e| JobError::io("reading the archive", e))?;
    let reader = buffered.into_inner();
    if !reader.is_complete() {
        return Err(JobError::Integrity(crate::format::FormatError::Truncated(
            0,
        )));
    }
    Ok((reader, value))
}

fn summary<R: Read>(reader: &DecryptReader<R>, payload_bytes: u64, entries: u64) -> ReadSummary {
    let h = reader.header();
    ReadSummary {
        kind: h.kind.name(),
        archive_id: h.archive_id_hex(),
        appliance_id: h.appliance_id.clone(),
        created_unix: h.created_unix,
        archive_bytes: reader.archive_len(),
        payload_bytes,
        entries,
        slots: super::open::slot_list(h),
        signature: None,
    }
}

/// Reads everything and checks it: every segment authenticates, for tar payloads the tar
/// stream is well-formed, and the signature verifies under a key of `trust`.
pub fn verify<R: Read>(
    reader: DecryptReader<R>,
    trust: &super::signature::Trust,
) -> Result<ReadSummary, JobError> {
    let is_tree = reader.header().kind != ArchiveKind::Secrets;
    let (reader, (bytes, entries)) = with_payload(reader, |payload| {
        let mut counted = CountRead {
            inner: payload,
            n: 0,
        };
        let mut entries = 0;
        if is_tree {
            let mut ar = tar::Archive::new(&mut counted);
            for e in ar.entries()? {
                let mut e = e?;
                io::copy(&mut e, &mut io::sink())?;
                entries += 1;
            }
        }
        io::copy(&mut counted, &mut io::sink())?;
        Ok((counted.n, entries))
    })?;
    let mut s = summary(&reader, bytes, entries);
    s.signature = Some(super::signature::check_read(&reader, trust)?);
    Ok(s)
}

/// Writes the decompressed payload (the tar stream, or the secrets export) to `out`. The
/// caller must discard what was written when this fails.
pub fn decrypt<R: Read, W: Write + ?Sized>(
    reader: DecryptReader<R>,
    out: &mut W,
    trust: &super::signature::Trust,
) -> Result<ReadSummary, JobError> {
    let (reader, bytes) = with_payload(reader, |payload| io::copy(payload, out))?;
    out.flush()
        .map_err(|e| JobError::io("writing the output", e))?;
    let mut s = summary(&reader, bytes, 0);
    s.signature = Some(super::signature::check_read(&reader, trust)?);
    Ok(s)
}

/// Counts the bytes read through it.
pub(crate) struct CountRead<R> {
    inner: R,
    n: u64,
}

impl<R> CountRead<R> {
    /// Starts counting at zero.
    pub fn new(inner: R) -> Self {
        CountRead { inner, n: 0 }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.n
    }
}

impl<R: Read> Read for CountRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}
