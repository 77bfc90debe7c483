//! What a regular file created beneath the staging directory already has, so that a
//! restore sets only what differs: most files of a system backup belong to the user that
//! restores them (root) and have a plain mode such as 0644, and for them the `fchown` and
//! `fchmod` after writing are two system calls per file that change nothing.
//!
//! Probed once per restore, from the staging directory itself:
//! - **owner**: a new file gets this process's user, and its group unless the directory
//!   hands its own down (a set-group-ID directory, or a file system mounted `grpid`). The
//!   staging directory is this process's and, by [`crate::payload`]'s rules, every
//!   directory beneath it is made by this restore and gets its metadata only at the end.
//!   So when the staging directory's owner and group are this process's effective ones,
//!   every new file has them too.
//! - **mode**: `open(O_CREAT, mode)` gives `mode` less the umask, unless a default ACL of
//!   the parent directory decides instead. With the umask known (`/proc/self/status`) and
//!   no default ACL on the staging directory (directories beneath it get theirs at the
//!   end), a permission without set-user-ID, set-group-ID or sticky bits and with no bit
//!   of the umask is given exactly at creation.
//!
//! When anything is unknown, the file is created private (0600) and given its owner and
//! mode after writing, as before.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::sys::stat::Mode;
use rustix::io::Errno;

/// The mode a file is created with when its final mode cannot be given at creation: private
/// until `finish` sets the real one.
const PRIVATE: u32 = 0o600;

/// What a new file beneath one staging directory gets without being told.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Fresh {
    /// The owner and group of every new file, when known.
    owner: Option<(u32, u32)>,
    /// The bits creation removes from the mode (the umask), when they are all it removes.
    umask: Option<u32>,
}

impl Fresh {
    /// Probes the staging directory `root` (its descriptor and path). What cannot be probed
    /// stays unknown: such files get their owner and mode after writing.
    pub(super) fn probe(root: &OwnedFd, root_path: &Path) -> Fresh {
        let owner = rustix::fs::fstat(root).ok().and_then(|st| {
            let ours = (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            );
            (ours == (st.st_uid, st.st_gid)).then_some(ours)
        });
        let umask = match default_acl(root_path) {
            Ok(false) => std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| umask_of(&s)),
            Ok(true) | Err(_) => None,
        };
        Fresh { owner, umask }
    }

    /// Whether a new file gets exactly `perm` when created with it.
    fn exact(&self, perm: u32) -> bool {
        matches!(self.umask, Some(m) if perm & !0o777 == 0 && perm & m == 0)
    }

    /// The mode to create a file of final permission `perm` with: `perm` itself when
    /// creation gives it exactly, else private.
    pub(super) fn create_mode(&self, perm: u32) -> Mode {
        let bits = if self.exact(perm) { perm } else { PRIVATE };
        Mode::from_bits_truncate(bits)
    }

    /// Whether a file created with [`Fresh::create_mode`] still needs `fchown` (when owners
    /// are restored) and `fchmod` to get `uid`, `gid` and `perm`.
    pub(super) fn needs(&self, as_root: bool, uid: u64, gid: u64, perm: u32) -> (bool, bool) {
        let owned = self
            .owner
            .is_some_and(|(u, g)| u64::from(u) == uid && u64::from(g) == gid);
        (as_root && !owned, !self.exact(perm))
    }
}

/// Whether the directory at `path` has a default ACL (which, not the umask, then decides
/// the mode of what is created in it). A file system without extended attributes has none.
fn default_acl(path: &Path) -> io::Result<bool> {
    let mut buf = [0u8; 256];
    match rustix::fs::lgetxattr(path, "system.posix_acl_default", &mut buf[..]) {
        Ok(_) => Ok(true),
        Err(e) if e == Errno::RANGE => Ok(true),
        Err(e) if e == Errno::NODATA || e == Errno::OPNOTSUPP => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The umask from the text of `/proc/self/status` (`Umask:\t0022`, Linux 4.7 and later).
fn umask_of(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    let m = u32::from_str_radix(line.trim(), 8).ok()?;
    (m <= 0o777).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(owner: Option<(u32, u32)>, umask: Option<u32>) -> Fresh {
        Fresh { owner, umask }
    }

    #[test]
    fn the_umask_is_read_from_the_status_text() {
        assert_eq!(umask_of("Name:\tx\nUmask:\t0022\nState:\tR\n"), Some(0o022));
        assert_eq!(umask_of("Umask:\t0077\n"), Some(0o077));
        assert_eq!(umask_of("Name:\tx\n"), None);
        assert_eq!(umask_of("Umask:\t9\n"), None);
        assert_eq!(umask_of("Umask:\t7777\n"), None);
    }

    #[test]
    fn a_plain_mode_outside_the_umask_is_given_at_creation() {
        let f = fresh(None, Some(0o022));
        assert_eq!(f.create_mode(0o644).bits(), 0o644);
        assert_eq!(f.create_mode(0o755).bits(), 0o755);
        assert_eq!(f.create_mode(0o400).bits(), 0o400);
        assert_eq!(f.needs(false, 0, 0, 0o644), (false, false));
        // A bit the umask removes, or a special bit (a later chown would clear it): private
        // first, the mode after writing.
        for perm in [0o664, 0o666, 0o4755, 0o2755, 0o1777] {
            assert_eq!(f.create_mode(perm).bits(), PRIVATE, "{perm:o}");
            assert_eq!(f.needs(false, 0, 0, perm), (false, true), "{perm:o}");
        }
        // Umask unknown (or a default ACL decides): always private first.
        let unknown = fresh(None, None);
        assert_eq!(unknown.create_mode(0o644).bits(), PRIVATE);
        assert_eq!(unknown.needs(false, 0, 0, 0o644), (false, true));
    }

    #[test]
    fn the_owner_is_set_only_where_it_differs() {
        let f = fresh(Some((0, 0)), Some(0o022));
        assert_eq!(f.needs(true, 0, 0, 0o644), (false, false));
        assert_eq!(f.needs(true, 1000, 0, 0o644), (true, false));
        assert_eq!(f.needs(true, 0, 1000, 0o644), (true, false));
        // Not restoring owners (not root): never.
        assert_eq!(f.needs(false, 1000, 1000, 0o644), (false, false));
        // Owner unknown: always, as root.
        assert_eq!(
            fresh(None, Some(0o022)).needs(true, 0, 0, 0o644),
            (true, false)
        );
    }

    #[test]
    fn a_new_staging_directory_is_probed() {
        let dir = tempfile::tempdir().unwrap();
        let fd = crate::payload::fsat::open_dir(dir.path()).unwrap();
        let f = Fresh::probe(&fd, dir.path());
        let ours = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        assert_eq!(f.owner, Some(ours));
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert_eq!(f.umask, umask_of(&status));
    }

    #[test]
    fn a_default_acl_or_another_owner_leaves_it_unknown() {
        let dir = tempfile::tempdir().unwrap();
        // user::rwx, group::r-x, other::r-x (the binary form of a POSIX ACL, version 2).
        let acl: Vec<u8> = [2u32.to_le_bytes().to_vec()]
            .into_iter()
            .chain(
                [(1u16, 7u16), (4, 5), (0x20, 5)]
                    .iter()
                    .map(|&(tag, perm)| {
                        [
                            &tag.to_le_bytes()[..],
                            &perm.to_le_bytes(),
                            &u32::MAX.to_le_bytes(),
                        ]
                        .concat()
                    }),
            )
            .flatten()
            .collect();
        let set = rustix::fs::lsetxattr(
            dir.path(),
            "system.posix_acl_default",
            &acl,
            rustix::fs::XattrFlags::empty(),
        );
        if set.is_ok() {
            let fd = crate::payload::fsat::open_dir(dir.path()).unwrap();
            assert_eq!(Fresh::probe(&fd, dir.path()).umask, None);
        }
        if nix::unistd::geteuid().is_root() {
            let other = tempfile::tempdir().unwrap();
            nix::unistd::chown(other.path(), Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
            let fd = crate::payload::fsat::open_dir(other.path()).unwrap();
            assert_eq!(Fresh::probe(&fd, other.path()).owner, None);
        }
    }
}
