//! File system access relative to directory descriptors, so that a tree changing under
//! offbox (a file swapped for a symlink, a directory for a link elsewhere) is never followed.
//!
//! Packing looks every entry up with `O_PATH | O_NOFOLLOW` and reads it only through a
//! descriptor whose device, inode and type match that lookup. Unpacking creates special
//! files through descriptors of directories opened with `O_NOFOLLOW`, one component at a
//! time, so nothing is created outside the staging directory.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

/// Opens a directory named by a trusted path (a configured source's parent, the staging
/// directory) as a handle for the `*at` calls below. Symlinks in `path` are followed.
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    Ok(nix::fcntl::open(path, flags, Mode::empty())?)
}

/// Looks `name` up in `dir` without following a symlink: a handle pinned to that very
/// inode (usable as a directory handle when it is one) and its metadata.
pub(crate) fn lstat_at(dir: &OwnedFd, name: &OsStr) -> io::Result<(OwnedFd, Metadata)> {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir, name, flags, Mode::empty())?;
    let file = File::from(fd);
    let meta = file.metadata()?;
    Ok((OwnedFd::from(file), meta))
}

/// The names in the directory behind `handle` (from [`lstat_at`]), without `.` and `..`.
/// The directory's atime is left alone where the kernel allows it (`O_NOATIME`).
pub(crate) fn list_dir(handle: &OwnedFd) -> io::Result<Vec<OsString>> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    // O_NOATIME is allowed only to the owner (or CAP_FOWNER): retry without it.
    let fd = match openat(handle, ".", flags | OFlag::O_NOATIME, Mode::empty()) {
        Err(Errno::EPERM) => openat(handle, ".", flags, Mode::empty()),
        other => other,
    }?;
    let mut dir = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

/// The target of the symlink behind `handle` (from [`lstat_at`]).
pub(crate) fn read_link(handle: &OwnedFd) -> io::Result<OsString> {
    Ok(nix::fcntl::readlinkat(handle, "")?)
}

/// Why a regular file could not be opened for reading.
#[derive(Debug)]
pub(crate) enum OpenFail {
    /// The name no longer refers to the regular file that was looked up.
    Replaced(String),
    /// The file could not be opened.
    Io(io::Error),
}

/// Opens `name` in `dir` for reading, never through a symlink, without updating its atime
/// where the kernel allows it, and only if it is still the regular file described by
/// `expected` (same device, inode and type).
pub(crate) fn open_regular_at(
    dir: &OwnedFd,
    name: &OsStr,
    expected: &Metadata,
) -> Result<File, OpenFail> {
    // O_NONBLOCK: a FIFO swapped in must not hang the backup; O_NOCTTY: nor a terminal
    // become ours. Both are no-ops on the regular file expected here.
    let base = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    // O_NOATIME is allowed only to the file's owner (or CAP_FOWNER): retry without it.
    let fd = match openat(dir, name, base | OFlag::O_NOATIME, Mode::empty()) {
        Err(Errno::EPERM) => openat(dir, name, base, Mode::empty()),
        other => other,
    };
    let fd = match fd {
        Ok(fd) => fd,
        Err(Errno::ELOOP) => {
            return Err(OpenFail::Replaced("it is now a symlink".into()));
        }
        Err(e) => return Err(OpenFail::Io(e.into())),
    };
    let file = File::from(fd);
    let now = file.metadata().map_err(OpenFail::Io)?;
    if !now.file_type().is_file() {
        return Err(OpenFail::Replaced("it is no longer a regular file".into()));
    }
    if now.dev() != expected.dev() || now.ino() != expected.ino() {
        return Err(OpenFail::Replaced(
            "another file was put in its place".into(),
        ));
    }
    Ok(file)
}

/// Opens (creating missing ones with mode 0755) the directories of `rel` beneath `root`,
/// one component at a time and never through a symlink. `rel` must be relative and free
/// of `..` (the caller checked it).
pub(crate) fn open_beneath(root: &OwnedFd, rel: &Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut cur = openat(root, ".", flags, Mode::empty())?;
    for c in rel.components() {
        let Component::Normal(part) = c else {
            continue;
        };
        let next = match openat(&cur, part, flags, Mode::empty()) {
            Err(Errno::ENOENT) => {
                match nix::sys::stat::mkdirat(&cur, part, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                openat(&cur, part, flags, Mode::empty())
            }
            other => other,
        };
        cur = match next {
            Ok(fd) => fd,
            Err(e @ (Errno::ELOOP | Errno::ENOTDIR)) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "`{}` is not a directory (a symlink or a file) inside the restore \
                         ({}); nothing is created beneath it",
                        part.to_string_lossy(),
                        io::Error::from(e)
                    ),
                ));
            }
            Err(e) => return Err(e.into()),
        };
    }
    Ok(cur)
}
