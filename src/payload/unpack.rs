//! Restoring a tar payload through a staging directory.
//!
//! Entries are extracted into `.NAME.offbox-partial-RANDOM` beside the destination, a
//! directory created exclusively (never through a planted symlink) with mode 0700 and held
//! under a `flock` while in use. Only after the caller has authenticated the whole archive
//! does [`Staging::commit`] rename it to the destination, in one step. A staging directory
//! that is dropped uncommitted is deleted, and leftovers of killed runs (unlocked staging
//! directories of the same destination) are removed by the next restore, which reports
//! them. A failed restore therefore never leaves a tree that looks like a finished one.
//!
//! FIFOs and device nodes come back as such (device nodes only as root); setuid/setgid
//! bits of files are stripped unless [`UnpackOptions::keep_setuid`] is set; extended
//! attributes (ACLs, file capabilities, labels) are set on every entry but those of the
//! namespaces in [`UnpackOptions::skip_xattrs`], and sparse files come back with their
//! holes. What the restore did not reproduce exactly is listed in the [`ExtractReport`].

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::extract::extract_tree;
use super::xattr::XattrFailures;
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
    /// Extraction failed (this includes authentication failures of the archive, and
    /// entries refused because their path leads outside the restore).
    #[error("extracting the archive failed: {0}")]
    Extract(#[source] io::Error),
}

/// Choices of a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UnpackOptions {
    /// Keep the setuid and setgid bits of files (and device nodes). Off by default: the
    /// bits are stripped and the files listed in [`ExtractReport::stripped_setid`].
    /// Directories always keep their setgid bit, which grants no privilege.
    pub keep_setuid: bool,
    /// Extended attribute namespaces (`security`) or names (`security.selinux`) not to
    /// restore, for example SELinux labels onto a host with another policy. A trailing
    /// `.*` is allowed. Everything else stored is restored.
    pub skip_xattrs: Vec<String>,
    /// Publish without first syncing the restored tree to disk. Off by default: a restore
    /// reported complete survives a power cut. For scratch restores and benchmarks.
    pub no_sync: bool,
}

/// What a restore did not reproduce exactly, or cleaned up, for the operator to read.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExtractReport {
    /// Entries written.
    pub entries: u64,
    /// Files whose setuid/setgid bits were stripped (paths as stored in the archive).
    pub stripped_setid: Vec<String>,
    /// Device nodes not created, because that needs root (`CAP_MKNOD`); they are absent
    /// from the restored tree.
    pub devices_not_created: Vec<String>,
    /// Entries not restored, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Staging directories of earlier, killed restores that were removed at start.
    pub removed_leftovers: Vec<String>,
    /// Extended attributes (ACLs, capabilities, labels) that could not be set, and those
    /// left out on request.
    pub xattrs: XattrFailures,
}

impl ExtractReport {
    /// One summarised line per kind of event, empty when the restore is exact.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.removed_leftovers.is_empty() {
            out.push(format!(
                "removed {} leftover staging director{} of an earlier, interrupted restore: {}",
                self.removed_leftovers.len(),
                if self.removed_leftovers.len() == 1 {
                    "y"
                } else {
                    "ies"
                },
                few(&self.removed_leftovers)
            ));
        }
        if !self.stripped_setid.is_empty() {
            out.push(format!(
                "setuid/setgid bits stripped from {} file(s): {}; restore with --keep-setid to keep them",
                self.stripped_setid.len(),
                few(&self.stripped_setid)
            ));
        }
        if !self.devices_not_created.is_empty() {
            out.push(format!(
                "{} device node(s) not created, because that needs root: {}; they are missing from the restored tree (restore as root to get them)",
                self.devices_not_created.len(),
                few(&self.devices_not_created)
            ));
        }
        if !self.skipped.is_empty() {
            let shown: Vec<String> = self
                .skipped
                .iter()
                .map(|(p, why)| format!("{p} ({why})"))
                .collect();
            out.push(format!(
                "{} entr{} not restored: {}",
                self.skipped.len(),
                if self.skipped.len() == 1 { "y" } else { "ies" },
                few(&shown)
            ));
        }
        out.extend(self.xattrs.warning());
        out
    }
}

/// The first few items of a list, and how many more there are.
fn few(items: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = items
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    s
}

/// The random part of a staging directory's name: 8 bytes in lowercase hex.
const RANDOM_HEX: usize = 16;

/// An extraction in progress; deleted on drop unless committed.
pub struct Staging {
    path: PathBuf,
    dest: PathBuf,
    opts: UnpackOptions,
    removed: Vec<String>,
    committed: bool,
    /// Held while the staging directory is in use, so that a concurrent restore to the same
    /// destination does not take it for a leftover.
    _lock: Flock<File>,
}

impl Staging {
    /// Checks the destination and creates a private staging directory beside it, with the
    /// default [`UnpackOptions`].
    pub fn create(dest: &Path) -> Result<Staging, UnpackError> {
        Self::create_with(dest, UnpackOptions::default())
    }

    /// Checks the destination and creates a private staging directory beside it; `opts`
    /// apply to [`Staging::extract`].
    pub(crate) fn create_with(dest: &Path, opts: UnpackOptions) -> Result<Staging, UnpackError> {
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
        let removed = remove_leftovers(&parent, &prefix);
        let path = parent.join(format!("{prefix}{}", hex(&random_bytes::<8>())));
        let lock = make_private_dir(&path).map_err(|err| UnpackError::Staging {
            path: path.display().to_string(),
            err,
        })?;
        Ok(Staging {
            path,
            dest,
            opts,
            removed,
            committed: false,
            _lock: lock,
        })
    }

    /// The staging directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The leftover staging directories of earlier runs that [`Staging::create`] removed.
    #[cfg(test)]
    pub(crate) fn removed_leftovers(&self) -> &[String] {
        &self.removed
    }

    /// Extracts a tar stream into the staging directory and hands the reader back, so that
    /// the caller can read the archive to its authenticated end, with the report of what
    /// was stripped, skipped or cleaned up. An entry whose path leads outside the restore
    /// (a `..` component, an absolute path) fails the extraction with an error naming it.
    pub fn extract<R: Read>(&self, tar_stream: R) -> Result<(R, ExtractReport), UnpackError> {
        let mut report = ExtractReport {
            removed_leftovers: self.removed.clone(),
            ..ExtractReport::default()
        };
        let root = self
            .path
            .canonicalize()
            .map_err(|err| UnpackError::Staging {
                path: self.path.display().to_string(),
                err,
            })?;
        let reader = extract_tree(&root, tar_stream, &self.opts, &mut report)
            .map_err(UnpackError::Extract)?;
        Ok((reader, report))
    }

    /// Moves the staging directory to the destination. Call only after authentication.
    /// Unless [`UnpackOptions::no_sync`], the staged tree is written to disk first
    /// (`syncfs` of its file system) and the rename after it (`fsync` of the parent), so a
    /// restore reported complete survives a power cut.
    pub fn commit(mut self) -> Result<PathBuf, UnpackError> {
        let err = |err| UnpackError::Staging {
            path: self.dest.display().to_string(),
            err,
        };
        if !self.opts.no_sync {
            let staged = File::open(&self.path).map_err(err)?;
            rustix::fs::syncfs(&staged).map_err(|e| err(e.into()))?;
        }
        if self.dest.exists() {
            fs::remove_dir(&self.dest).map_err(err)?;
        }
        fs::rename(&self.path, &self.dest).map_err(err)?;
        self.committed = true;
        if !self.opts.no_sync {
            let parent = self.dest.parent().unwrap_or(Path::new("/"));
            File::open(parent).and_then(|d| d.sync_all()).map_err(err)?;
        }
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

/// Creates `path` as a new directory with mode 0700 (failing if anything, a symlink
/// included, is already there), checks what was made, and locks it.
fn make_private_dir(path: &Path) -> io::Result<Flock<File>> {
    fs::DirBuilder::new().mode(0o700).create(path)?;
    check_and_lock(path).inspect_err(|_| {
        let _ = fs::remove_dir(path);
    })
}

fn check_and_lock(path: &Path) -> io::Result<Flock<File>> {
    // Opened without following a symlink, so the checks below are about what was made.
    let dir = File::from(nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?);
    let meta = dir.metadata()?;
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(io::Error::other(
            "the new staging directory is not owned by this user",
        ));
    }
    // The umask may only have removed bits; make it exactly 0700.
    dir.set_permissions(fs::Permissions::from_mode(0o700))?;
    Flock::lock(dir, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| io::Error::from(e))
}

/// Removes the staging directories of earlier restores to the same destination that were
/// killed: names `PREFIX` + 16 lowercase hex digits, real directories (not symlinks), not
/// locked by a restore still running. Returns the paths removed.
fn remove_leftovers(parent: &Path, prefix: &str) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(rd) = fs::read_dir(parent) else {
        return removed;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let ours = rest.len() == RANDOM_HEX
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ours || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = e.path();
        let Ok(dir) = File::open(&path) else {
            continue;
        };
        // A running restore holds its lock: leave its directory alone.
        let Ok(lock) = Flock::lock(dir, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        if fs::remove_dir_all(&path).is_ok() {
            removed.push(path.display().to_string());
        }
        drop(lock);
    }
    removed
}

#[cfg(test)]
mod tests;
