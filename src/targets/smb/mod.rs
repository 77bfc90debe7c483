//! `smb://[domain;]user@host[:port]/share/path`: SMB2/3 with the pure-Rust `smb` crate, a
//! userspace client (no kernel mount, no CAP_SYS_ADMIN; a dead server gives a timeout).
//!
//! - The crate is async (tokio). The runtime stays inside this module: every target owns a
//!   current-thread runtime ([`crate::targets::runtime::Blocking`]), and the blocking
//!   [`Target`]/[`Upload`]/`Read` calls run each request to completion on it with a
//!   timeout. Dropping any SMB handle happens inside that runtime, because the crate closes
//!   handles from a spawned task.
//! - Connecting: [`crate::targets::net`] resolves the host, vets every address and the
//!   connected peer; that TCP connection is handed to the crate as its transport
//!   (`transport.rs`), so the crate never resolves or dials by itself.
//! - Authentication: NTLM with the password from `password_file`/`password_env` (never in
//!   argv or a log). Any character works; it is passed through as is.
//! - SMB3 encryption is on when the server supports it (the crate's `Allowed` mode: the
//!   session is encrypted when the server sets `SMB2_SESSION_FLAG_ENCRYPT_DATA` or the share
//!   requires it, which Samba does with `server smb encrypt = desired`).
//! - Uploads: CREATE with disposition `Create` (fails if the name exists) and read, write and
//!   delete access only, writes, FLUSH, then a rename on the open handle with
//!   `ReplaceIfExists = false` to the final name: a final name is never overwritten. A
//!   dropped upload sets delete-on-close on its handle.
//! - NT status codes become [`TargetError`]s: `STATUS_DISK_FULL`/`STATUS_QUOTA_EXCEEDED`
//!   → the target is full, `STATUS_LOGON_FAILURE` and friends → wrong credentials,
//!   `STATUS_ACCESS_DENIED` → permission, a timeout or a lost connection → temporary.
//!
//! Files: `mod.rs` the [`Target`], `conn.rs` the session, `transport.rs` the guarded TCP
//! transport, `status.rs` the error mapping, `upload.rs` and `download.rs` the streams.

mod conn;
mod download;
mod status;
mod transport;
mod upload;

use std::io::{BufReader, Read};
use std::sync::Arc;

use futures_util::StreamExt;
use smb::{
    CreateDisposition, CreateOptions, Directory, FileAccessMask, FileAttributes, FileCreateArgs,
    FileDirectoryInformation, FileFsFullSizeInformation,
};

use super::{check_plain, temp_name, Entry, SmbUrl, Target, TargetError, TargetSpec, Upload};
use crate::guard::SelfIdentity;
use conn::Inner;
use download::SmbReader;
use status::map_err;
use upload::SmbUpload;

/// A connected SMB share directory.
pub(crate) struct SmbTarget {
    inner: Arc<Inner>,
}

impl SmbTarget {
    /// Reads the password, guards and connects, negotiates (SMB3 encryption when the server
    /// supports it), authenticates, connects the share, and checks the directory.
    pub fn connect(
        spec: &TargetSpec,
        target: &SmbUrl,
        me: &SelfIdentity,
    ) -> Result<SmbTarget, TargetError> {
        let inner = Arc::new(conn::connect(spec, target, me)?);
        let d = inner.open_dir()?;
        inner.close_dir(d);
        Ok(SmbTarget { inner })
    }
}

impl Target for SmbTarget {
    fn url(&self) -> String {
        self.inner.url().to_string()
    }

    fn begin(&mut self, appliance: &str) -> Result<Box<dyn Upload>, TargetError> {
        let temp = temp_name(appliance);
        let args = FileCreateArgs {
            // Fails with STATUS_OBJECT_NAME_COLLISION if the name exists.
            disposition: CreateDisposition::Create,
            attributes: FileAttributes::new(),
            options: CreateOptions::new().with_non_directory_file(true),
            // Read and write (and delete, for the rename and the abort), never GENERIC_ALL.
            desired_access: FileAccessMask::new()
                .with_generic_read(true)
                .with_generic_write(true)
                .with_delete(true),
        };
        let file = self
            .inner
            .create_file("creating the upload file", &temp, args)?;
        Ok(Box::new(SmbUpload {
            inner: self.inner.clone(),
            file: Some(file),
            temp,
            buf: Vec::with_capacity(self.inner.chunk),
            pos: 0,
        }))
    }

    fn list(&mut self) -> Result<Vec<Entry>, TargetError> {
        let dir = self.inner.open_dir()?;
        let url = self.inner.url().to_string();
        let d = dir.clone();
        let r = self.inner.rt.run("listing", async move {
            let mut out = Vec::new();
            let mut stream = Directory::query::<FileDirectoryInformation>(&d, "*")
                .await
                .map_err(|e| map_err(&url, "listing", &e))?;
            while let Some(item) = stream.next().await {
                let item = item.map_err(|e| map_err(&url, "listing", &e))?;
                if item.file_attributes.directory() {
                    continue;
                }
                out.push(Entry {
                    name: item.file_name.to_string(),
                    size: Some(item.end_of_file),
                });
            }
            Ok(out)
        });
        self.inner.close_dir(dir);
        let mut out = r?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open(&mut self, name: &str) -> Result<Box<dyn Read + Send>, TargetError> {
        self.open_at(name, 0)
    }

    fn open_at(&mut self, name: &str, offset: u64) -> Result<Box<dyn Read + Send>, TargetError> {
        check_plain(self.inner.url(), name)?;
        let args = FileCreateArgs::make_open_existing(
            FileAccessMask::new()
                .with_generic_read(true)
                .with_synchronize(true),
        );
        let file = self
            .inner
            .create_file(&format!("archive {name}"), name, args)?;
        Ok(Box::new(BufReader::with_capacity(
            self.inner.chunk,
            SmbReader {
                inner: self.inner.clone(),
                file: Some(file),
                pos: offset,
            },
        )))
    }

    fn delete(&mut self, name: &str) -> Result<(), TargetError> {
        check_plain(self.inner.url(), name)?;
        let op = format!("deleting {name}");
        let args = FileCreateArgs {
            disposition: CreateDisposition::Open,
            attributes: FileAttributes::new(),
            options: CreateOptions::new().with_non_directory_file(true),
            desired_access: FileAccessMask::new()
                .with_delete(true)
                .with_file_read_attributes(true),
        };
        let file = self.inner.create(&op, &self.inner.path(name), args)?;
        self.inner.delete_open(&op, file)
    }

    fn free_space(&mut self) -> Result<Option<u64>, TargetError> {
        let dir = self.inner.open_dir()?;
        let url = self.inner.url().to_string();
        let d = dir.clone();
        let r = self.inner.rt.run("querying the free space", async move {
            d.query_fs_info::<FileFsFullSizeInformation>()
                .await
                .map_err(|e| map_err(&url, "querying the free space", &e))
        });
        self.inner.close_dir(dir);
        let info = r?;
        let unit = u64::from(info.sectors_per_allocation_unit) * u64::from(info.bytes_per_sector);
        Ok(Some(
            info.caller_available_allocation_units.saturating_mul(unit),
        ))
    }
}
