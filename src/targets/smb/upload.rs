//! An SMB upload: CREATE of the temporary name (disposition `Create`, so never an existing
//! file), WRITEs of up to the negotiated size, FLUSH, then a rename on the open handle with
//! `ReplaceIfExists = false`. A dropped upload sets delete-on-close on its handle.

use std::io::{self, Write};
use std::sync::Arc;

use smb::{FileRenameInformation, Resource};

use super::conn::Inner;
use super::status::{map_err, map_io, nt_status, STATUS_OBJECT_NAME_COLLISION};
use crate::targets::{check_plain, Retry, TargetError, Upload};

/// An upload in progress: the open temporary file, and the bytes not sent yet. After a
/// failed write the upload pipeline (`targets::pipeline`) sends nothing more.
pub(super) struct SmbUpload {
    pub(super) inner: Arc<Inner>,
    pub(super) file: Option<Resource>,
    pub(super) temp: String,
    pub(super) buf: Vec<u8>,
    pub(super) pos: u64,
}

impl SmbUpload {
    fn file(&self) -> &smb::File {
        match self.file.as_ref() {
            Some(Resource::File(f)) => f,
            _ => unreachable!("an upload holds a file until commit or drop"),
        }
    }

    /// Writes the buffer out at `pos`.
    fn send(&mut self) -> Result<(), TargetError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let url = self.inner.url().to_string();
        let inner = self.inner.clone();
        let file = self.file();
        let buf = &self.buf;
        let pos = self.pos;
        inner.rt.run("writing the archive", async move {
            let mut done = 0usize;
            while done < buf.len() {
                let n = file
                    .write_block(&buf[done..], pos + done as u64, None)
                    .await
                    .map_err(|e| map_io(&url, "writing the archive", e))?;
                if n == 0 {
                    return Err(TargetError::Io {
                        target: url.clone(),
                        op: "writing the archive".into(),
                        detail: "the server accepted 0 bytes".into(),
                        retry: Retry::Temporary,
                    });
                }
                done += n;
            }
            Ok(())
        })?;
        self.pos += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

impl Write for SmbUpload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.inner.chunk - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= self.inner.chunk {
            self.send().map_err(TargetError::into_io)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send().map_err(TargetError::into_io)
    }
}

impl Upload for SmbUpload {
    fn commit(mut self: Box<Self>, name: &str) -> Result<(), TargetError> {
        check_plain(self.inner.url(), name)?;
        self.send()?;
        let url = self.inner.url().to_string();
        let inner = self.inner.clone();
        let final_path = inner.path(name);
        let file = self.file();
        let r = inner.rt.run(&format!("publishing {name}"), async {
            file.flush()
                .await
                .map_err(|e| map_io(&url, "flushing the upload", e))?;
            file.set_info(FileRenameInformation {
                replace_if_exists: false.into(),
                root_directory: 0,
                file_name: final_path.as_str().into(),
            })
            .await
            .map_err(|e| match nt_status(&e) {
                Some(STATUS_OBJECT_NAME_COLLISION) => TargetError::Exists {
                    target: url.clone(),
                    name: name.to_string(),
                },
                _ => map_err(&url, &format!("publishing {name}"), &e),
            })
        });
        let file = self.file.take().expect("open until commit");
        match r {
            Ok(()) => {
                // The rename is done; a failing close loses nothing.
                inner.close(file);
                Ok(())
            }
            Err(e) => {
                let _ = inner.delete_open("removing the failed upload", file);
                Err(e)
            }
        }
    }

    fn temp_name(&self) -> &str {
        &self.temp
    }
}

impl Drop for SmbUpload {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            let _ = self.inner.delete_open("removing the aborted upload", f);
        }
    }
}
