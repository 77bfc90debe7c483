//! Creating the entries of a restore other than regular files: directories, symlinks, hard
//! links, FIFOs and device nodes, each through descriptors of its parent directory opened
//! one component at a time without following symlinks ([`fsat::open_beneath`]), so nothing
//! is created or changed outside the staging directory. Owners are restored as root only;
//! the mode is set after the owner (a chown clears setuid/setgid bits) and the mtime last.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{self, FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};
use tar::EntryType;

use super::fsat;
use super::unpack::ExtractReport;

/// The metadata of an entry, from its header.
#[derive(Debug, Clone, Copy)]
pub(super) struct Meta {
    /// Permission bits (setuid/setgid already stripped if asked).
    pub(super) perm: u32,
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) mtime: u64,
}

/// Where an entry goes: the staging directory's descriptor and the checked relative path.
pub(super) struct Place<'a> {
    pub(super) root: &'a OwnedFd,
    pub(super) rel: &'a Path,
    pub(super) as_root: bool,
}

impl Place<'_> {
    /// The parent directory (created if missing) and the entry's own name.
    fn parent(&self) -> io::Result<(OwnedFd, &OsStr)> {
        let parent = self.rel.parent().unwrap_or(Path::new(""));
        let name = self.rel.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "the entry has no file name")
        })?;
        Ok((fsat::open_beneath(self.root, parent)?, name))
    }

    /// The parent and name, with whatever non-directory was at that name removed (a later
    /// entry of the same name replaces an earlier one, as tar does).
    pub(super) fn replaceable(&self) -> io::Result<(OwnedFd, &OsStr)> {
        let (dir, name) = self.parent()?;
        match nix::unistd::unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok((dir, name)),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets owner (as root), mode (unless `None`: symlinks have none) and mtime of `name` in
    /// `dir`, never following a symlink.
    fn finish(&self, dir: &OwnedFd, name: &OsStr, meta: Meta, mode: bool) -> io::Result<()> {
        if self.as_root {
            nix::unistd::fchownat(
                dir,
                name,
                Some(Uid::from_raw(meta.uid as u32)),
                Some(Gid::from_raw(meta.gid as u32)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        if mode {
            // `name` was just made or checked in a directory opened without following
            // symlinks, and is not one.
            stat::fchmodat(
                dir,
                name,
                Mode::from_bits_truncate(meta.perm),
                FchmodatFlags::FollowSymlink,
            )?;
        }
        let t = TimeSpec::new(i64::try_from(meta.mtime).unwrap_or(i64::MAX), 0);
        stat::utimensat(dir, name, &t, &t, UtimensatFlags::NoFollowSymlink)?;
        Ok(())
    }

    /// A directory: made if missing (children may have made it already), then given its
    /// owner, mode and mtime. Called after all other entries, deepest first.
    pub(super) fn directory(&self, meta: Meta) -> io::Result<()> {
        // Makes the directory and every missing parent, refusing symlinks on the way.
        fsat::open_beneath(self.root, self.rel)?;
        let (dir, name) = self.parent()?;
        self.finish(&dir, name, meta, true)
    }

    /// A symlink to `target` (stored as is: it is only ever followed by the restored system,
    /// never by the restore).
    pub(super) fn symlink(&self, target: &Path, meta: Meta) -> io::Result<()> {
        let (dir, name) = self.replaceable()?;
        nix::unistd::symlinkat(target, &dir, name)?;
        self.finish(&dir, name, meta, false)
    }

    /// A hard link to `first`, an entry restored earlier (relative, checked like any path).
    pub(super) fn hard_link(&self, first: &Path) -> io::Result<()> {
        let target = Place {
            root: self.root,
            rel: first,
            as_root: self.as_root,
        };
        let (from_dir, from_name) = target.parent()?;
        let (dir, name) = self.replaceable()?;
        nix::unistd::linkat(&from_dir, from_name, &dir, name, AtFlags::empty())?;
        Ok(())
    }

    /// A FIFO or a device node (`kind` says which, `dev` is the device number). Returns
    /// `false` when a device was left out, because that needs root (`CAP_MKNOD`); it is
    /// then listed in `report`, and never replaced by an empty file.
    pub(super) fn node(
        &self,
        kind: EntryType,
        dev: (u32, u32),
        meta: Meta,
        name_shown: &str,
        report: &mut ExtractReport,
    ) -> io::Result<bool> {
        let device = kind != EntryType::Fifo;
        if device && !self.as_root {
            report.devices_not_created.push(name_shown.to_string());
            return Ok(false);
        }
        let (dir, name) = self.replaceable()?;
        let private = Mode::from_bits_truncate(0o600);
        let made = if device {
            let sflag = if kind == EntryType::Char {
                SFlag::S_IFCHR
            } else {
                SFlag::S_IFBLK
            };
            let rdev = stat::makedev(u64::from(dev.0), u64::from(dev.1));
            stat::mknodat(&dir, name, sflag, private, rdev)
        } else {
            nix::unistd::mkfifoat(&dir, name, private)
        };
        match made {
            Ok(()) => {}
            // Root without CAP_MKNOD (a container): the device cannot be made here.
            Err(Errno::EPERM) if device => {
                report.devices_not_created.push(name_shown.to_string());
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        self.finish(&dir, name, meta, true)?;
        Ok(true)
    }
}
