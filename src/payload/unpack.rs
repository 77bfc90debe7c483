//! Restoring a tar payload through a staging directory.
//!
//! Entries are extracted into `.NAME.offbox-partial-RANDOM` beside the destination. Only after
//! the caller has authenticated the whole archive does [`Staging::commit`] rename it to the
//! destination, in one step. A staging directory that is dropped uncommitted is deleted, and
//! leftovers of killed runs are removed by the next restore to the same destination. A failed
//! restore therefore never leaves a tree that looks like a finished one.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::format::header::hex;
use crate::secret::random_bytes;

/// Why a restore destination cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The destination holds files already.
    #[error("the restore destination {0} exists and is not an empty directory; choose a new directory (offbox never overwrites a tree)")]
    DestNotEmpty(String),
    /// The staging directory could not be made or moved.
    #[error("cannot prepare or publish the restore at {path}: {err}; check free space and permissions there")]
    Staging {
        /// The path concerned.
        path: String,
        /// The error.
        err: io::Error,
    },
    /// Extraction failed (this includes authentication failures of the archive).
    #[error("extracting the archive failed: {0}")]
    Extract(#[source] io::Error),
}

/// An extraction in progress; deleted on drop unless committed.
pub struct Staging {
    path: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl Staging {
    /// Checks the destination and creates a private staging directory beside it.
    pub fn create(dest: &Path) -> Result<Staging, UnpackError> {
        let dest = std::path::absolute(dest).map_err(|err| UnpackError::Staging {
            path: dest.display().to_string(),
            err,
        })?;
        match fs::read_dir(&dest) {
            Ok(mut rd) => {
                if rd.next().is_some() {
                    return Err(UnpackError::DestNotEmpty(dest.display().to_string()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => return Err(UnpackError::DestNotEmpty(dest.display().to_string())),
        }
        let parent = dest.parent().unwrap_or(Path::new("/")).to_path_buf();
        let staging_err = |err| UnpackError::Staging {
            path: parent.display().to_string(),
            err,
        };
        fs::create_dir_all(&parent).map_err(staging_err)?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "restore".into());
        let prefix = format!(".{name}.offbox-partial-");
        remove_leftovers(&parent, &prefix);
        let path = parent.join(format!("{prefix}{}", hex(&random_bytes::<8>())));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|err| UnpackError::Staging {
                path: path.display().to_string(),
                err,
            })?;
        Ok(Staging {
            path,
            dest,
            committed: false,
        })
    }

    /// The staging directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Extracts a tar stream into the staging directory and hands the reader back, so that
    /// the caller can read the archive to its authenticated end.
    pub fn extract<R: Read>(&self, tar_stream: R) -> Result<R, UnpackError> {
        let mut ar = tar::Archive::new(tar_stream);
        ar.set_preserve_permissions(true);
        ar.set_preserve_mtime(true);
        ar.set_preserve_ownerships(nix::unistd::geteuid().is_root());
        ar.set_unpack_xattrs(false);
        ar.set_overwrite(true);
        ar.unpack(&self.path).map_err(UnpackError::Extract)?;
        Ok(ar.into_inner())
    }

    /// Moves the staging directory to the destination. Call only after authentication.
    pub fn commit(mut self) -> Result<PathBuf, UnpackError> {
        let err = |err| UnpackError::Staging {
            path: self.dest.display().to_string(),
            err,
        };
        if self.dest.exists() {
            fs::remove_dir(&self.dest).map_err(err)?;
        }
        fs::rename(&self.path, &self.dest).map_err(err)?;
        self.committed = true;
        Ok(self.dest.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

fn remove_leftovers(parent: &Path, prefix: &str) {
    if let Ok(rd) = fs::read_dir(parent) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_empty_destination_and_cleans_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("f"), b"x").unwrap();
        assert!(matches!(
            Staging::create(&dest),
            Err(UnpackError::DestNotEmpty(_))
        ));
        let dest2 = dir.path().join("new");
        let st = Staging::create(&dest2).unwrap();
        let p = st.path().to_path_buf();
        assert!(p.exists());
        drop(st);
        assert!(!p.exists());
        assert!(!dest2.exists());
    }
}
