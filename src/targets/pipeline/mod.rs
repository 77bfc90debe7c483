//! A writer thread per upload ([`Pipelined`]) and a read-ahead thread per download
//! ([`Prefetched`]). The archive is packed, compressed and encrypted on the calling thread
//! while the chunks before it travel to the target on another thread, so the round trips of
//! a client that has one request in flight at a time (SFTP, SMB2, NFSv3) overlap the work
//! that produces the next bytes; a restore decrypts and unpacks one chunk while the next
//! ones arrive.
//!
//! Memory is bounded: at most [`DEPTH`] chunks of [`CHUNK`] bytes wait in a queue, and
//! their buffers are reused.

mod download;
mod upload;

pub use download::Prefetched;
pub use upload::Pipelined;

/// Bytes handed to the writer thread at a time.
pub(crate) const CHUNK: usize = 1 << 20;
/// Chunks that may wait for the writer thread.
pub(crate) const DEPTH: usize = 3;

#[cfg(test)]
fn test_data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}
