//! The offbox archive format, versions 1 and 2: pure data types, encodings and the key schedule.
//!
//! This module does no I/O. It turns headers into bytes and back, derives the per-archive
//! keys from a data key, and seals or opens single body segments. The streaming layer
//! (`crate::stream`) drives it over `Read`/`Write`; `docs/format.md` is the specification.

pub mod error;
pub mod header;
pub mod schedule;
pub mod segment;
pub mod signature;
pub mod trailer;

pub use error::FormatError;
pub use header::{ArchiveKind, Chain, Compression, Header, KeySlot, SignerInfo};
pub use schedule::ArchiveKeys;

/// The eight bytes every archive starts with: "OFFBOX" then CR LF, which catches text-mode
/// transfers that rewrite line endings.
pub const MAGIC: [u8; 8] = *b"OFFBOX\r\n";

/// The format version this build writes. Version 2 binds every key slot to its archive
/// (`docs/format.md` §6); the bytes are otherwise those of version 1.
pub const VERSION: u16 = 2;

/// The format version of chained (incremental video) archives: version 2 plus a [`Chain`]
/// in the header and a trailer that lets a reader check the header and the archive's tail
/// (its manifest) without reading the rest (`docs/format.md` §5, §8).
pub const VERSION_CHAIN: u16 = 3;

/// The newest format version this build reads.
pub(crate) const MAX_READ_VERSION: u16 = VERSION_CHAIN;

/// Most archives a chained archive may depend on (keeps the header small).
pub(crate) const MAX_CHAIN_DEPENDS: usize = 1024;

/// The oldest format version this build still reads (unbound device slots; such archives
/// are trusted only through their signature, like every other).
pub(crate) const MIN_READ_VERSION: u16 = 1;

/// Length of the header MAC that follows the encoded header.
pub const HEADER_MAC_LEN: usize = 32;

/// Length of the AEAD tag that ends every body segment.
pub const TAG_LEN: usize = 16;

/// Largest encoded header accepted (key slots included).
pub const MAX_HEADER_LEN: usize = 64 * 1024;

/// Smallest and largest segment sizes accepted in a header.
pub const MIN_SEGMENT_SIZE: u32 = 4 * 1024;
/// See [`MIN_SEGMENT_SIZE`].
pub(crate) const MAX_SEGMENT_SIZE: u32 = 16 * 1024 * 1024;

/// Segment size used when the configuration does not choose one.
pub(crate) const DEFAULT_SEGMENT_SIZE: u32 = 1024 * 1024;
