//! Reading an archive over SFTP.

use std::io::{self, Read};

use crate::targets::TargetError;

/// An archive being read.
pub(super) struct SshReader {
    pub(super) file: ssh2::File,
    pub(super) url: String,
}

impl Read for SshReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file
            .read(buf)
            .map_err(|e| TargetError::from_io(&self.url, "reading the archive", &e).into_io())
    }
}
