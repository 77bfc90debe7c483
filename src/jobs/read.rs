//! Reading the payload of an opened archive to its authenticated end: verify and decrypt.

use std::io::{self, Read, Write};

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
    /// Creation time, RFC 3339 in UTC (`2026-11-23T02:30:00Z`); see [`created_rfc3339`].
    pub created: Option<String>,
    /// Archive bytes read.
    pub archive_bytes: u64,
    /// Payload bytes: the whole decompressed payload (for a tree, the tar stream with its
    /// end-of-archive blocks and padding), the same for `verify`, `decrypt` and `restore`.
    pub payload_bytes: u64,
    /// Tar entries (system and video archives).
    pub entries: u64,
    /// The key slot kinds in header order (`pkcs11` or `tpm`, `recovery`), as `backup`'s
    /// summary lists them.
    pub slots: Vec<&'static str>,
    /// The signature check, when one was made (left out of the JSON otherwise, so that a
    /// restore's summary carries one `signature`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<super::signature::SignatureStatus>,
}

/// Runs `consume` over the decompressed payload, then reads the archive to its end so that
/// the final segment is authenticated. Returns the reader, complete, and `consume`'s value.
pub(crate) fn with_payload<R: Read, T>(
    reader: DecryptReader<R>,
    consume: impl FnOnce(&mut dyn Read) -> io::Result<T>,
) -> Result<(DecryptReader<R>, T), JobError> {
    let compression = reader.header().compression;
    // The reader is its own buffer: zstd reads each authenticated segment in place.
    let (mut reader, value) = match compression {
        Compression::Zstd { .. } => {
            let mut dec = zstd::stream::read::Decoder::with_buffer(reader)
                .map_err(|e| JobError::io("starting zstd", e))?;
            let v = consume(&mut dec).map_err(|e| JobError::io("reading the payload", e))?;
            io::copy(&mut dec, &mut io::sink())
                .map_err(|e| JobError::io("reading the payload", e))?;
            (dec.finish(), v)
        }
        Compression::None => {
            let mut b = reader;
            let v = consume(&mut b).map_err(|e| JobError::io("reading the payload", e))?;
            (b, v)
        }
    };
    io::copy(&mut reader, &mut io::sink()).map_err(|e| JobError::io("reading the archive", e))?;
    if !reader.is_complete() {
        return Err(JobError::Integrity(crate::format::FormatError::Truncated(
            0,
        )));
    }
    Ok((reader, value))
}

/// The summary of a complete read of `payload_bytes` payload bytes and `entries` entries.
pub(crate) fn summary<R: Read>(
    reader: &DecryptReader<R>,
    payload_bytes: u64,
    entries: u64,
) -> ReadSummary {
    let h = reader.header();
    ReadSummary {
        kind: h.kind.name(),
        archive_id: h.archive_id_hex(),
        appliance_id: h.appliance_id.clone(),
        created_unix: h.created_unix,
        created: created_rfc3339(h.created_unix),
        archive_bytes: reader.archive_len(),
        payload_bytes,
        entries,
        slots: h.slots.iter().map(|s| s.kind_name()).collect(),
        signature: None,
    }
}

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z).
const MAX_RFC3339: i64 = 253_402_300_799;

/// An archive's creation time as RFC 3339 in UTC, or `None` for a time before 1970 or after
/// the year 9999 (which no clock writes, and RFC 3339 cannot show).
pub(crate) fn created_rfc3339(unix: i64) -> Option<String> {
    (0..=MAX_RFC3339)
        .contains(&unix)
        .then(|| crate::notify::format::rfc3339(unix))
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

#[cfg(test)]
mod tests {
    #[test]
    fn created_times_in_rfc3339() {
        use super::created_rfc3339;
        assert_eq!(created_rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            created_rfc3339(1_796_168_162).as_deref(),
            Some("2026-12-01T23:36:02Z")
        );
        assert_eq!(
            created_rfc3339(253_402_300_799).as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
        assert_eq!(created_rfc3339(253_402_300_800), None);
        assert_eq!(created_rfc3339(-1), None);
        assert_eq!(created_rfc3339(i64::MAX), None);
    }
}
