//! `restore`: extract a system or video archive into a new directory, published only after
//! the whole archive authenticated.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::payload::unpack::{ExtractReport, Staging, UnpackOptions};
use crate::stream::DecryptReader;

use super::read::{summary, with_payload, ReadSummary};
use super::{open::expect_tree, JobError};

/// The result of a restore.
#[derive(Debug, serde::Serialize)]
pub struct RestoreSummary {
    /// Where the tree now is.
    pub restored_to: PathBuf,
    /// What was read.
    #[serde(flatten)]
    pub read: ReadSummary,
    /// The signature check.
    pub signature: super::signature::SignatureStatus,
    /// What the restore stripped (setuid/setgid bits), could not create (device nodes
    /// without root), skipped, or cleaned up (leftovers of killed restores).
    pub extract: ExtractReport,
}

/// Extracts an opened archive to `dest`, which must not exist or be empty. The tree is
/// published only after every segment authenticated and the signature verified under a key
/// of `trust`.
pub fn restore<R: Read>(
    reader: DecryptReader<R>,
    dest: &Path,
    trust: &super::signature::Trust,
) -> Result<RestoreSummary, JobError> {
    restore_with(reader, dest, trust, UnpackOptions::default())
}

/// [`restore`] with the choices of `opts` (setuid/setgid bits are stripped unless
/// `opts.keep_setuid`).
pub(crate) fn restore_with<R: Read>(
    reader: DecryptReader<R>,
    dest: &Path,
    trust: &super::signature::Trust,
    opts: UnpackOptions,
) -> Result<RestoreSummary, JobError> {
    expect_tree(reader.header(), "restore")?;
    let staging = Staging::create_with(dest, opts)?;
    let (reader, (payload_bytes, extract)) = with_payload(reader, |payload| {
        let mut counted = super::read::CountRead::new(payload);
        let (_, report) = staging.extract(&mut counted).map_err(|e| match e {
            crate::payload::unpack::UnpackError::Extract(io) => io,
            other => std::io::Error::other(other.to_string()),
        })?;
        // The tar reader stops at the end-of-archive blocks; count the padding after them
        // too, so that payload_bytes is the whole payload, as `verify` and `decrypt` say.
        std::io::copy(&mut counted, &mut std::io::sink())?;
        Ok((counted.count(), report))
    })?;
    let read: ReadSummary = summary(&reader, payload_bytes, extract.entries);
    let signature = super::signature::check_read(&reader, trust)?;
    let restored_to = staging.commit()?;
    Ok(RestoreSummary {
        restored_to,
        read,
        signature,
        extract,
    })
}
