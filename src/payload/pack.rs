//! Packing the sources into a tar stream.
//!
//! Regular files, directories, symlinks, FIFOs and device nodes are stored with their mode,
//! owner, mtime and extended attributes (ACLs and file capabilities included, as PAX
//! `SCHILY.xattr.*` records: see [`super::xattr`]); symlinks are not followed. Every entry
//! is looked up relative to its directory's descriptor, and a file is read (and its
//! attributes listed) only through a descriptor opened with `O_NOFOLLOW` and `O_NOATIME`
//! whose device, inode and type match that lookup, so a file swapped for a symlink while
//! the backup runs is skipped with a [`Notice`], never read through the link. A sparse file
//! is stored in the PAX sparse format 1.0 ([`super::sparse`]): its holes take no space. A
//! file with several names (hard links) is stored once, and its other names as hard-link
//! entries to the first, so a restore links them again (the table of such files is the
//! only state that grows with the sources: one entry per multiply-linked file). Paths are
//! stored relative to `/` (as GNU tar does), so `/etc/hosts` restores to `DIR/etc/hosts`. A
//! file that vanishes, shrinks, grows or changes while it is read is recorded as a
//! [`Notice`], never a crash: the tar stream always stays well-formed (a shrunk file is
//! padded with zeros to its announced size).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io::{self, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use tar::{Builder, EntryType, Header, HeaderMode};

use super::acl;
use super::exclude::Excludes;
use super::fsat::{self, OpenFail};
use super::pax::Records;
use super::read_file::{after_read, ExactSize};
use super::sparse;
use super::xattr::{self, Xattr};
use super::Notice;
use crate::progress::Meter;

/// Totals of one packing run.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PackStats {
    /// Entries stored.
    pub entries: u64,
    /// File content bytes stored (apparent sizes: holes of sparse files included).
    pub file_bytes: u64,
    /// Extended attributes stored (ACLs and capabilities included).
    pub xattrs: u64,
    /// Files stored as sparse (their holes take no space in the archive).
    pub sparse_files: u64,
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
        xattrs: xattr::Reader::new(),
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
        add_parents(&mut w, &abs)?;
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

/// Stores the parent directories of a source, so that their modes, owners and extended
/// attributes restore too.
fn add_parents<W: Write>(w: &mut Walker<'_, W>, abs: &Path) -> Result<(), PackError> {
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
            let attrs = w.xattrs.of_path(p);
            let pax = w.records(attrs, p);
            w.append(&mut h, rel(p), &pax)?;
        }
    }
    Ok(())
}

/// The stored name of every multiply-linked file seen, by device, inode and ctime: the
/// names of one file share all three, while a file deleted during the walk can leave its
/// inode number to a new one (whose ctime is its own), which must not become a link to it.
type Links = HashMap<(u64, u64, i64, i64), PathBuf>;

/// One packing run: the tar builder and what the walk accumulates.
struct Walker<'a, W: Write> {
    b: Builder<W>,
    excludes: &'a Excludes,
    meter: &'a Meter,
    stats: PackStats,
    links: Links,
    xattrs: xattr::Reader,
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
            let pax = self.handle_records(&handle, path);
            self.append(&mut h, stored, &pax)?;
            self.walk_children(&handle, path)?;
        } else if ft.is_symlink() {
            match fsat::read_link(&handle) {
                Ok(target) => {
                    h.set_size(0);
                    let pax = self.handle_records(&handle, path);
                    pax.write(&mut self.b, stored).map_err(PackError::Write)?;
                    self.b
                        .append_link(&mut h, stored, &target)
                        .map_err(PackError::Write)?;
                    self.stats.entries += 1;
                }
                Err(e) => notice(&mut self.stats, path, unreadable(&e)),
            }
        } else if ft.is_file() && meta.nlink() > 1 {
            self.add_linked(dir, name, path, &meta, h)?;
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
            let pax = self.handle_records(&handle, path);
            self.append(&mut h, stored, &pax)?;
        } else {
            notice(
                &mut self.stats,
                path,
                "skipped: sockets are not backed up".into(),
            );
        }
        Ok(())
    }

    /// A file with several names: the first name seen is stored as a file, the others as
    /// hard links to it.
    fn add_linked(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &Path,
        meta: &Metadata,
        mut h: Header,
    ) -> Result<(), PackError> {
        let stored = rel(path);
        let key = (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec());
        if let Some(first) = self.links.get(&key) {
            h.set_entry_type(EntryType::Link);
            h.set_size(0);
            self.b
                .append_link(&mut h, stored, first)
                .map_err(PackError::Write)?;
            self.stats.entries += 1;
        } else {
            let before = self.stats.entries;
            self.add_file(dir, name, path, meta, h)?;
            if self.stats.entries > before {
                self.links.insert(key, stored.to_path_buf());
            }
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

    fn append(&mut self, h: &mut Header, stored: &Path, pax: &Records) -> Result<(), PackError> {
        pax.write(&mut self.b, stored).map_err(PackError::Write)?;
        self.b
            .append_data(h, stored, io::empty())
            .map_err(PackError::Write)?;
        self.stats.entries += 1;
        Ok(())
    }

    /// The PAX records of the extended attributes of the inode behind an `O_PATH` handle.
    fn handle_records(&mut self, handle: &OwnedFd, path: &Path) -> Records {
        let attrs = self.xattrs.of_handle(handle);
        self.records(attrs, path)
    }

    /// The PAX records of `attrs`; a failure to read them is a notice (the entry is stored
    /// without them).
    fn records(&mut self, attrs: io::Result<Vec<Xattr>>, path: &Path) -> Records {
        let mut pax = Records::default();
        match attrs {
            Ok(attrs) => {
                self.stats.xattrs += attrs.len() as u64;
                xattr_records(&mut pax, &attrs);
            }
            Err(e) => notice(
                &mut self.stats,
                path,
                format!("extended attributes unreadable ({e}); stored without them"),
            ),
        }
        pax
    }

    fn add_file(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &Path,
        meta: &Metadata,
        mut h: Header,
    ) -> Result<(), PackError> {
        let file = match fsat::open_regular_at(dir, name, meta) {
            Ok(f) => f,
            Err(OpenFail::Io(e)) => {
                notice(&mut self.stats, path, unreadable(&e));
                return Ok(());
            }
            Err(OpenFail::Replaced(why)) => {
                notice(
                    &mut self.stats,
                    path,
                    format!("replaced while being backed up ({why}); not stored"),
                );
                return Ok(());
            }
        };
        // The size announced in the tar header is the one seen when the file was opened.
        let (size, extents) = match file.metadata().and_then(|m| {
            let size = m.len();
            Ok((size, sparse::data_extents(&file, &m, size)?))
        }) {
            Ok(x) => x,
            Err(e) => {
                notice(&mut self.stats, path, unreadable(&e));
                return Ok(());
            }
        };
        let attrs = self.xattrs.of_file(&file);
        let mut pax = self.records(attrs, path);
        let stored = rel(path);
        h.set_entry_type(EntryType::Regular);
        let (name_in_header, map, extents) = match extents {
            Some(extents) => {
                // GNU tar reads PAX sparse entries only under a POSIX (ustar) header.
                h = Header::new_ustar();
                h.set_metadata_in_mode(meta, HeaderMode::Complete);
                h.set_entry_type(EntryType::Regular);
                sparse::records(&mut pax, stored, size);
                self.stats.sparse_files += 1;
                let map = sparse::map_bytes(&extents);
                (sparse::header_name(stored), map, extents)
            }
            None => (stored.to_path_buf(), Vec::new(), vec![(0, size)]),
        };
        let data: u64 = extents.iter().map(|e| e.1).sum();
        h.set_size(map.len() as u64 + data);
        pax.write(&mut self.b, stored).map_err(PackError::Write)?;
        let mut exact = ExactSize::new(file, extents);
        {
            // Counted as it is read, so that the progress bar moves within a large file.
            let data_in = crate::progress::Metered::new(&mut exact, self.meter);
            let mut reader = BufReader::with_capacity(256 * 1024, (&map[..]).chain(data_in));
            self.b
                .append_data(&mut h, &name_in_header, &mut reader)
                .map_err(PackError::Write)?;
        }
        self.stats.entries += 1;
        self.stats.file_bytes += size;
        after_read(&mut self.stats.notices, path, meta, exact, size);
        Ok(())
    }
}

/// Adds `attrs` as `SCHILY.xattr.NAME` records, and the ACLs also as the `SCHILY.acl.*`
/// text records that `tar --acls` reads.
fn xattr_records(pax: &mut Records, attrs: &[Xattr]) {
    for (name, value) in attrs {
        pax.add_xattr(name, value);
    }
    for (name, key) in [
        (&b"system.posix_acl_access"[..], &b"SCHILY.acl.access"[..]),
        (b"system.posix_acl_default", b"SCHILY.acl.default"),
    ] {
        if let Some((_, v)) = attrs.iter().find(|(n, _)| n == name) {
            if let Some(text) = acl::to_text(v) {
                pax.add(key, text.as_bytes());
            }
        }
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
