//! Errors of the pure format layer: malformed, unsupported or unauthentic archive bytes.

use thiserror::Error;

/// What is wrong with the bytes of an archive. Every variant tells the operator what to do.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not an offbox archive (bad magic bytes); check that you passed the archive file, not something else")]
    BadMagic,
    #[error("archive format version {0} is not supported by this build (it reads versions 1 to 3); use a newer offbox")]
    UnsupportedVersion(u16),
    #[error(
        "the archive header is truncated; the file was cut short, copy it again from the target"
    )]
    TruncatedHeader,
    #[error("the archive header is {0} bytes, more than the 65536 allowed; the file is corrupt or not an offbox archive")]
    HeaderTooLarge(usize),
    #[error("the archive header cannot be decoded ({0}); the file is corrupt")]
    HeaderDecode(String),
    #[error("the archive header is invalid: {0}; the file is corrupt")]
    HeaderInvalid(&'static str),
    #[error("the archive header failed authentication: it was modified after the archive was written, or the wrong key opened it; do not trust this file, restore from another copy")]
    HeaderAuth,
    #[error("segment {0} failed authentication: the archive was modified, reordered, truncated or extended; do not trust this file, restore from another copy")]
    SegmentAuth(u64),
    #[error(
        "the archive ends inside segment {0}: it was truncated; copy it again from the target"
    )]
    Truncated(u64),
    #[error("the archive has more than 2^32 segments; split the backup")]
    TooManySegments,
}
