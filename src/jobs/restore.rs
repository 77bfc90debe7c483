//! `restore`: extract a system or video archive into a new directory, published only after
//! the whole archive authenticated.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::payload::unpack::Staging;
use crate::stream::DecryptReader;

use super::read::{with_payload, ReadSummary};
use super::{open::expect_tree, JobError};

/// The result of a restore.
#[derive(Debug, serde::Serialize)]
pub struct RestoreSummary {
    /// Where the tree now is.
    pub restored_to: PathBuf,
    /// What was read.
    #[serde(flatten)]
    pub read: ReadSummary,
}

/// Extracts an opened archive to `dest`, which must not exist or be empty.
pub fn restore<R: Read>(reader: DecryptReader<R>, dest: &Path) -> Result<RestoreSummary, JobError> {
    expect_tree(reader.header(), "restore")?;
    let staging = Staging::create(dest)?;
    let (reader, ()) = with_payload(reader, |payload| {
        staging.extract(payload).map(|_| ()).map_err(|e| match e {
            crate::payload::unpack::UnpackError::Extract(io) => io,
            other => std::io::Error::other(other.to_string()),
        })
    })?;
    let h = reader.header();
    let read = ReadSummary {
        kind: h.kind.name(),
        archive_id: h.archive_id_hex(),
        appliance_id: h.appliance_id.clone(),
        created_unix: h.created_unix,
        archive_bytes: reader.archive_len(),
        payload_bytes: reader.plaintext_len(),
        entries: 0,
        slots: super::open::slot_list(h),
    };
    let restored_to = staging.commit()?;
    Ok(RestoreSummary { restored_to, read })
}
