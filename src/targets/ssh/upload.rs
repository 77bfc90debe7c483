//! An SFTP upload over the data session ([`super::channel`]): exclusive create of the
//! temporary name, writes queued many at a time, `fsync@openssh.com`, close, then a rename
//! to a final name that does not exist yet. A dropped upload unlinks its temporary.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::channel::{Channel, Writer};
use crate::targets::{TargetError, Upload};

/// An upload in progress.
pub(super) struct SshUpload {
    pub(super) file: Option<Writer>,
    pub(super) ch: Arc<Channel>,
    pub(super) dir: PathBuf,
    pub(super) temp: String,
    pub(super) url: String,
}

impl SshUpload {
    /// A failed write as the target's state explains it: OpenSSH reports ENOSPC and EDQUOT
    /// as a plain "failure", so statvfs is asked whether the directory is (nearly) full.
    fn write_error(&self, e: TargetError) -> TargetError {
        if let TargetError::Io { detail, .. } = &e {
            let free = self.ch.free_space(&self.dir);
            if let Some(free) = free.filter(|&free| free < 1 << 20) {
                return TargetError::NoSpace {
                    target: self.url.clone(),
                    detail: format!("SFTP write failed ({detail}) with {free} bytes free"),
                };
            }
        }
        e
    }
}

impl Write for SshUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self.file.as_mut().expect("open until commit");
        let r = f.write(buf);
        r.map_err(|e| self.write_error(e).into_io())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload for SshUpload {
    fn commit(mut self: Box<Self>, name: &str) -> Result<(), TargetError> {
        let file = self.file.take().expect("open until commit");
        // The last requests go out here, so a full target may first show now.
        let r = file
            .finish()
            .map_err(|e| self.write_error(e))
            .and_then(|()| {
                let fin = self.dir.join(name);
                if self.ch.exists(&fin) {
                    return Err(TargetError::Exists {
                        target: self.url.clone(),
                        name: name.into(),
                    });
                }
                let op = format!("publishing {name}");
                self.ch.rename(&self.dir.join(&self.temp), &fin, &op)
            });
        if r.is_err() {
            let _ = self
                .ch
                .remove(&self.dir.join(&self.temp), "removing the upload");
        }
        r
    }

    fn temp_name(&self) -> &str {
        &self.temp
    }

    fn queues_writes(&self) -> bool {
        true
    }
}

impl Drop for SshUpload {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            drop(f);
            let _ = self
                .ch
                .remove(&self.dir.join(&self.temp), "removing the upload");
        }
    }
}
