//! The version-3 trailer: a signature that also vouches for the header and for the
//! archive's tail on their own, so that a reader can check them without reading the body.
//!
//! A chained archive (an incremental video backup) ends its payload with a manifest, the
//! *tail*. Rebuilding a lost catalogue, planning retention and restoring one point need
//! the manifest of an archive that may hold hundreds of gigabytes of recordings before it;
//! reading those would defeat the purpose. So the trailer carries, besides the signature,
//! the digest of the whole stream (what version 2 signs), where the tail starts, and the
//! digest of the tail's bytes, and the signature covers all of them and the header block:
//!
//! ```text
//! trailer = stream_digest (32) || tail_start (u64 LE) || tail_digest (32) || signature (64)
//! message = "offbox v3 archive signature\0" || SHA-256(header block) || stream_digest
//!           || tail_start (u64 LE) || tail_digest
//! ```
//!
//! A full reader computes `stream_digest` itself; a tail reader computes the header block's
//! and the tail's digests and takes `stream_digest` from the trailer; a header reader takes
//! both digests from the trailer. Each checks the one signature, which no one but the
//! signing key's holder can make, so each learns exactly what the writer wrote.
//! `docs/format.md` §5 is the specification.

use super::{FormatError, HEADER_MAC_LEN, TAG_LEN};

/// Domain separation of the version-3 signed message.
const V3_CONTEXT: &[u8] = b"offbox v3 archive signature\0";

/// Bytes of a version-3 trailer.
pub const TRAILER_V3_LEN: usize = 32 + 8 + 32 + 64;

/// A decoded version-3 trailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailerV3 {
    /// SHA-256 of every byte before the trailer.
    pub stream_digest: [u8; 32],
    /// The plaintext offset where the tail (the manifest) starts.
    pub tail_start: u64,
    /// SHA-256 of the archive bytes from the start of the segment holding `tail_start`
    /// to the end of the final segment.
    pub tail_digest: [u8; 32],
    /// ECDSA P-256 `r || s` over [`TrailerV3::message`].
    pub signature: [u8; 64],
}

impl TrailerV3 {
    /// Splits trailer bytes into their fields.
    pub fn decode(bytes: &[u8]) -> Result<TrailerV3, FormatError> {
        if bytes.len() != TRAILER_V3_LEN {
            return Err(FormatError::HeaderInvalid("trailer length"));
        }
        Ok(TrailerV3 {
            stream_digest: bytes[..32].try_into().expect("32 bytes"),
            tail_start: u64::from_le_bytes(bytes[32..40].try_into().expect("8 bytes")),
            tail_digest: bytes[40..72].try_into().expect("32 bytes"),
            signature: bytes[72..].try_into().expect("64 bytes"),
        })
    }

    /// The trailer bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TRAILER_V3_LEN);
        out.extend_from_slice(&self.stream_digest);
        out.extend_from_slice(&self.tail_start.to_le_bytes());
        out.extend_from_slice(&self.tail_digest);
        out.extend_from_slice(&self.signature);
        out
    }
}

/// The message a version-3 signature covers.
pub fn message_v3(
    header_digest: &[u8; 32],
    stream_digest: &[u8; 32],
    tail_start: u64,
    tail_digest: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(V3_CONTEXT.len() + 104);
    m.extend_from_slice(V3_CONTEXT);
    m.extend_from_slice(header_digest);
    m.extend_from_slice(stream_digest);
    m.extend_from_slice(&tail_start.to_le_bytes());
    m.extend_from_slice(tail_digest);
    m
}

/// Where the tail's segments are: the index of the segment holding plaintext offset
/// `tail_start`, and that segment's byte offset in the archive, for a header block
/// (`MAGIC || len || header`) of `encoded_len` bytes.
pub fn tail_segment(encoded_len: usize, segment_size: u32, tail_start: u64) -> (u64, u64) {
    let index = tail_start / u64::from(segment_size);
    let body = (encoded_len + HEADER_MAC_LEN) as u64;
    (
        index,
        body + index * (u64::from(segment_size) + TAG_LEN as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_round_trip_and_layout() {
        let t = TrailerV3 {
            stream_digest: [1; 32],
            tail_start: 0x0102_0304_0506_0708,
            tail_digest: [2; 32],
            signature: [3; 64],
        };
        let b = t.encode();
        assert_eq!(b.len(), TRAILER_V3_LEN);
        assert_eq!(&b[32..40], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(TrailerV3::decode(&b).unwrap(), t);
        assert!(TrailerV3::decode(&b[1..]).is_err());
        let m = message_v3(&[9; 32], &[1; 32], 5, &[2; 32]);
        assert!(m.starts_with(b"offbox v3 archive signature\0"));
        assert_eq!(m.len(), 28 + 104);
    }

    #[test]
    fn tail_segment_offsets() {
        // Header block of 100 bytes, 4096-byte segments: the body starts at 132.
        assert_eq!(tail_segment(100, 4096, 0), (0, 132));
        assert_eq!(tail_segment(100, 4096, 4095), (0, 132));
        assert_eq!(tail_segment(100, 4096, 4096), (1, 132 + 4112));
        assert_eq!(tail_segment(100, 4096, 3 * 4096 + 1), (3, 132 + 3 * 4112));
    }
}
