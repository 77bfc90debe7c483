//! Writing the regular files of a restore: the parsing thread reads each file's data into
//! buffers of the [`Writers`] pool and hands them over; the writers create the file beneath
//! the staging directory through directory descriptors opened without following symlinks,
//! fill it (a sparse entry's extents at their offsets, leaving holes), then give it its
//! owner, mode, extended attributes (the capability last: a chown clears it) and times,
//! all through its own descriptor, once every byte of it is written.
//!
//! A file of at most [`CHUNK`] bytes travels as one job that a writer creates, fills and
//! finishes. A larger (or sparse) file is created here, on the parsing thread, and its data
//! goes out in chunks written at their offsets by any writer; the writer that completes the
//! last chunk finishes the file.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{self, Mode};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};
use tar::Entry;

use super::extract::entry_error;
use super::fresh::Fresh;
use super::fsat;
use super::make::Meta;
use super::sparse::{self, Extent};
use super::writers::{Big, Writers, CHUNK};
use super::xattr::{Target, Xattr, XattrFailures};

/// A regular file of the archive: where it goes and what it gets once written.
pub(super) struct FileHead {
    /// The checked path beneath the staging directory.
    pub(super) rel: PathBuf,
    /// The entry's name, for reports.
    pub(super) name: String,
    /// Its metadata (setuid/setgid already stripped if asked).
    pub(super) meta: Meta,
    /// Its extended attributes.
    pub(super) attrs: Vec<Xattr>,
}

impl FileHead {
    /// The parent directory's path and the file's own name.
    pub(super) fn split(&self) -> io::Result<(&Path, &OsStr)> {
        let name = self.rel.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "the entry has no file name")
        })?;
        Ok((self.rel.parent().unwrap_or(Path::new("")), name))
    }
}

/// Hands the file `head` with `entry`'s data to the writers (`sparse` is the real size of a
/// PAX 1.0 sparse entry). Errors of the archive or of creating the file name the entry;
/// an earlier writer failure comes back as it is.
pub(super) fn dispatch<R: Read>(
    entry: &mut Entry<'_, R>,
    head: FileHead,
    sparse: Option<u64>,
    writers: &mut Writers,
    parents: &mut Parents,
    root: &Path,
) -> io::Result<()> {
    let size = entry.size();
    writers.settle(&head.rel, true)?;
    if sparse.is_none() && size <= CHUNK as u64 {
        let mut buf = writers.buffer()?;
        buf.resize(size as usize, 0);
        entry
            .read_exact(&mut buf)
            .map_err(|e| entry_error(&head.name, root, e))?;
        return writers.small(head, buf);
    }
    let err = |e| entry_error(&head.name, root, e);
    let (extents, real_size) = match sparse {
        Some(real) => (sparse::read_map(entry, size, real).map_err(err)?.0, real),
        None => (vec![(0, size)], size),
    };
    let (dir, name) = head.split()?;
    let mode = writers.policy().fresh.create_mode(head.meta.perm);
    let file =
        create_in(parents.get(writers.root(), dir).map_err(err)?, name, mode).map_err(err)?;
    if sparse.is_some() {
        file.set_len(real_size).map_err(err)?;
    } else {
        preallocate(&file, size).map_err(err)?;
    }
    let chunks: u64 = extents.iter().map(|&(_, l)| l.div_ceil(CHUNK as u64)).sum();
    if chunks == 0 {
        // Nothing to write (an empty sparse file): finished here.
        let mut failures = XattrFailures::default();
        let fin = finish(&file, &head, writers.policy(), &mut failures);
        writers.add_xattr_failures(failures);
        writers.release(&head.rel);
        return fin.map_err(err);
    }
    let big = Arc::new(Big {
        file,
        head,
        remaining: AtomicUsize::new(usize::try_from(chunks).unwrap_or(usize::MAX)),
    });
    send_extents(entry, &big, &extents, writers, root)
}

/// Reads the extents' data from `entry` chunk by chunk and sends each to the writers.
fn send_extents<R: Read>(
    entry: &mut Entry<'_, R>,
    big: &Arc<Big>,
    extents: &[Extent],
    writers: &mut Writers,
    root: &Path,
) -> io::Result<()> {
    for &(mut off, len) in extents {
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK as u64);
            let mut buf = writers.buffer()?;
            buf.resize(n as usize, 0);
            entry
                .read_exact(&mut buf)
                .map_err(|e| entry_error(&big.head.name, root, e))?;
            writers.chunk(big, off, buf)?;
            off += n;
            left -= n;
        }
    }
    Ok(())
}

/// Reserves the blocks of a large file before its chunks arrive, so that the writers'
/// writes at their offsets extend nothing (measured on ext4: about 40 % less system time
/// writing 64 MiB files). A file system without `fallocate` is simply written; a full one
/// fails here, before any data is sent.
fn preallocate(file: &File, size: u64) -> io::Result<()> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates `name` in `dir` for writing with `mode` ([`Fresh::create_mode`]), never through
/// a symlink; whatever non-directory was at that name is replaced (a later entry of the
/// same name wins, as in tar). The common case, a new name, takes one system call.
pub(super) fn create_in(dir: &OwnedFd, name: &OsStr, mode: Mode) -> io::Result<File> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match openat(dir, name, flags, mode) {
        Ok(fd) => Ok(File::from(fd)),
        Err(Errno::EEXIST) => {
            match nix::unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
            Ok(File::from(openat(dir, name, flags, mode)?))
        }
        Err(e) => Err(e.into()),
    }
}

/// How the files of one restore are finished.
pub(super) struct Policy {
    /// Whether owners are restored (root).
    pub(super) as_root: bool,
    /// The extended attribute namespaces left out.
    pub(super) skip: Vec<String>,
    /// What a new file already has.
    pub(super) fresh: Fresh,
}

/// Gives a fully written file its owner (as root), mode, extended attributes (those that
/// cannot be set are counted in `failures`) and times, through its own descriptor. The
/// owner and mode only where the file, created with [`Fresh::create_mode`], does not have
/// them already.
pub(super) fn finish(
    file: &File,
    head: &FileHead,
    policy: &Policy,
    failures: &mut XattrFailures,
) -> io::Result<()> {
    let Meta {
        perm,
        uid,
        gid,
        mtime,
    } = head.meta;
    let (chown, chmod) = policy.fresh.needs(policy.as_root, uid, gid, perm);
    if chown {
        nix::unistd::fchown(
            file,
            Some(Uid::from_raw(uid as u32)),
            Some(Gid::from_raw(gid as u32)),
        )?;
    }
    // After the chown, which clears setuid/setgid bits (a mode given at creation has none).
    if chmod {
        stat::fchmod(file, Mode::from_bits_truncate(perm))?;
    }
    failures.apply(Target::File(file), &head.name, &head.attrs, &policy.skip);
    let t = TimeSpec::new(i64::try_from(mtime).unwrap_or(i64::MAX), 0);
    stat::futimens(file, &t, &t)?;
    Ok(())
}

/// The directory descriptor of the last parent used, so that the files of one directory
/// (which the archive keeps together) do not each walk the path again. A directory of the
/// staging tree is never replaced during a restore (a non-directory entry of its name
/// fails), so the descriptor stays the one [`fsat::open_beneath`] checked.
#[derive(Default)]
pub(super) struct Parents {
    last: Option<(PathBuf, OwnedFd)>,
}

impl Parents {
    /// The directory `rel` beneath `root`, created if missing, never through a symlink.
    pub(super) fn get(&mut self, root: &OwnedFd, rel: &Path) -> io::Result<&OwnedFd> {
        if self.last.as_ref().is_none_or(|(p, _)| p != rel) {
            self.last = None;
            let fd = fsat::open_beneath(root, rel)?;
            self.last = Some((rel.to_path_buf(), fd));
        }
        match &self.last {
            Some((_, fd)) => Ok(fd),
            None => Err(io::Error::other("no parent directory")),
        }
    }
}
