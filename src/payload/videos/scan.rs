//! Finding the recordings: a walk of the configured directories that never follows a
//! symlink, and the stat of every regular file, sorted by path.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::manifest::Record;
use crate::payload::exclude::Excludes;
use crate::payload::Notice;

/// What a walk found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Regular files, sorted by path; `sha256` and `archive` are not set yet.
    pub files: Vec<Record>,
    /// Entries that are not regular files or directories (symlinks, sockets...), or that
    /// could not be read: skipped, and said.
    pub notices: Vec<Notice>,
}

/// Why the walk stopped.
#[derive(Debug, thiserror::Error)]
#[error("recordings directory {path} cannot be read: {err}; fix [videos] sources in the config")]
pub struct ScanError {
    /// The source.
    pub path: String,
    /// The error.
    pub err: io::Error,
}

/// The record of a file's metadata (no content hash yet).
pub fn record_of(path: String, m: &fs::Metadata) -> Record {
    Record {
        path,
        size: m.len(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec() as u32,
        ctime: m.ctime(),
        ctime_nsec: m.ctime_nsec() as u32,
        dev: m.dev(),
        ino: m.ino(),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        sha256: [0; 32],
        archive: 0,
    }
}

/// Walks `sources` (absolute directories), skipping what `excludes` matches.
pub fn scan(sources: &[PathBuf], excludes: &Excludes) -> Result<Scan, ScanError> {
    let mut out = Scan::default();
    for src in sources {
        let err = |err| ScanError {
            path: src.display().to_string(),
            err,
        };
        if !src.is_absolute() {
            return Err(err(io::Error::other("the path must be absolute")));
        }
        let m = fs::symlink_metadata(src).map_err(err)?;
        if !m.is_dir() {
            return Err(err(io::Error::other("not a directory")));
        }
        walk(src, excludes, &mut out, true).map_err(err)?;
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    out.files.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

fn walk(dir: &Path, excludes: &Excludes, out: &mut Scan, top: bool) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if !top => {
            out.notices.push(Notice {
                path: dir.display().to_string(),
                what: format!("unreadable directory, skipped: {e}"),
            });
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let path = e.path();
        if excludes.matches(&path) {
            continue;
        }
        let m = match e.metadata() {
            Ok(m) => m,
            // Deleted between the listing and the stat: it is not part of this point.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let Some(rel) = path.to_str().and_then(|p| p.strip_prefix('/')) else {
            out.notices.push(Notice {
                path: path.display().to_string(),
                what: "name is not UTF-8, skipped".into(),
            });
            continue;
        };
        if m.is_dir() {
            walk(&path, excludes, out, false)?;
        } else if m.is_file() {
            out.files.push(record_of(rel.to_string(), &m));
        } else {
            out.notices.push(Notice {
                path: path.display().to_string(),
                what: "not a regular file (a recording is one), skipped".into(),
            });
        }
    }
    Ok(())
}
