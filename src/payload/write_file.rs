//! Writing one regular file of a restore: created beneath the staging directory through
//! directory descriptors opened without following symlinks, filled (a sparse entry's
//! extents at their offsets, leaving holes), then given its owner, mode, extended
//! attributes (the capability last: a chown clears it) and times, all through its own
//! descriptor, before the staging directory is published.

use std::fs::File;
use std::io::{self, Read, Write};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{self, Mode};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use tar::Entry;

use super::make::{Meta, Place};
use super::sparse;
use super::unpack::{ExtractReport, UnpackOptions};
use super::xattr::{Target, Xattr};

/// A regular file to create beneath the staging directory.
pub(super) struct FileEntry<'a> {
    /// Where it goes.
    pub(super) place: &'a Place<'a>,
    /// The entry's name, for reports.
    pub(super) name: &'a str,
    /// Its metadata (setuid/setgid already stripped if asked).
    pub(super) meta: Meta,
    /// The file's real size when the entry is sparse (PAX 1.0).
    pub(super) sparse: Option<u64>,
}

impl FileEntry<'_> {
    /// Creates the file from `entry`'s data and metadata, and sets `attrs` on it (those that
    /// cannot be set are counted in `report`).
    pub(super) fn write<R: Read>(
        &self,
        entry: &mut Entry<'_, R>,
        attrs: &[Xattr],
        opts: &UnpackOptions,
        report: &mut ExtractReport,
    ) -> io::Result<()> {
        let (dir, file_name) = self.place.replaceable()?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&dir, file_name, flags, Mode::from_bits_truncate(0o600))?;
        let file = File::from(fd);
        let Meta {
            perm,
            uid,
            gid,
            mtime,
        } = self.meta;
        match self.sparse {
            Some(real_size) => {
                let size = entry.size();
                let (extents, _) = sparse::read_map(entry, size, real_size)?;
                sparse::write_extents(entry, &file, &extents, real_size)?;
            }
            None => copy(entry, &file)?,
        }
        if self.place.as_root {
            nix::unistd::fchown(
                &file,
                Some(Uid::from_raw(uid as u32)),
                Some(Gid::from_raw(gid as u32)),
            )?;
        }
        // After the chown, which clears setuid/setgid bits.
        stat::fchmod(&file, Mode::from_bits_truncate(perm))?;
        report
            .xattrs
            .apply(Target::File(&file), self.name, attrs, &opts.skip_xattrs);
        let t = TimeSpec::new(i64::try_from(mtime).unwrap_or(i64::MAX), 0);
        stat::futimens(&file, &t, &t)?;
        Ok(())
    }
}

/// Copies a whole entry's data into `file`.
fn copy<R: Read>(entry: &mut Entry<'_, R>, mut file: &File) -> io::Result<()> {
    let size = entry.size();
    if size == 0 {
        return Ok(());
    }
    let mut buf = vec![0u8; usize::try_from(size.min(256 * 1024)).unwrap_or(256 * 1024)];
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        file.write_all(&buf[..n])?;
    }
}
