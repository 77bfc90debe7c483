//! Reading an archive's header block before any key is known.

use std::io::Read;

use crate::format::{FormatError, Header, HEADER_MAC_LEN};

/// The header block of an archive as read from its first bytes: the decoded header, the exact
/// bytes the MAC covers, and the MAC. Authentic only once a data key has checked the MAC.
pub struct ArchiveHead {
    /// The decoded (not yet authenticated) header.
    pub header: Header,
    /// `MAGIC || len || header`, exactly as read.
    pub encoded: Vec<u8>,
    /// The header MAC as read.
    pub mac: [u8; HEADER_MAC_LEN],
}

impl ArchiveHead {
    /// Reads and decodes the header block from the start of a stream.
    pub fn read_from<R: Read>(r: &mut R) -> Result<Self, HeadError> {
        let mut prefix = [0u8; 12];
        read_full(r, &mut prefix)?;
        let len = Header::decode_prefix(&prefix)?;
        let mut encoded = Vec::with_capacity(12 + len);
        encoded.extend_from_slice(&prefix);
        encoded.resize(12 + len, 0);
        read_full(r, &mut encoded[12..])?;
        let header = Header::decode_body(&encoded[12..])?;
        let mut mac = [0u8; HEADER_MAC_LEN];
        read_full(r, &mut mac)?;
        Ok(ArchiveHead {
            header,
            encoded,
            mac,
        })
    }
}

/// Why the header block could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The bytes are not a valid header.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Reading failed.
    #[error("reading the archive failed: {0}")]
    Io(#[from] std::io::Error),
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<(), HeadError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            HeadError::Format(FormatError::TruncatedHeader)
        } else {
            HeadError::Io(e)
        }
    })
}
