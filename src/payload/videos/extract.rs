//! Restoring recordings from one archive's tar stream: the entries a restore point takes from
//! this archive are written under a private staging directory, hashed as they are written,
//! and must match the manifest's size and SHA-256; everything else is skipped. Times and
//! permissions are set as recorded (owners too, when running as root).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::sys::stat::futimens;
use nix::sys::time::TimeSpec;

use super::hash::Hashing;
use super::manifest::{safe_path, Record, MANIFEST_ENTRY};

/// Why a recording could not be restored from an archive.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The archive's bytes for a recording are not what the manifest recorded.
    #[error("recording /{path} does not match the manifest ({why})")]
    Mismatch {
        /// The recording.
        path: String,
        /// What differs.
        why: String,
    },
    /// The archive lacks recordings the manifest says it holds.
    #[error("{count} recording(s) the manifest places in this archive are missing from it, first /{first}")]
    Missing {
        /// How many.
        count: usize,
        /// The first one.
        first: String,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Extracts from `tar_stream` the recordings of `wanted` (path → record) into `root`;
/// stops at the manifest entry. Returns the number and bytes restored.
pub fn extract<R: Read>(
    tar_stream: R,
    root: &Path,
    mut wanted: HashMap<String, Record>,
) -> Result<(u64, u64), ExtractError> {
    let mut ar = tar::Archive::new(tar_stream);
    let (mut n, mut bytes) = (0u64, 0u64);
    let as_root = nix::unistd::geteuid().is_root();
    for e in ar.entries()? {
        let mut e = e?;
        let path = e.path()?.to_string_lossy().into_owned();
        if path == MANIFEST_ENTRY {
            break;
        }
        let Some(rec) = wanted.remove(&path) else {
            continue;
        };
        if !safe_path(&path) {
            return Err(ExtractError::Mismatch {
                path,
                why: "unsafe path".into(),
            });
        }
        let dest = root.join(&path);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&dest)?;
        let mut h = Hashing::new(&mut e);
        let mut w = BufWriter::with_capacity(1 << 20, &f);
        let copied = io::copy(&mut h, &mut w)?;
        w.flush()?;
        drop(w);
        let sum = h.finish();
        if copied != rec.size || sum != rec.sha256 {
            return Err(ExtractError::Mismatch {
                path,
                why: if copied != rec.size {
                    format!("{copied} bytes, {} recorded", rec.size)
                } else {
                    "its SHA-256 differs".into()
                },
            });
        }
        finish(&f, &dest, &rec, as_root)?;
        n += 1;
        bytes += copied;
    }
    if let Some(first) = wanted.keys().min().cloned() {
        return Err(ExtractError::Missing {
            count: wanted.len(),
            first,
        });
    }
    Ok((n, bytes))
}

/// Sets owner (root only), mode and times as recorded.
fn finish(f: &File, dest: &Path, r: &Record, as_root: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if as_root {
        std::os::unix::fs::fchown(f, Some(r.uid), Some(r.gid))?;
    }
    f.set_permissions(fs::Permissions::from_mode(r.mode & 0o7777))?;
    let mtime = TimeSpec::new(r.mtime, r.mtime_nsec.into());
    let _ = dest;
    futimens(f, &mtime, &mtime).map_err(io::Error::from)
}
