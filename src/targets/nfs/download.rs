//! Reading an archive over NFS.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use nfs3_client::nfs3_types::nfs3::{nfs_fh3, Nfs3Result, READ3args};

use super::conn::{call, Conn};
use super::status::map_stat;
use crate::targets::TargetError;

/// An archive being read, one READ of up to `rtmax` at a time.
pub(super) struct NfsReader {
    pub(super) conn: Arc<Mutex<Conn>>,
    pub(super) file: nfs_fh3,
    pub(super) name: String,
    pub(super) url: String,
    pub(super) offset: u64,
    pub(super) max: u32,
    pub(super) eof: bool,
}

impl Read for NfsReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.eof || buf.is_empty() {
            return Ok(0);
        }
        let count = (buf.len() as u64).min(u64::from(self.max)) as u32;
        let (file, offset) = (&self.file, self.offset);
        let r = call(&self.conn, "READ", async |c| {
            c.read(&READ3args {
                file: file.clone(),
                offset,
                count,
            })
            .await
        })
        .map_err(TargetError::into_io)?;
        match r {
            Nfs3Result::Ok(ok) => {
                let data = ok.data.as_ref();
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                self.offset += n as u64;
                if ok.eof || n == 0 {
                    self.eof = true;
                }
                Ok(n)
            }
            Nfs3Result::Err((s, _)) => {
                Err(map_stat(&self.url, "reading the archive", &self.name, s).into_io())
            }
        }
    }
}
