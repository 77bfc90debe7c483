//! Reading what a video archive says about its restore point without reading its
//! recordings: its header and chain (header block and trailer: two small reads, no key),
//! and its manifest (header, trailer and tail: three small reads and one key operation).
//! Both are checked against the version-3 signature (`crate::format::trailer`) before
//! anything in them is used.

use std::io::{self, Read};

use crate::format::trailer::{tail_segment, TRAILER_V3_LEN};
use crate::format::{ArchiveKind, Compression, Header, VERSION_CHAIN};
use crate::keys::SlotIdentity;
use crate::payload::videos::manifest::{MANIFEST_ENTRY, MAX_MANIFEST_LEN};
use crate::payload::videos::Manifest;
use crate::stream::{ArchiveHead, DecryptReader};

use super::super::open::{read_head, unwrap_dek};
use super::super::signature::Trust;
use super::super::target::target_err;
use super::super::JobError;
use crate::targets::Target;

/// Why an archive cannot serve as a video restore point.
fn not_video(name: &str, why: &str) -> JobError {
    JobError::io(
        format!("reading video archive {name}"),
        io::Error::new(io::ErrorKind::InvalidData, why.to_string()),
    )
}

/// Reads and decodes the header block of `name`.
fn head_of(target: &mut dyn Target, name: &str) -> Result<ArchiveHead, JobError> {
    let mut r = target
        .open(name)
        .map_err(|e| target_err(&format!("reading {name}"), e))?;
    let head = read_head(&mut r)?;
    let h = &head.header;
    if h.kind != ArchiveKind::Videos || h.version < VERSION_CHAIN || h.chain.is_none() {
        return Err(not_video(
            name,
            "it is not an incremental video archive (format version 3 with a chain)",
        ));
    }
    Ok(head)
}

fn trailer_of(target: &mut dyn Target, name: &str, size: u64) -> Result<Vec<u8>, JobError> {
    let at = size
        .checked_sub(TRAILER_V3_LEN as u64)
        .ok_or_else(|| not_video(name, "it is shorter than its trailer"))?;
    let r = target
        .open_at(name, at)
        .map_err(|e| target_err(&format!("reading {name}"), e))?;
    let mut t = Vec::with_capacity(TRAILER_V3_LEN);
    r.take(TRAILER_V3_LEN as u64 + 1)
        .read_to_end(&mut t)
        .map_err(|e| JobError::io(format!("reading {name}"), e))?;
    if t.len() != TRAILER_V3_LEN {
        return Err(not_video(name, "its trailer is cut short"));
    }
    Ok(t)
}

fn digest_of(head: &ArchiveHead) -> [u8; 32] {
    let mut d = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    d.update(&head.encoded);
    d.update(&head.mac);
    d.finish().as_ref().try_into().expect("32 bytes")
}

/// The authenticated header of video archive `name` of `size` bytes: its chain, checked
/// against the signature with no key and no body byte.
pub(crate) fn read_header(
    target: &mut dyn Target,
    name: &str,
    size: u64,
    trust: &Trust,
) -> Result<Header, JobError> {
    let head = head_of(target, name)?;
    let trailer = trailer_of(target, name, size)?;
    trust.check_head(&head.header, &digest_of(&head), &trailer)?;
    Ok(head.header)
}

/// The authenticated header and manifest of video archive `name` of `size` bytes. The data
/// key comes from `custodians` (one device operation); the tail is read from its first
/// segment, authenticated segment by segment, and its digest checked by the signature.
pub(crate) fn read_manifest(
    target: &mut dyn Target,
    name: &str,
    size: u64,
    custodians: &mut [&mut dyn SlotIdentity],
    trust: &Trust,
) -> Result<(Header, Manifest), JobError> {
    let head = head_of(target, name)?;
    trust.precheck(&head.header)?;
    let trailer = crate::format::trailer::TrailerV3::decode(&trailer_of(target, name, size)?)
        .map_err(|_| not_video(name, "its trailer is malformed"))?;
    let (dek, _) = unwrap_dek(&head.header, custodians)?;
    let seg = head.header.segment_size;
    let (index, offset) = tail_segment(head.encoded.len(), seg, trailer.tail_start);
    if offset >= size {
        return Err(not_video(name, "its tail lies beyond its end"));
    }
    let input = target
        .open_at(name, offset)
        .map_err(|e| target_err(&format!("reading {name}"), e))?;
    let compression = head.header.compression;
    let mut reader = DecryptReader::new_at(input, head, &dek, index)?;
    drop(dek);
    let skip = trailer.tail_start - index * u64::from(seg);
    let skipped = io::copy(&mut (&mut reader).take(skip), &mut io::sink())
        .map_err(|e| JobError::io(format!("reading the tail of {name}"), e))?;
    if skipped != skip {
        return Err(not_video(name, "its tail starts beyond its payload"));
    }
    let bytes = match compression {
        Compression::None => manifest_bytes(&mut reader),
        Compression::Zstd { .. } => {
            let mut z = zstd::stream::read::Decoder::new(&mut reader)
                .map_err(|e| JobError::io("starting zstd", e))?;
            let b = manifest_bytes(&mut z);
            // The tail's frame ends the payload: read to its end.
            io::copy(&mut z, &mut io::sink())
                .map_err(|e| JobError::io(format!("reading the tail of {name}"), e))?;
            b
        }
    }
    .map_err(|e| JobError::io(format!("reading the manifest of {name}"), e))?;
    reader
        .drain()
        .map_err(|e| JobError::io(format!("reading the tail of {name}"), e))?;
    if !reader.is_complete() {
        return Err(not_video(name, "its tail is cut short"));
    }
    let tail_digest = reader
        .stream_digest()
        .expect("signed archives keep a digest");
    let (start, _) = trust.check_tail(
        reader.header(),
        &reader.header_digest(),
        &tail_digest,
        reader.trailer(),
    )?;
    if start != trailer.tail_start {
        return Err(not_video(name, "its trailer changed while it was read"));
    }
    let manifest = Manifest::decode(&bytes)
        .map_err(|e| not_video(name, &format!("its manifest is refused: {e}")))?;
    if manifest.archive_id != reader.header().archive_id {
        return Err(not_video(name, "its manifest belongs to another archive"));
    }
    Ok((reader.header().clone(), manifest))
}

/// The manifest entry's bytes: the first tar entry of the tail.
fn manifest_bytes(r: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut ar = tar::Archive::new(r);
    let mut entries = ar.entries()?;
    let mut e = entries
        .next()
        .ok_or_else(|| io::Error::other("the tail holds no entry"))??;
    if e.path()?.to_str() != Some(MANIFEST_ENTRY) || e.size() > MAX_MANIFEST_LEN {
        return Err(io::Error::other("the tail's entry is not a manifest"));
    }
    let mut out = Vec::with_capacity(e.size() as usize);
    e.read_to_end(&mut out)?;
    Ok(out)
}
