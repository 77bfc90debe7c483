//! The entry-by-entry extraction of a tar payload into a staging directory.
//!
//! Every entry's path is checked first: a `..` component or an absolute path fails the
//! whole restore with an error naming the entry (the tar crate would skip or rewrite it
//! silently). Regular files, directories, symlinks and hard links are written by the tar
//! crate, which keeps them inside the directory; FIFOs and device nodes are created here
//! through directory descriptors opened without following symlinks. Setuid and setgid bits
//! of files are stripped unless the caller asked to keep them, and everything the restore
//! did not reproduce exactly is recorded in the [`ExtractReport`].

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{self, FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};
use tar::{Entry, EntryType};

use super::fsat;
use super::unpack::{ExtractReport, UnpackOptions};

/// The setuid and setgid bits.
const SETID: u32 = 0o6000;

/// Extracts `tar_stream` into `root` (an existing, private directory given by its canonical
/// path) and hands the reader back.
pub(super) fn extract_tree<R: Read>(
    root: &Path,
    tar_stream: R,
    opts: UnpackOptions,
    report: &mut ExtractReport,
) -> io::Result<R> {
    let root_fd = fsat::open_dir(root)?;
    let as_root = nix::unistd::geteuid().is_root();
    let mut ar = tar::Archive::new(tar_stream);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_preserve_ownerships(as_root);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    {
        // Directories come last, deepest first, so that a read-only directory does not
        // stop its own entries from being written (as the tar crate's own unpack does).
        let mut dirs = Vec::new();
        for entry in ar.entries()? {
            let mut entry = entry?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(rel) = checked_path(&entry, &name)? else {
                continue;
            };
            let kind = entry.header().entry_type();
            let setid = entry.header().mode().unwrap_or(0) & SETID != 0;
            match kind {
                EntryType::Directory => {
                    dirs.push((name, entry));
                    continue;
                }
                EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                    if setid && !opts.keep_setuid {
                        entry.set_mask(SETID);
                        report.stripped_setid.push(name.clone());
                    }
                    unpack(&mut entry, root, &name)?;
                }
                EntryType::Link | EntryType::Symlink => unpack(&mut entry, root, &name)?,
                EntryType::Fifo | EntryType::Char | EntryType::Block => {
                    let node = Node {
                        root: &root_fd,
                        rel: &rel,
                        name: &name,
                        as_root,
                    };
                    node.create(&entry, opts, report)
                        .map_err(|e| entry_error(&name, root, e))?;
                }
                EntryType::XGlobalHeader => continue,
                other => {
                    report.skipped.push((
                        name,
                        format!("entry type {other:?} is not one offbox restores"),
                    ));
                    continue;
                }
            }
            report.entries += 1;
        }
        dirs.sort_by(|a, b| b.0.cmp(&a.0));
        for (name, mut dir) in dirs {
            unpack(&mut dir, root, &name)?;
            report.entries += 1;
        }
    }
    Ok(ar.into_inner())
}

/// The entry's path, relative and without `..`, or `None` for an entry naming the top
/// directory itself (`./`), which is skipped as tar does.
fn checked_path<R: Read>(entry: &Entry<'_, R>, name: &str) -> io::Result<Option<PathBuf>> {
    let path = entry
        .path()
        .map_err(|e| entry_error(name, Path::new(""), e))?;
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(refused(
                    name,
                    "its path has a `..` component and would land outside the restore",
                ))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused(
                    name,
                    "its path is absolute (offbox stores paths relative to /, so this archive \
                     was not packed by offbox)",
                ))
            }
        }
    }
    Ok((!rel.as_os_str().is_empty()).then_some(rel))
}

fn refused(name: &str, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("refusing the archive entry `{name}`: {why}; the restore stops here and publishes nothing"),
    )
}

/// Unpacks a file, directory or link through the tar crate, with an error that says why.
fn unpack<R: Read>(entry: &mut Entry<'_, R>, root: &Path, name: &str) -> io::Result<()> {
    match entry.unpack_in(root) {
        Ok(true) => Ok(()),
        Ok(false) => Err(refused(name, "it would land outside the restore")),
        Err(e) => Err(entry_error(name, root, e)),
    }
}

/// A failure to write one entry: the entry, the underlying cause and its context. The
/// original error stays reachable as the source (an archive authentication failure met
/// while reading the entry's data must still be recognised as such).
#[derive(Debug)]
struct EntryFailed {
    entry: String,
    detail: String,
    source: io::Error,
}

impl std::fmt::Display for EntryFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "failed to unpack `{}`: {}", self.entry, self.detail)
    }
}

impl std::error::Error for EntryFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn entry_error(name: &str, root: &Path, e: io::Error) -> io::Error {
    // The tar crate's message names only the step ("failed to unpack `…`"); the cause
    // (Permission denied, No space left, …) sits at the end of the source chain.
    let mut messages = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = cur {
        let text = err.to_string();
        if messages.last() != Some(&text) {
            messages.push(text);
        }
        cur = err.source();
    }
    let cause = messages.pop().unwrap_or_default();
    // Keep the steps that say more than "failed to unpack" (setting permissions, creating
    // a parent directory, ...).
    messages.retain(|m| !m.starts_with("failed to unpack `"));
    let mut detail = cause;
    if !messages.is_empty() {
        detail = format!("{detail} (while: {})", messages.join(": "));
    }
    if !root.as_os_str().is_empty() {
        let shown = root.display().to_string();
        detail = detail
            .replace(&format!("{shown}/"), "")
            .replace(&shown, ".");
    }
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            detail.push_str("; restore as root, or into a directory this user may write")
        }
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            detail.push_str("; free space on the destination's file system")
        }
        _ => {}
    }
    let kind = e.kind();
    io::Error::new(
        kind,
        EntryFailed {
            entry: name.to_string(),
            detail,
            source: e,
        },
    )
}

/// A FIFO or device node to create beneath the staging directory.
struct Node<'a> {
    root: &'a OwnedFd,
    rel: &'a Path,
    name: &'a str,
    as_root: bool,
}

impl Node<'_> {
    fn create<R: Read>(
        &self,
        entry: &Entry<'_, R>,
        opts: UnpackOptions,
        report: &mut ExtractReport,
    ) -> io::Result<()> {
        let h = entry.header();
        let kind = h.entry_type();
        let device = kind != EntryType::Fifo;
        if device && !self.as_root {
            report.devices_not_created.push(self.name.to_string());
            return Ok(());
        }
        let parent = self.rel.parent().unwrap_or(Path::new(""));
        let Some(file) = self.rel.file_name() else {
            return Ok(());
        };
        let dir = fsat::open_beneath(self.root, parent)?;
        match nix::unistd::unlinkat(&dir, file, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let private = Mode::from_bits_truncate(0o600);
        let made = if device {
            let major = u64::from(h.device_major()?.unwrap_or(0));
            let minor = u64::from(h.device_minor()?.unwrap_or(0));
            let sflag = if kind == EntryType::Char {
                SFlag::S_IFCHR
            } else {
                SFlag::S_IFBLK
            };
            stat::mknodat(&dir, file, sflag, private, stat::makedev(major, minor))
        } else {
            nix::unistd::mkfifoat(&dir, file, private)
        };
        match made {
            Ok(()) => {}
            // Root without CAP_MKNOD (a container): the device cannot be made here.
            Err(Errno::EPERM) if device => {
                report.devices_not_created.push(self.name.to_string());
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        if self.as_root {
            let uid = Uid::from_raw(h.uid()? as u32);
            let gid = Gid::from_raw(h.gid()? as u32);
            nix::unistd::fchownat(
                &dir,
                file,
                Some(uid),
                Some(gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        // After the chown, which clears setuid/setgid bits.
        let mut perm = h.mode()? & 0o7777;
        if perm & SETID != 0 && !opts.keep_setuid {
            perm &= !SETID;
            report.stripped_setid.push(self.name.to_string());
        }
        // The node was just made in a directory opened without following symlinks.
        stat::fchmodat(
            &dir,
            file,
            Mode::from_bits_truncate(perm),
            FchmodatFlags::FollowSymlink,
        )?;
        let mtime = TimeSpec::new(i64::try_from(h.mtime()?).unwrap_or(i64::MAX), 0);
        stat::utimensat(&dir, file, &mtime, &mtime, UtimensatFlags::NoFollowSymlink)?;
        Ok(())
    }
}
