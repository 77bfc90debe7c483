//! Off-box targets: where archives go. One trait, [`Target`], and one implementation per
//! transport, each behind a cargo feature: `file://` (`path`), `ssh://` (`ssh`), `smb://`
//! (`smb`), `nfs://` (`nfs`) and `s3://` (`s3`, with Object Lock). SMB and NFS use userspace clients with their own
//! current-thread runtime, so the service needs no CAP_SYS_ADMIN and a dead server is a
//! timeout, not a process hung in a kernel mount.
//!
//! Layout: one folder (or file) per transport, each with the same shape: `mod.rs` holds
//! the [`Target`] implementation, `conn.rs` the connection, `upload.rs` and `download.rs`
//! the streams. Shared by all: [`url`] (one URL struct per scheme), [`net`] (dialling
//! through the guard), `runtime` (the blocking runtime of the async clients), [`error`],
//! [`temp`] and [`pipeline`]. docs/targets.md has the recipe for a new transport.
//!
//! Contract of every implementation:
//! - the self-target guard ([`crate::guard`]) runs before connecting and again on the
//!   connected socket's peer address (dial through [`net`]), or on the mount, for
//!   `file://`;
//! - an upload streams under a temporary name (`.offbox-tmp.<appliance>.<run>.<random>`,
//!   see [`temp`]), and is published under its final name by [`Upload::commit`] only after
//!   the stream was complete and flushed; a final name is never overwritten; a dropped
//!   upload removes its temporary file;
//! - leftovers of killed uploads are removed by `jobs::target`, only while it holds the
//!   appliance's run lock, and only those [`temp::classify`] calls stale;
//! - errors are [`TargetError`]s that say what to do and whether a retry helps.
//!
//! No async runtime leaks out of a target module: a client that needs one keeps its own.

pub mod config;
pub mod error;
pub mod name;
pub mod net;
#[cfg(feature = "target-nfs")]
pub mod nfs;
#[cfg(feature = "target-path")]
pub mod path;
pub(crate) mod pipeline;
#[cfg(any(feature = "target-smb", feature = "target-nfs", feature = "target-ssh"))]
pub(crate) mod runtime;
#[cfg(feature = "target-s3")]
pub mod s3;
#[cfg(feature = "target-smb")]
pub mod smb;
#[cfg(feature = "target-ssh")]
pub mod ssh;
pub(crate) mod temp;
pub mod url;

use std::io::{Read, Write};

pub use config::{TargetSpec, TargetsConfig};
pub use error::{Retry, TargetError};
pub use name::ArchiveName;
pub use temp::{is_temp_of, temp_name, TMP_PREFIX};
pub use url::{NfsUrl, PathUrl, S3Url, SmbUrl, SshUrl, TargetUrl};

use crate::guard::SelfIdentity;

/// A file on a target.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    /// The file name.
    pub name: String,
    /// Its size in bytes, when known.
    pub size: Option<u64>,
}

/// An upload in progress. Write the archive, then [`Upload::commit`]; dropping it without
/// committing aborts it and removes the temporary file.
pub trait Upload: Write + Send {
    /// Flushes, syncs where the protocol can, and renames the temporary file to `name`,
    /// which must not exist yet.
    fn commit(self: Box<Self>, name: &str) -> Result<(), TargetError>;
    /// The temporary name in use.
    fn temp_name(&self) -> &str;
    /// Whether a write returns before the data has travelled (the upload keeps its own
    /// requests in flight, as SFTP does): then a writer thread in front of it
    /// ([`pipeline::Pipelined`]) would only add a copy and a hand-over per chunk.
    fn queues_writes(&self) -> bool {
        false
    }
}

/// A connected, guarded target directory (connected on one thread, used on another).
pub trait Target: Send {
    /// The URL (no secrets), for messages.
    fn url(&self) -> String;
    /// Starts an upload under a fresh temporary name belonging to `appliance`.
    fn begin(&mut self, appliance: &str) -> Result<Box<dyn Upload>, TargetError>;
    /// Starts an upload that will be committed as `name` (an archive of `appliance`),
    /// known in advance. A target that names its object when the upload begins (S3)
    /// writes it under `name` directly, invisible until the commit; the others write a
    /// temporary as [`Target::begin`] does.
    fn begin_named(&mut self, appliance: &str, name: &str) -> Result<Box<dyn Upload>, TargetError> {
        let _ = name;
        self.begin(appliance)
    }
    /// The files in the target directory (not recursive, temporaries included).
    fn list(&mut self) -> Result<Vec<Entry>, TargetError>;
    /// Reads a file.
    fn open(&mut self, name: &str) -> Result<Box<dyn Read + Send>, TargetError>;
    /// Reads a file from byte `offset` to its end (an archive's tail or trailer). The
    /// default reads and discards the bytes before `offset`; a transport that can seek
    /// (a file, SFTP, an S3 range) starts there.
    fn open_at(&mut self, name: &str, offset: u64) -> Result<Box<dyn Read + Send>, TargetError> {
        let mut r = self.open(name)?;
        let skipped =
            std::io::copy(&mut (&mut r).take(offset), &mut std::io::sink()).map_err(|e| {
                TargetError::Io {
                    target: self.url(),
                    op: format!("reading {name}"),
                    detail: e.to_string(),
                    retry: Retry::Temporary,
                }
            })?;
        if skipped < offset {
            return Err(TargetError::Io {
                target: self.url(),
                op: format!("reading {name}"),
                detail: format!("it ends at byte {skipped}, before byte {offset}"),
                retry: Retry::Permanent,
            });
        }
        Ok(r)
    }
    /// Deletes a file.
    fn delete(&mut self, name: &str) -> Result<(), TargetError>;
    /// Free bytes for this user, when the protocol tells it.
    fn free_space(&mut self) -> Result<Option<u64>, TargetError>;
    /// Facts about the target for `target check` (e.g. an S3 bucket's Object Lock).
    fn notes(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// Refuses names that would leave the target directory.
#[cfg_attr(
    not(any(
        feature = "target-path",
        feature = "target-ssh",
        feature = "target-smb"
    )),
    allow(dead_code)
)]
pub(crate) fn check_plain(target: &str, name: &str) -> Result<(), TargetError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(TargetError::Invalid {
            target: target.to_string(),
            why: format!("{name:?} is not a plain file name"),
        });
    }
    Ok(())
}

/// Connects with the transport `$module::$target` when its cargo feature `$feature` is
/// built, and fails with [`TargetError::NotBuilt`] otherwise.
macro_rules! transport {
    ($feature:literal, $scheme:literal, $module:ident :: $target:ident, $spec:expr, $url:expr, $me:expr) => {{
        #[cfg(feature = $feature)]
        return Ok(Box::new($module::$target::connect($spec, $url, $me)?));
        #[cfg(not(feature = $feature))]
        {
            let _ = $url;
            return Err(TargetError::NotBuilt {
                target: $spec.url.to_string(),
                scheme: $scheme.into(),
                feature: $feature,
            });
        }
    }};
}

/// Opens the target `spec`: guard, connect, guard the peer, authenticate, enter the
/// directory. One line per transport.
pub fn connect(spec: &TargetSpec, me: &SelfIdentity) -> Result<Box<dyn Target>, TargetError> {
    // The name guard runs first for every kind, built or not.
    if let Some(host) = spec.url.host() {
        net::resolve(me, &spec.url.to_string(), host, 0)?;
    }
    match &spec.url {
        TargetUrl::Path(u) => transport!("target-path", "file", path::PathTarget, spec, u, me),
        TargetUrl::Ssh(u) => transport!("target-ssh", "ssh", ssh::SshTarget, spec, u, me),
        TargetUrl::Smb(u) => transport!("target-smb", "smb", smb::SmbTarget, spec, u, me),
        TargetUrl::Nfs(u) => transport!("target-nfs", "nfs", nfs::NfsTarget, spec, u, me),
        TargetUrl::S3(u) => transport!("target-s3", "s3", s3::S3Target, spec, u, me),
    }
}
