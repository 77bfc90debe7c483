//! Content hashes of recordings (SHA-256, from the one crypto provider), and a reader that
//! hashes what passes through it.

use std::fs::File;
use std::io::{self, Read};

use aws_lc_rs::digest;

/// SHA-256 of a file's content.
pub fn hash_file(path: &str) -> io::Result<[u8; 32]> {
    let mut r = Hashing::new(File::open(path)?);
    io::copy(&mut r, &mut io::sink())?;
    Ok(r.finish())
}

/// Hashes the bytes read through it.
pub struct Hashing<R> {
    inner: R,
    ctx: digest::Context,
}

impl<R> Hashing<R> {
    /// Starts hashing.
    pub fn new(inner: R) -> Self {
        Hashing {
            inner,
            ctx: digest::Context::new(&digest::SHA256),
        }
    }

    /// The digest of everything read.
    pub fn finish(self) -> [u8; 32] {
        self.ctx.finish().as_ref().try_into().expect("32 bytes")
    }

    /// The wrapped reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ctx.update(&buf[..n]);
        Ok(n)
    }
}
