//! Extended attributes: read from an already opened, verified descriptor when packing, and
//! set on the restored entry when unpacking.
//!
//! Every namespace the backup may read is stored: `user.*`, `trusted.*` (root only),
//! `security.*` (SELinux/AppArmor labels, `security.capability`) and the POSIX ACLs
//! `system.posix_acl_access` / `system.posix_acl_default`. Reading goes through the file's
//! own descriptor (`flistxattr`/`fgetxattr`), or for entries held by an `O_PATH` handle
//! through `/proc/self/fd/N`, which names that very inode (a symlink included, not its
//! target), so the race-free walk of `pack` stays race-free. On restore the attributes are
//! set after the owner and mode, `security.capability` last (a chown clears it). An
//! attribute that cannot be set is counted, never fatal: the restore reports it in one
//! summarised warning.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::XattrFlags;
use rustix::io::Errno;

/// One attribute: its name (as the kernel lists it, without the trailing NUL) and value.
pub(crate) type Xattr = (Vec<u8>, Vec<u8>);

/// The largest list or value Linux hands out (`XATTR_LIST_MAX`, `XATTR_SIZE_MAX`).
const MAX: usize = 64 * 1024;

/// The capability attribute, set last on restore.
const CAPABILITY: &[u8] = b"security.capability";

/// Reads attributes with one reusable buffer.
pub(crate) struct Reader {
    list: Vec<u8>,
    value: Vec<u8>,
}

impl Reader {
    pub(crate) fn new() -> Reader {
        Reader {
            list: vec![0; MAX],
            value: vec![0; MAX],
        }
    }

    /// The attributes of an open file (not an `O_PATH` handle), sorted by name.
    pub(crate) fn of_file(&mut self, f: &File) -> io::Result<Vec<Xattr>> {
        let n = match rustix::fs::flistxattr(f, &mut self.list[..]) {
            Ok(n) => n,
            Err(e) if unsupported(e) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for name in names(&self.list[..n]) {
            match rustix::fs::fgetxattr(f, name, &mut self.value[..]) {
                Ok(len) => out.push((name.to_vec(), self.value[..len].to_vec())),
                // Removed since it was listed.
                Err(Errno::NODATA) => {}
                Err(e) => return Err(e.into()),
            }
        }
        out.sort();
        Ok(out)
    }

    /// The attributes of the inode behind an `O_PATH` handle (a directory, a symlink, a
    /// FIFO or a device node), read through `/proc/self/fd/N`, which resolves to that inode
    /// itself and never opens it (a device's driver is not involved).
    pub(crate) fn of_handle(&mut self, handle: &OwnedFd) -> io::Result<Vec<Xattr>> {
        let path = format!("/proc/self/fd/{}", handle.as_fd().as_raw_fd());
        self.of_path(Path::new(&path))
    }

    /// The attributes of `path`, following it (for the trusted parents of a source).
    pub(crate) fn of_path(&mut self, path: &Path) -> io::Result<Vec<Xattr>> {
        let n = match rustix::fs::listxattr(path, &mut self.list[..]) {
            Ok(n) => n,
            Err(e) if unsupported(e) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for name in names(&self.list[..n]) {
            match rustix::fs::getxattr(path, name, &mut self.value[..]) {
                Ok(len) => out.push((name.to_vec(), self.value[..len].to_vec())),
                Err(Errno::NODATA) => {}
                Err(e) => return Err(e.into()),
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The file system (or the kernel) has no extended attributes: nothing to store.
fn unsupported(e: Errno) -> bool {
    e == Errno::NOTSUP || e == Errno::OPNOTSUPP
}

/// The NUL-separated names of a list.
fn names(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == 0).filter(|n| !n.is_empty())
}

/// True when `name` is in one of the skipped namespaces: `security` skips `security.*`,
/// `security.selinux` that attribute (and any `security.selinux.*`).
pub(crate) fn skipped(name: &[u8], skip: &[String]) -> bool {
    skip.iter().any(|ns| {
        let ns = ns.trim_end_matches('*').trim_end_matches('.').as_bytes();
        !ns.is_empty() && name.starts_with(ns) && (name.len() == ns.len() || name[ns.len()] == b'.')
    })
}

/// Where the attributes of a restored entry go.
pub enum Target<'a> {
    /// An open regular file.
    File(&'a File),
    /// A path inside the staging directory, not followed if it is a symlink.
    Path(&'a Path),
}

/// Attributes of one restore that could not be set: a count and the first few, for the
/// one summarised warning.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct XattrFailures {
    /// Attributes not restored.
    pub count: u64,
    /// The first few, as `ENTRY (NAME: REASON)`.
    pub first: Vec<String>,
    /// True when at least one failed because this user may not set it (a restore without
    /// root: `trusted.*`, `security.capability`, labels).
    pub not_permitted: bool,
    /// True when at least one failed because the destination's file system does not
    /// support extended attributes (or that namespace).
    pub not_supported: bool,
    /// Attributes left out on purpose (`--skip-xattrs`).
    pub skipped: u64,
}

/// How many failures are kept by name.
const KEPT: usize = 5;

impl XattrFailures {
    /// Sets `attrs` on `target`, except those in the `skip` namespaces; what cannot be set
    /// is counted under `entry`.
    pub(crate) fn apply(
        &mut self,
        target: Target<'_>,
        entry: &str,
        attrs: &[Xattr],
        skip: &[String],
    ) {
        // The capability last: setting other attributes does not clear it, a chown does.
        let ordered = attrs
            .iter()
            .filter(|(n, _)| n.as_slice() != CAPABILITY)
            .chain(attrs.iter().filter(|(n, _)| n.as_slice() == CAPABILITY));
        for (name, value) in ordered {
            if skipped(name, skip) {
                self.skipped += 1;
                continue;
            }
            let res = match target {
                Target::File(f) => rustix::fs::fsetxattr(f, &name[..], value, XattrFlags::empty()),
                Target::Path(p) => rustix::fs::lsetxattr(p, &name[..], value, XattrFlags::empty()),
            };
            if let Err(e) = res {
                self.failed(entry, name, e);
            }
        }
    }

    /// Adds the failures counted elsewhere (by another writer thread).
    pub(crate) fn merge(&mut self, other: XattrFailures) {
        self.count += other.count;
        let room = KEPT.saturating_sub(self.first.len());
        self.first.extend(other.first.into_iter().take(room));
        self.not_permitted |= other.not_permitted;
        self.not_supported |= other.not_supported;
        self.skipped += other.skipped;
    }

    fn failed(&mut self, entry: &str, name: &[u8], e: Errno) {
        self.count += 1;
        let reason = if e == Errno::PERM || e == Errno::ACCESS {
            self.not_permitted = true;
            "not permitted for this user".to_string()
        } else if unsupported(e) {
            self.not_supported = true;
            "not supported by the destination file system".to_string()
        } else {
            io::Error::from(e).to_string()
        };
        if self.first.len() < KEPT {
            self.first.push(format!(
                "{entry} ({}: {reason})",
                String::from_utf8_lossy(name)
            ));
        }
    }

    /// The one warning line, or `None` when every attribute was restored.
    pub fn warning(&self) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        let mut advice = Vec::new();
        if self.not_permitted {
            advice.push("restore as root to set trusted.*, security.* and file capabilities");
        }
        if self.not_supported {
            advice.push("restore onto a file system with extended attributes (ext4, xfs, btrfs)");
        }
        advice.push("or leave a namespace out with --skip-xattrs NS");
        let more = self.count.saturating_sub(self.first.len() as u64);
        Some(format!(
            "{} extended attribute(s) not restored: {}{}; {}",
            self.count,
            self.first.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            },
            advice.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests;
