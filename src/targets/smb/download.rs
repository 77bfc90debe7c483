//! Reading an archive from an SMB share.

use std::io::{self, Read};
use std::sync::Arc;

use smb::Resource;

use super::conn::Inner;
use super::status::map_io;
use crate::targets::TargetError;

/// An archive being read, one request of up to the negotiated size at a time.
pub(super) struct SmbReader {
    pub(super) inner: Arc<Inner>,
    pub(super) file: Option<Resource>,
    pub(super) pos: u64,
}

impl Read for SmbReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(Resource::File(file)) = self.file.as_ref() else {
            return Ok(0);
        };
        let want = buf.len().min(self.inner.chunk);
        let url = self.inner.url().to_string();
        let pos = self.pos;
        let out = &mut buf[..want];
        let n = self
            .inner
            .rt
            .run("reading the archive", async move {
                file.read_block(out, pos, None, false)
                    .await
                    .map_err(|e| map_io(&url, "reading the archive", e))
            })
            .map_err(TargetError::into_io)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Drop for SmbReader {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            self.inner.close(f);
        }
    }
}
