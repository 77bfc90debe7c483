//! Streaming encryption and decryption of whole archives over `std::io`.
//!
//! [`EncryptWriter`] implements `Write` and must be `finish()`ed; dropping it unfinished leaves
//! a stream that every reader rejects as truncated. [`DecryptReader`] implements `Read` and
//! releases plaintext only after its segment authenticated; it returns end-of-file only after
//! the final segment did. Memory use is a few segments, whatever the archive size.

pub mod framer;
pub mod head;
mod opener;
pub mod reader;
pub mod writer;

pub use framer::{Framer, SegmentRef};
pub use head::ArchiveHead;
pub use reader::DecryptReader;
pub use writer::{EncryptWriter, Finished};

use crate::format::FormatError;

/// Domain separation prefix of the message an archive signature covers.
pub(crate) const SIGNATURE_CONTEXT: &[u8] = b"offbox v1 archive signature\0";

/// The message an archive signature covers: context, then SHA-256 of every byte before the
/// trailer (header, header MAC and all segments).
pub fn signed_message(stream_digest: &[u8; 32]) -> Vec<u8> {
    let mut m = SIGNATURE_CONTEXT.to_vec();
    m.extend_from_slice(stream_digest);
    m
}

/// The SHA-256 a finished context holds, as the 32 bytes the format stores.
pub(crate) fn sha256_of(ctx: aws_lc_rs::digest::Context) -> [u8; 32] {
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// Maps a format error into an `io::Error` that keeps it as the source, so that callers
/// reading through `Read` can still recover the precise cause (`jobs::error::find_format_error`).
pub(crate) fn io_error(e: FormatError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// The format error inside an `io::Error` made by [`io_error`], if any.
pub(crate) fn format_error_in(e: &std::io::Error) -> Option<&FormatError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<FormatError>())
}

#[cfg(test)]
mod tests;
