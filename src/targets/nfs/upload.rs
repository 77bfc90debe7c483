//! An NFS upload: GUARDED CREATE of the temporary name (see `mod.rs`), UNSTABLE WRITEs of up
//! to `wtmax`, COMMIT (a changed write verifier fails the upload), a LOOKUP that the final
//! name is free, and RENAME. A dropped upload REMOVEs its temporary.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use nfs3_client::nfs3_types::nfs3::{
    nfs_fh3, nfsstat3, stable_how, writeverf3, COMMIT3args, Nfs3Result, RENAME3args, WRITE3args,
};
use nfs3_client::nfs3_types::xdr_codec::Opaque;

use super::conn::{call, diropargs, lookup, remove, Conn};
use super::status::map_stat;
use crate::targets::{check_plain, Retry, TargetError, Upload};

/// An upload in progress. After a failed write the upload pipeline
/// (`targets::pipeline`) sends nothing more.
pub(super) struct NfsUpload {
    pub(super) conn: Arc<Mutex<Conn>>,
    pub(super) dir: nfs_fh3,
    pub(super) file: nfs_fh3,
    pub(super) temp: String,
    pub(super) url: String,
    pub(super) chunk: usize,
    pub(super) buf: Vec<u8>,
    pub(super) offset: u64,
    /// The write verifier of the first UNSTABLE WRITE.
    pub(super) verf: Option<writeverf3>,
    /// Set once published: nothing to remove on drop.
    pub(super) done: bool,
}

impl NfsUpload {
    /// WRITEs `data` at the current offset (all of it, across short writes).
    fn send(&mut self, mut data: &[u8]) -> Result<(), TargetError> {
        while !data.is_empty() {
            let n = data.len().min(self.chunk);
            let (file, offset) = (&self.file, self.offset);
            let piece = &data[..n];
            let r = call(&self.conn, "WRITE", async |c| {
                c.write(&WRITE3args {
                    file: file.clone(),
                    offset,
                    count: piece.len() as u32,
                    stable: stable_how::UNSTABLE,
                    data: Opaque::borrowed(piece),
                })
                .await
            })?;
            let ok = match r {
                Nfs3Result::Ok(ok) => ok,
                Nfs3Result::Err((s, _)) => {
                    return Err(map_stat(&self.url, "writing the archive", &self.temp, s))
                }
            };
            self.check_verf(ok.verf)?;
            let written = (ok.count as usize).min(n);
            if written == 0 {
                return Err(TargetError::Io {
                    target: self.url.clone(),
                    op: "writing the archive".into(),
                    detail: "the server wrote 0 bytes".into(),
                    retry: Retry::Temporary,
                });
            }
            self.offset += written as u64;
            data = &data[written..];
        }
        Ok(())
    }

    /// A write verifier that changes means the server restarted and may have dropped
    /// unstable data.
    fn check_verf(&mut self, v: writeverf3) -> Result<(), TargetError> {
        match self.verf {
            None => {
                self.verf = Some(v);
                Ok(())
            }
            Some(old) if old == v => Ok(()),
            Some(_) => Err(TargetError::Io {
                target: self.url.clone(),
                op: "writing the archive".into(),
                detail: "the server restarted during the upload (write verifier changed), so unstable data may be lost; retry".into(),
                retry: Retry::Temporary,
            }),
        }
    }

    fn flush_buf(&mut self) -> Result<(), TargetError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let r = self.send(&buf);
        self.buf = buf;
        self.buf.clear();
        r
    }

    fn publish(&mut self, name: &str) -> Result<(), TargetError> {
        self.flush_buf()?;
        let file = &self.file;
        let r = call(&self.conn, "COMMIT", async |c| {
            c.commit(&COMMIT3args {
                file: file.clone(),
                offset: 0,
                count: 0,
            })
            .await
        })?;
        match r {
            Nfs3Result::Ok(ok) => self.check_verf(ok.verf)?,
            Nfs3Result::Err((s, _)) => {
                return Err(map_stat(&self.url, "committing the upload", &self.temp, s))
            }
        }
        // NFSv3 RENAME replaces an existing target: make sure there is none.
        let dir = &self.dir;
        match lookup(&self.conn, dir, name)? {
            Ok(_) => {
                return Err(TargetError::Exists {
                    target: self.url.clone(),
                    name: name.into(),
                })
            }
            Err(nfsstat3::NFS3ERR_NOENT) => {}
            Err(s) => return Err(map_stat(&self.url, &format!("publishing {name}"), name, s)),
        }
        let temp = self.temp.as_str();
        let r = call(&self.conn, &format!("RENAME {temp} {name}"), async |c| {
            c.rename(&RENAME3args {
                from: diropargs(dir, temp),
                to: diropargs(dir, name),
            })
            .await
        })?;
        match r {
            Nfs3Result::Ok(_) => Ok(()),
            Nfs3Result::Err((s, _)) => {
                Err(map_stat(&self.url, &format!("publishing {name}"), name, s))
            }
        }
    }
}

impl Write for NfsUpload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let r = if self.buf.is_empty() && data.len() >= self.chunk {
            // Large writes go straight out, a chunk at a time.
            self.send(&data[..self.chunk]).map(|()| self.chunk)
        } else {
            let n = data.len().min(self.chunk - self.buf.len());
            self.buf.extend_from_slice(&data[..n]);
            if self.buf.len() == self.chunk {
                self.flush_buf().map(|()| n)
            } else {
                Ok(n)
            }
        };
        r.map_err(TargetError::into_io)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Data reaches the server in whole chunks; `commit` sends the rest and COMMITs.
        Ok(())
    }
}

impl Upload for NfsUpload {
    fn commit(mut self: Box<Self>, name: &str) -> Result<(), TargetError> {
        check_plain(&self.url, name)?;
        let r = self.publish(name);
        if r.is_ok() {
            self.done = true;
        }
        // On failure, Drop removes the temporary.
        r
    }

    fn temp_name(&self) -> &str {
        &self.temp
    }
}

impl Drop for NfsUpload {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: a lost connection leaves it to the next run's cleanup.
            let _ = remove(&self.conn, &self.url, &self.dir, &self.temp);
        }
    }
}
