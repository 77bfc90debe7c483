//! An SFTP upload: exclusive create of the temporary name, `fsync@openssh.com`, close, then
//! a rename to a final name that does not exist yet. A dropped upload unlinks its temporary.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use ssh2::{ErrorCode, Sftp};

use super::conn::map_err;
use crate::targets::{TargetError, Upload};

/// An upload in progress.
pub(super) struct SshUpload {
    pub(super) file: Option<ssh2::File>,
    pub(super) sftp: Arc<Sftp>,
    pub(super) dir: PathBuf,
    pub(super) temp: String,
    pub(super) url: String,
}

impl Write for SshUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self.file.as_mut().expect("open until commit");
        let r = f.write(buf);
        r.map_err(|e| {
            // OpenSSH reports ENOSPC and EDQUOT as a plain "failure": ask statvfs.
            let free = self
                .file
                .as_mut()
                .and_then(|f| f.statvfs().ok())
                .map(|v| v.f_bavail.saturating_mul(v.f_frsize));
            if let Some(free) = free {
                if free < (buf.len() as u64).max(1 << 20) {
                    return TargetError::NoSpace {
                        target: self.url.clone(),
                        detail: format!("SFTP write failed ({e}) with {free} bytes free"),
                    }
                    .into_io();
                }
            }
            let e2 = io::Error::new(e.kind(), format!("SFTP write: {e}"));
            match e.kind() {
                io::ErrorKind::TimedOut => TargetError::Timeout {
                    target: self.url.clone(),
                    op: "writing".into(),
                    secs: 0,
                }
                .into_io(),
                _ => TargetError::from_io(&self.url, "writing the archive", &e2).into_io(),
            }
        })
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("open until commit").flush()
    }
}

impl Upload for SshUpload {
    fn commit(mut self: Box<Self>, name: &str) -> Result<(), TargetError> {
        let mut file = self.file.take().expect("open until commit");
        let r = self.publish(&mut file, name);
        drop(file);
        let r = r.and_then(|()| {
            let fin = self.dir.join(name);
            if self.sftp.lstat(&fin).is_ok() {
                return Err(TargetError::Exists {
                    target: self.url.clone(),
                    name: name.into(),
                });
            }
            self.sftp
                .rename(&self.dir.join(&self.temp), &fin, None)
                .map_err(|e| map_err(&self.url, &format!("publishing {name}"), &e))
        });
        if r.is_err() {
            let _ = self.sftp.unlink(&self.dir.join(&self.temp));
        }
        r
    }

    fn temp_name(&self) -> &str {
        &self.temp
    }
}

impl SshUpload {
    fn publish(&self, file: &mut ssh2::File, _name: &str) -> Result<(), TargetError> {
        file.flush()
            .map_err(|e| TargetError::from_io(&self.url, "flushing the upload", &e))?;
        match file.fsync() {
            Ok(()) => Ok(()),
            // Servers without fsync@openssh.com: the close below still flushes.
            Err(e) if matches!(e.code(), ErrorCode::SFTP(8)) => Ok(()),
            Err(e) => Err(map_err(&self.url, "syncing the upload", &e)),
        }
    }
}

impl Drop for SshUpload {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            drop(f);
            let _ = self.sftp.unlink(&self.dir.join(&self.temp));
        }
    }
}
