//! Packing the sources into a tar stream.
//!
//! Regular files, directories, symlinks, FIFOs and device nodes are stored with their mode,
//! owner and mtime; symlinks are not followed. Every entry is looked up relative to its
//! directory's descriptor, and a file is read only through a descriptor opened with
//! `O_NOFOLLOW` whose device, inode and type match that lookup, so a file swapped for a
//! symlink while the backup runs is skipped with a [`Notice`], never read through the link. A file with several names (hard links) is
//! stored once, and its other names as hard-link entries to the first, so a restore links
//! them again (the table of such files is the only state that grows with the sources: one
//! entry per multiply-linked file). Paths are stored relative to `/` (as GNU tar
//! does), so `/etc/hosts` restores to `DIR/etc/hosts`. A file that vanishes, shrinks, grows
//! or changes while it is read is recorded as a [`Notice`], never a crash: the tar stream
//! always stays well-formed (a shrunk file is padded with zeros to its announced size).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use tar::{Builder, EntryType, Header, HeaderMode};

use super::exclude::Excludes;
use super::fsat::{self, OpenFail};
use super::Notice;
use crate::progress::Meter;

/// Totals of one packing run.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PackStats {
    /// Entries stored.
    pub entries: u64,
    /// File content bytes stored.
    pub file_bytes: u64,
    /// Things the operator should know.
    pub notices: Vec<Notice>,
}

/// Why packing stopped.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// A configured source does not exist or cannot be read.
    #[error(
        "source {path} cannot be read: {err}; fix the path in the config or on the command line"
    )]
    Source {
        /// The source path.
        path: String,
        /// The error.
        err: io::Error,
    },
    /// Writing the archive failed.
    #[error("writing the archive failed: {0}")]
    Write(#[source] io::Error),
}

/// Packs `sources` into a tar stream written to `out`, which is returned.
pub fn pack<W: Write>(
    sources: &[PathBuf],
    excludes: &Excludes,
    out: W,
    meter: &Meter,
) -> Result<(W, PackStats), PackError> {
    let mut b = Builder::new(out);
    b.mode(HeaderMode::Complete);
    b.follow_symlinks(false);
    let mut w = Walker {
        b,
        excludes,
        meter,
        stats: PackStats::default(),
        links: Links::new(),
    };
    for src in sources {
        let abs = absolute(src).map_err(|err| PackError::Source {
            path: src.display().to_string(),
            err,
        })?;
        let source_err = |err| PackError::Source {
            path: abs.display().to_string(),
            err,
        };
        // The source's own name is looked up without following it; its parents are the
        // configured path and are followed.
        let (parent, name) = match (abs.parent(), abs.file_name()) {
            (Some(p), Some(n)) => (p, n),
            _ => (abs.as_path(), OsStr::new(".")),
        };
        let dir = fsat::open_dir(parent).map_err(source_err)?;
        let (handle, meta) = fsat::lstat_at(&dir, name).map_err(source_err)?;
        add_parents(&mut w.b, &abs, &mut w.stats).map_err(PackError::Write)?;
        w.walk(&dir, name, &abs, handle, meta)?;
    }
    let out = w.b.into_inner().map_err(PackError::Write)?;
    Ok((out, w.stats))
}

fn absolute(p: &Path) -> io::Result<PathBuf> {
    let abs = std::path::absolute(p)?;
    // Normalise `.` and `..` lexically; symlinks in the source path itself are kept.
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    Ok(out)
}

fn rel(abs: &Path) -> &Path {
    abs.strip_prefix("/").unwrap_or(abs)
}

/// Stores the parent directories of a source, so that their modes and owners restore too.
fn add_parents<W: Write>(b: &mut Builder<W>, abs: &Path, stats: &mut PackStats) -> io::Result<()> {
    let mut parents: Vec<&Path> = abs.ancestors().skip(1).collect();
    parents.reverse();
    for p in parents {
        if p == Path::new("/") {
            continue;
        }
        if let Ok(meta) = fs::metadata(p) {
            let mut h = Header::new_gnu();
            h.set_metadata_in_mode(&meta, HeaderMode::Complete);
            h.set_size(0);
            b.append_data(&mut h, rel(p), io::empty())?;
            stats.entries += 1;
        }
    }
    Ok(())
}

/// The stored name of every multiply-linked file seen, by (device, inode).
type Links = HashMap<(u64, u64), PathBuf>;

/// One packing run: the tar builder and what the walk accumulates.
struct Walker<'a, W: Write> {
    b: Builder<W>,
    excludes: &'a Excludes,
    meter: &'a Meter,
    stats: PackStats,
    links: Links,
}

impl<W: Write> Walker<'_, W> {
    /// Stores `path`, which is `name` in the directory `dir`; `handle` and `meta` come from
    /// looking it up there without following a symlink.
    fn walk(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &Path,
        handle: OwnedFd,
        meta: Metadata,
    ) -> Result<(), PackError> {
        if self.excludes.matches(path) {
            return Ok(());
        }
        let stored = rel(path);
        let ft = meta.file_type();
        let mut h = Header::new_gnu();
        h.set_metadata_in_mode(&meta, HeaderMode::Complete);
        self.meter
            .files
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if ft.is_dir() {
            h.set_size(0);
            self.append(&mut h, stored)?;
            self.walk_children(&handle, path)?;
        } else if ft.is_symlink() {
            match fsat::read_link(&handle) {
                Ok(target) => {
                    h.set_size(0);
                    self.b
                        .append_link(&mut h, stored, &target)
                        .map_err(PackError::Write)?;
                    self.stats.entries += 1;
                }
                Err(e) => notice(&mut self.stats, path, unreadable(&e)),
            }
        } else if ft.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                h.set_entry_type(EntryType::Link);
                h.set_size(0);
                self.b
                    .append_link(&mut h, stored, first)
                    .map_err(PackError::Write)?;
                self.stats.entries += 1;
            } else {
                let before = self.stats.entries;
                self.add_file(dir, name, path, &meta, h)?;
                if self.stats.entries > before {
                    self.links.insert(key, stored.to_path_buf());
                }
            }
        } else if ft.is_file() {
            self.add_file(dir, name, path, &meta, h)?;
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            if !ft.is_fifo() {
                let rdev = meta.rdev();
                h.set_device_major(nix::sys::stat::major(rdev) as u32)
                    .map_err(PackError::Write)?;
                h.set_device_minor(nix::sys::stat::minor(rdev) as u32)
                    .map_err(PackError::Write)?;
            }
            h.set_size(0);
            self.append(&mut h, stored)?;
        } else {
            notice(
                &mut self.stats,
                path,
                "skipped: sockets are not backed up".into(),
            );
        }
        Ok(())
    }

    /// Stores the entries of the directory behind `handle`, in name order, each looked up
    /// relative to that very directory (a directory swapped for a symlink is not entered).
    fn walk_children(&mut self, handle: &OwnedFd, path: &Path) -> Result<(), PackError> {
        let mut children = match fsat::list_dir(handle) {
            Ok(names) => names,
            Err(e) => {
                notice(&mut self.stats, path, unreadable(&e));
                return Ok(());
            }
        };
        children.sort();
        for child in children {
            let child_path = path.join(&child);
            match fsat::lstat_at(handle, &child) {
                Ok((h, m)) => self.walk(handle, &child, &child_path, h, m)?,
                Err(e) => notice(&mut self.stats, &child_path, unreadable(&e)),
            }
        }
        Ok(())
    }

    fn append(&mut self, h: &mut Header, stored: &Path) -> Result<(), PackError> {
        self.b
            .append_data(h, stored, io::empty())
            .map_err(PackError::Write)?;
        self.stats.entries += 1;
        Ok(())
    }

    fn add_file(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &Path,
        meta: &Metadata,
        mut h: Header,
    ) -> Result<(), PackError> {
        let stats = &mut self.stats;
        let file = match fsat::open_regular_at(dir, name, meta) {
            Ok(f) => f,
            Err(OpenFail::Io(e)) => {
                notice(stats, path, unreadable(&e));
                return Ok(());
            }
            Err(OpenFail::Replaced(why)) => {
                notice(
                    stats,
                    path,
                    format!("replaced while being backed up ({why}); not stored"),
                );
                return Ok(());
            }
        };
        // The size announced in the tar header is the one seen when the file was opened.
        let size = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                notice(stats, path, unreadable(&e));
                return Ok(());
            }
        };
        h.set_size(size);
        h.set_entry_type(EntryType::Regular);
        let mut exact = ExactSize {
            inner: file,
            remaining: size,
            short: 0,
            failed: None,
        };
        {
            let mut reader = BufReader::with_capacity(256 * 1024, &mut exact);
            self.b
                .append_data(&mut h, rel(path), &mut reader)
                .map_err(PackError::Write)?;
        }
        stats.entries += 1;
        stats.file_bytes += size;
        self.meter.add_in(size);
        after_read(stats, path, meta, exact, size);
        Ok(())
    }
}

/// Records what happened to a file while it was read: an error, shrinking, growth, change.
fn after_read(
    stats: &mut PackStats,
    path: &Path,
    meta: &Metadata,
    mut exact: ExactSize,
    size: u64,
) {
    if let Some(e) = exact.failed.take() {
        notice(
            stats,
            path,
            format!(
                "read error after {} bytes ({e}); stored padded with zeros",
                size - exact.short
            ),
        );
    } else if exact.short > 0 {
        notice(
            stats,
            path,
            format!(
                "shrank by {} bytes while being read; stored padded with zeros",
                exact.short
            ),
        );
    } else {
        let mut probe = [0u8; 1];
        if matches!(exact.inner.read(&mut probe), Ok(1)) {
            notice(
                stats,
                path,
                format!("grew while being read; stored its first {size} bytes"),
            );
        } else if let Ok(now) = fs::symlink_metadata(path) {
            if now.mtime() != meta.mtime()
                || now.mtime_nsec() != meta.mtime_nsec()
                || now.len() != size
            {
                notice(
                    stats,
                    path,
                    "changed while being read; the stored copy may mix old and new content".into(),
                );
            }
        } else {
            notice(
                stats,
                path,
                "vanished while being read; stored as read".into(),
            );
        }
    }
}

/// Yields exactly `remaining` bytes: the file's bytes, then zeros if the file came up short.
struct ExactSize {
    inner: File,
    remaining: u64,
    short: u64,
    failed: Option<io::Error>,
}

impl Read for ExactSize {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = if self.failed.is_some() || self.short > 0 {
            0
        } else {
            loop {
                match self.inner.read(&mut buf[..want]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.failed = Some(e);
                        break 0;
                    }
                }
            }
        };
        if n == 0 {
            // Pad: the header already promised `remaining` more bytes.
            self.short = self.short.max(self.remaining);
            buf[..want].fill(0);
            self.remaining -= want as u64;
            return Ok(want);
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn unreadable(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "vanished before it could be read; not stored".into(),
        io::ErrorKind::PermissionDenied => {
            "permission denied; not stored (run offbox as the service user that may read it)".into()
        }
        _ => format!("unreadable ({e}); not stored"),
    }
}

fn notice(stats: &mut PackStats, path: &Path, what: String) {
    stats.notices.push(Notice {
        path: path.display().to_string(),
        what,
    });
}
