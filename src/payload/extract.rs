//! The entry-by-entry extraction of a tar payload into a staging directory.
//!
//! The tar crate only splits the stream into raw entries; offbox reads the extension
//! entries itself (GNU long names and links, PAX records, whose values may hold any bytes)
//! and creates every entry through directory descriptors opened without following
//! symlinks ([`super::make`], [`super::write_file`]). Every entry's path (and a hard link's
//! target) is checked first: a `..` component or an absolute path fails the whole restore
//! with an error naming the entry. Setuid and setgid bits of files are stripped unless the
//! caller asked to keep them, extended attributes are set (but for skipped namespaces),
//! and everything the restore did not reproduce exactly is recorded in the
//! [`ExtractReport`].

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use tar::{Entry, EntryType};

use super::fsat;
use super::make::{Meta, Place};
use super::pax::{self, xattr_name};
use super::sparse::SparseInfo;
use super::unpack::{ExtractReport, UnpackOptions};
use super::write_file::{self, FileHead, Parents};
use super::writers::Writers;
use super::xattr::{Target, Xattr};

/// The setuid and setgid bits.
const SETID: u32 = 0o6000;

/// The largest extension entry (long name or PAX records) read into memory.
const MAX_EXTENSION: u64 = 16 << 20;

/// What the restore needs for every entry.
struct Ctx<'a> {
    root: &'a Path,
    root_fd: OwnedFd,
    as_root: bool,
    opts: &'a UnpackOptions,
}

/// A directory, finished after every other entry.
struct Dir {
    name: String,
    rel: PathBuf,
    meta: Meta,
    attrs: Vec<Xattr>,
}

/// A hard link, made once every file is written (its target may still be in a writer's
/// queue when the link entry is read).
struct Link {
    name: String,
    rel: PathBuf,
    target: PathBuf,
}

/// Where the entries of a restore go besides the context: the file writers, the parsing
/// thread's own parent directory cache, and the work left for the end.
struct Sinks {
    writers: Writers,
    parents: Parents,
    dirs: Vec<Dir>,
    links: Vec<Link>,
}

/// Extracts `tar_stream` into `root` (an existing, private directory given by its canonical
/// path) and hands the reader back. Regular files are written by the [`Writers`]; hard
/// links are made after every file is complete, then directories get their metadata,
/// deepest first.
pub(super) fn extract_tree<R: Read>(
    root: &Path,
    tar_stream: R,
    opts: &UnpackOptions,
    report: &mut ExtractReport,
) -> io::Result<R> {
    let ctx = Ctx {
        root,
        root_fd: fsat::open_dir(root)?,
        as_root: nix::unistd::geteuid().is_root(),
        opts,
    };
    let mut ar = tar::Archive::new(tar_stream);
    {
        let mut sinks = Sinks {
            writers: Writers::start(&ctx.root_fd, root, ctx.as_root, &opts.skip_xattrs)?,
            parents: Parents::default(),
            dirs: Vec::new(),
            links: Vec::new(),
        };
        let mut ext = Extended::default();
        for entry in ar.entries()?.raw(true) {
            let mut entry = entry?;
            match entry.header().entry_type() {
                EntryType::GNULongName => ext.long_name = Some(read_name(&mut entry)?),
                EntryType::GNULongLink => ext.long_link = Some(read_name(&mut entry)?),
                EntryType::XHeader => ext.take_records(&read_extension(&mut entry)?)?,
                EntryType::XGlobalHeader => {}
                _ => {
                    let this = std::mem::take(&mut ext);
                    extract_one(&ctx, entry, this, &mut sinks, report)?;
                }
            }
        }
        // Every file complete (and its metadata set) before links and directories.
        let Sinks {
            writers,
            mut dirs,
            links,
            ..
        } = sinks;
        writers.finish(&mut report.xattrs)?;
        for l in links {
            let place = Place {
                root: &ctx.root_fd,
                rel: &l.rel,
                as_root: ctx.as_root,
            };
            place
                .hard_link(&l.target)
                .map_err(|e| entry_error(&l.name, root, e))?;
        }
        // Directories last, deepest first, so that a read-only directory does not stop its
        // own entries from being written, and no later write changes its mtime.
        dirs.sort_by(|a, b| b.rel.cmp(&a.rel));
        for d in dirs {
            let place = Place {
                root: &ctx.root_fd,
                rel: &d.rel,
                as_root: ctx.as_root,
            };
            place
                .directory(d.meta)
                .map_err(|e| entry_error(&d.name, root, e))?;
            set_attrs(&ctx, &d.rel, &d.name, &d.attrs, report);
            report.entries += 1;
        }
    }
    Ok(ar.into_inner())
}

/// Restores one entry: a regular file goes to the writers, a directory or a hard link is
/// kept to be finished at the end, anything else is made here.
fn extract_one<R: Read>(
    ctx: &Ctx<'_>,
    mut entry: Entry<'_, R>,
    ext: Extended,
    sinks: &mut Sinks,
    report: &mut ExtractReport,
) -> io::Result<()> {
    let (name, path) = ext.path(&entry);
    let Some(rel) = checked_path(&path, &name)? else {
        return Ok(());
    };
    let h = entry.header();
    let kind = h.entry_type();
    let err = |e| entry_error(&name, ctx.root, e);
    let meta = meta_of(h, ctx, &name, report).map_err(err)?;
    let place = Place {
        root: &ctx.root_fd,
        rel: &rel,
        as_root: ctx.as_root,
    };
    if matches!(
        kind,
        EntryType::Symlink | EntryType::Fifo | EntryType::Char | EntryType::Block
    ) {
        // Made here and now: after any file in flight whose path meets this one.
        sinks.writers.settle(&rel, false)?;
    }
    match kind {
        EntryType::Directory => {
            sinks.dirs.push(Dir {
                name,
                rel,
                meta,
                attrs: ext.attrs,
            });
            return Ok(());
        }
        EntryType::Regular | EntryType::Continuous => {
            let sparse = ext.sparse.real_size().map_err(err)?;
            let head = FileHead {
                rel: rel.clone(),
                name: name.clone(),
                meta,
                attrs: ext.attrs,
            };
            write_file::dispatch(
                &mut entry,
                head,
                sparse,
                &mut sinks.writers,
                &mut sinks.parents,
                ctx.root,
            )?;
        }
        EntryType::Symlink | EntryType::Link => {
            let target = ext
                .link(&entry)
                .ok_or_else(|| refused(&name, "it is a link without a target"))?;
            if kind == EntryType::Symlink {
                place.symlink(&target, meta).map_err(err)?;
                set_attrs(ctx, &rel, &name, &ext.attrs, report);
            } else {
                let shown = target.display().to_string();
                let first = checked_path(&target, &shown)?
                    .ok_or_else(|| refused(&name, "it is a hard link to the top directory"))?;
                sinks.links.push(Link {
                    name,
                    rel,
                    target: first,
                });
            }
        }
        EntryType::Fifo | EntryType::Char | EntryType::Block => {
            let dev = if kind == EntryType::Fifo {
                (0, 0)
            } else {
                (
                    h.device_major().map_err(err)?.unwrap_or(0),
                    h.device_minor().map_err(err)?.unwrap_or(0),
                )
            };
            if place.node(kind, dev, meta, &name, report).map_err(err)? {
                set_attrs(ctx, &rel, &name, &ext.attrs, report);
            }
        }
        other => {
            let why = if other == EntryType::GNUSparse {
                "it is in the old GNU sparse format, which offbox does not write".to_string()
            } else {
                format!("entry type {other:?} is not one offbox restores")
            };
            report.skipped.push((name, why));
            return Ok(());
        }
    }
    report.entries += 1;
    Ok(())
}

/// The entry's owner, mtime and permission bits, setuid/setgid stripped from files and
/// nodes (and reported) unless the restore keeps them. Directories keep their setgid bit,
/// which grants no privilege.
fn meta_of(
    h: &tar::Header,
    ctx: &Ctx<'_>,
    name: &str,
    report: &mut ExtractReport,
) -> io::Result<Meta> {
    let mut meta = Meta {
        perm: h.mode()? & 0o7777,
        uid: h.uid()?,
        gid: h.gid()?,
        mtime: h.mtime()?,
    };
    let strip = matches!(
        h.entry_type(),
        EntryType::Regular
            | EntryType::Continuous
            | EntryType::Char
            | EntryType::Block
            | EntryType::Fifo
    );
    if strip && meta.perm & SETID != 0 && !ctx.opts.keep_setuid {
        meta.perm &= !SETID;
        report.stripped_setid.push(name.to_string());
    }
    Ok(meta)
}

/// What the extension entries before an entry say: a long name or link target (GNU), and
/// the PAX records (extended attributes, sparse file, path).
#[derive(Default)]
struct Extended {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
    attrs: Vec<Xattr>,
    sparse: SparseInfo,
}

impl Extended {
    fn take_records(&mut self, data: &[u8]) -> io::Result<()> {
        for (key, value) in pax::parse(data)? {
            match (xattr_name(&key), key.as_slice()) {
                (Some(name), _) => self.attrs.push((name, value)),
                (None, b"path") => self.pax_path = Some(value),
                (None, b"linkpath") => self.pax_link = Some(value),
                (None, _) => self.sparse.take(&key, &value),
            }
        }
        Ok(())
    }

    /// The entry's name (for messages) and path: a sparse file's real name, a PAX path, a
    /// GNU long name, or the header's own.
    fn path<R: Read>(&self, entry: &Entry<'_, R>) -> (String, PathBuf) {
        let bytes = match (&self.sparse.name, &self.pax_path, &self.long_name) {
            (Some(n), _, _) | (None, Some(n), _) | (None, None, Some(n)) => n.clone(),
            _ => entry.header().path_bytes().into_owned(),
        };
        let path = PathBuf::from(OsStr::from_bytes(&bytes));
        (String::from_utf8_lossy(&bytes).into_owned(), path)
    }

    /// A link's target.
    fn link<R: Read>(&self, entry: &Entry<'_, R>) -> Option<PathBuf> {
        let bytes = match (&self.pax_link, &self.long_link) {
            (Some(n), _) | (None, Some(n)) => n.clone(),
            _ => entry.header().link_name_bytes()?.into_owned(),
        };
        Some(PathBuf::from(OsStr::from_bytes(&bytes)))
    }
}

/// The data of an extension entry, bounded.
fn read_extension<R: Read>(entry: &mut Entry<'_, R>) -> io::Result<Vec<u8>> {
    if entry.size() > MAX_EXTENSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "an extension entry of {} bytes is larger than offbox writes",
                entry.size()
            ),
        ));
    }
    let mut data = Vec::new();
    entry.read_to_end(&mut data)?;
    Ok(data)
}

/// A GNU long name or link target, without its trailing NULs.
fn read_name<R: Read>(entry: &mut Entry<'_, R>) -> io::Result<Vec<u8>> {
    let mut data = read_extension(entry)?;
    while data.last() == Some(&0) {
        data.pop();
    }
    Ok(data)
}

/// Sets the attributes of a directory, symlink, FIFO or device node by its path inside the
/// staging directory (whose components were just checked not to be symlinks), not
/// following it.
fn set_attrs(ctx: &Ctx<'_>, rel: &Path, name: &str, attrs: &[Xattr], report: &mut ExtractReport) {
    if !attrs.is_empty() {
        let path = ctx.root.join(rel);
        report
            .xattrs
            .apply(Target::Path(&path), name, attrs, &ctx.opts.skip_xattrs);
    }
}

/// The entry's path, relative and without `..`, or `None` for an entry naming the top
/// directory itself (`./`), which is skipped as tar does.
fn checked_path(path: &Path, name: &str) -> io::Result<Option<PathBuf>> {
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

pub(super) fn entry_error(name: &str, root: &Path, e: io::Error) -> io::Error {
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
