//! Incremental backup of session recordings (`[videos]`): each run writes one archive of
//! the recordings that are new or changed since the previous restore point, ending with a
//! manifest of every recording present at that run and the archive holding its bytes.
//! Archives form chains (a full, then increments; format version 3 records the chain in the
//! header). [`backup`] runs one, [`restore`] restores any point, [`prune`] deletes only
//! archives that no kept point needs, [`list`] shows the chains; [`catalogue`] is the local
//! cache of the newest manifest and [`tail`] reads a manifest or a chain from the target
//! without the recordings.

pub mod backup;
pub(crate) mod catalogue;
pub mod list;
pub mod prune;
pub mod restore;
pub(crate) mod tail;

use crate::targets::Target;

use super::target::list;
use super::JobError;

/// A video archive of this appliance on a target: one restore point.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Point {
    /// The file name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Creation time, Unix seconds.
    pub created_unix: i64,
    /// The first 8 hex digits of the archive id (from the name).
    pub id_prefix: String,
}

impl Point {
    /// Whether the name's id prefix is that of `id`.
    pub(crate) fn id_prefix_matches(&self, id: &[u8; 16]) -> bool {
        crate::format::header::hex(id).starts_with(&self.id_prefix)
    }
}

/// The video archives of `appliance` on `target`, oldest first.
pub(crate) fn list_points(
    target: &mut dyn Target,
    appliance: &str,
) -> Result<Vec<Point>, JobError> {
    let (archives, _) = list(target, Some(appliance))?;
    Ok(archives
        .into_iter()
        .filter(|a| a.info.kind == "videos")
        .map(|a| Point {
            size: a.size.unwrap_or(0),
            created_unix: a.info.created_unix,
            id_prefix: a.info.id_prefix.clone(),
            name: a.name,
        })
        .collect())
}
