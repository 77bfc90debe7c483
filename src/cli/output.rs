//! Output files (`decrypt --output`, `recover --output`, `keys export-public --output`):
//! plaintext that nobody can redirect, that never overwrites a file unless told to, and that
//! a killed run does not leave behind.
//!
//! - The data goes to a temporary in the destination's directory, opened through a
//!   descriptor of that directory. Where the filesystem allows it, the temporary has no name
//!   at all (`O_TMPFILE`): a kill leaves nothing. Elsewhere it is
//!   `.NAME.offbox-partial.<run>.<random>` (run id: see [`crate::run_id`]), created with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW` and mode 0600, so a symlink planted at any name cannot
//!   redirect it, and the name cannot be guessed in advance.
//! - Only after the whole output was written and `fsync`ed is it published under its final
//!   name: `linkat` for a nameless temporary, `renameat2(RENAME_NOREPLACE)` (else link and
//!   unlink) for a named one. Both fail on an existing name, so an existing destination is
//!   never overwritten unless `--replace` was given (then a plain rename replaces it; a
//!   symlink at the destination is replaced, its target is never written).
//! - At start, named partials of the same destination whose run is dead (or that were not
//!   written for a day) are removed, and the removal is reported on standard error.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag, AT_FDCWD};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::{fsync, geteuid, linkat, unlinkat, UnlinkatFlags};

use crate::jobs::JobError;
use crate::run_id::RunId;

/// The word that marks offbox's partial outputs.
const PARTIAL: &str = "offbox-partial";

/// A named partial not written for this long is stale even if its process id is in use.
const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Writes to standard output (`-`), or to the new file `output` (see the module doc);
/// `replace` allows replacing an existing file.
pub fn write_output<T>(
    output: &Path,
    replace: bool,
    f: impl FnOnce(&mut dyn Write) -> Result<T, JobError>,
) -> Result<T, JobError> {
    if output == Path::new("-") {
        let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
        let v = f(&mut out)?;
        out.flush()
            .map_err(|e| JobError::io("writing standard output", e))?;
        return Ok(v);
    }
    let dest = Dest::open(output)?;
    for (name, why) in dest.remove_stale_partials() {
        eprintln!(
            "offbox: removed {}, the partial output of an earlier offbox run ({why})",
            dest.dir.join(name).display()
        );
    }
    dest.refuse_existing(replace)?;
    let tmp = dest.create_temp()?;
    let mut w = BufWriter::with_capacity(1 << 20, &tmp.file);
    let v = f(&mut w)?;
    w.into_inner()
        .map_err(|e| JobError::io("writing the output", e.into_error()))?;
    tmp.file
        .sync_all()
        .map_err(|e| JobError::io("writing the output", e))?;
    dest.publish(tmp, replace)?;
    Ok(v)
}

/// The destination: its directory (open) and its file name.
struct Dest {
    output: PathBuf,
    dir: PathBuf,
    dirfd: OwnedFd,
    name: String,
}

/// The temporary being written. A named one is removed when dropped unpublished.
struct Temp<'a> {
    dest: &'a Dest,
    file: File,
    name: Option<String>,
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.name.take() {
            let _ = unlinkat(&self.dest.dirfd, n.as_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

impl Dest {
    fn open(output: &Path) -> Result<Dest, JobError> {
        let err = |msg: String| JobError::Io {
            what: format!("writing {}", output.display()),
            err: io::Error::new(io::ErrorKind::InvalidInput, msg),
        };
        let name = output
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| err("--output must name a file (UTF-8), not a directory".into()))?;
        let dir = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let dirfd = openat(AT_FDCWD, &dir, flags, Mode::empty()).map_err(|e| {
            err(format!(
                "cannot open its directory {}: {e}; create the directory first",
                dir.display()
            ))
        })?;
        Ok(Dest {
            output: output.to_path_buf(),
            dir,
            dirfd,
            name: name.to_string(),
        })
    }

    fn io_err(&self, what: &str, err: impl Into<io::Error>) -> JobError {
        JobError::Io {
            what: format!("{what} {}", self.output.display()),
            err: err.into(),
        }
    }

    fn exists_err(&self) -> JobError {
        JobError::refused(
            format!("writing {}", self.output.display()),
            crate::jobs::error::Policy::OutputExists,
            "the file exists; give a new name, or pass --replace to overwrite it (the existing file was left untouched)",
        )
    }

    /// The prefix of this destination's named partials.
    fn partial_prefix(&self) -> String {
        format!(".{}.{PARTIAL}.", self.name)
    }

    fn partial_name(&self) -> String {
        let r = crate::secret::random_bytes::<8>();
        format!(
            "{}{}.{}",
            self.partial_prefix(),
            RunId::current(),
            data_encoding::HEXLOWER.encode(&r)
        )
    }

    /// Removes this destination's partials of dead runs; returns (name, why) of each.
    fn remove_stale_partials(&self) -> Vec<(String, String)> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let prefix = self.partial_prefix();
        let mut removed = Vec::new();
        for e in rd.flatten() {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            let Some(run) = name.strip_prefix(&prefix).and_then(parse_partial) else {
                continue;
            };
            // Only our own regular files, looked at without following a symlink.
            let Ok(st) = fstatat(
                &self.dirfd,
                name.as_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) else {
                continue;
            };
            let regular = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
            if !regular || st.st_uid != geteuid().as_raw() {
                continue;
            }
            let why = if !run.is_alive() {
                format!("process {} no longer runs", run.pid)
            } else if age(st.st_mtime) > STALE_AFTER {
                "not written for more than a day".to_string()
            } else {
                continue;
            };
            if unlinkat(&self.dirfd, name.as_str(), UnlinkatFlags::NoRemoveDir).is_ok() {
                removed.push((name, why));
            }
        }
        removed
    }

    fn refuse_existing(&self, replace: bool) -> Result<(), JobError> {
        let flags = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
        match fstatat(&self.dirfd, self.name.as_str(), flags) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(self.io_err("checking", e)),
            Ok(_) if !replace => Err(self.exists_err()),
            Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {
                Err(self.io_err(
                    "replacing",
                    io::Error::new(
                        io::ErrorKind::IsADirectory,
                        "it is a directory; give a file name",
                    ),
                ))
            }
            Ok(_) => Ok(()),
        }
    }

    /// A nameless temporary where the filesystem can make one, else a fresh named one.
    fn create_temp(&self) -> Result<Temp<'_>, JobError> {
        let mode = Mode::from_bits_truncate(0o600);
        if Path::new("/proc/self/fd").is_dir() {
            let flags = OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
            match openat(&self.dirfd, ".", flags, mode) {
                Ok(fd) => return Ok(self.temp(fd, None)),
                // Not supported by this filesystem or kernel: use a named temporary.
                Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL | Errno::ENOENT) => {}
                Err(e) => return Err(self.io_err("creating a temporary beside", e)),
            }
        }
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut tries = 0;
        loop {
            let name = self.partial_name();
            match openat(&self.dirfd, name.as_str(), flags, mode) {
                Ok(fd) => return Ok(self.temp(fd, Some(name))),
                Err(Errno::EEXIST) if tries < 8 => tries += 1,
                Err(e) => return Err(self.io_err("creating a temporary beside", e)),
            }
        }
    }

    fn temp(&self, fd: OwnedFd, name: Option<String>) -> Temp<'_> {
        Temp {
            dest: self,
            file: File::from(fd),
            name,
        }
    }

    /// Gives the written temporary its final name, then syncs the directory.
    fn publish(&self, mut tmp: Temp<'_>, replace: bool) -> Result<(), JobError> {
        let named = match tmp.name.clone() {
            Some(n) => n,
            None => {
                let proc_path = format!("/proc/self/fd/{}", tmp.file.as_raw_fd());
                let follow = nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW;
                let link = |to: &str| linkat(AT_FDCWD, proc_path.as_str(), &self.dirfd, to, follow);
                if !replace {
                    return match link(&self.name) {
                        Ok(()) => self.sync_dir(),
                        Err(Errno::EEXIST) => Err(self.exists_err()),
                        Err(e) => Err(self.io_err("publishing", e)),
                    };
                }
                // To replace: give it a fresh partial name first, then rename that.
                let n = self.partial_name();
                link(&n).map_err(|e| self.io_err("publishing", e))?;
                tmp.name = Some(n.clone());
                n
            }
        };
        let r = if replace {
            renameat(&self.dirfd, named.as_str(), &self.dirfd, self.name.as_str())
        } else {
            self.rename_no_replace(&named)
        };
        match r {
            Ok(()) => {
                tmp.name = None;
                self.sync_dir()
            }
            Err(Errno::EEXIST) => Err(self.exists_err()),
            Err(e) => Err(self.io_err("publishing", e)),
        }
    }

    /// `renameat2(RENAME_NOREPLACE)`, else `linkat` and `unlinkat` where the filesystem has
    /// no such rename. Either fails with `EEXIST` rather than replace a file.
    fn rename_no_replace(&self, from: &str) -> nix::Result<()> {
        match rename_noreplace(&self.dirfd, from, &self.name) {
            Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {}
            other => return other,
        }
        let none = nix::fcntl::AtFlags::empty();
        linkat(&self.dirfd, from, &self.dirfd, self.name.as_str(), none)?;
        unlinkat(&self.dirfd, from, UnlinkatFlags::NoRemoveDir)
    }

    fn sync_dir(&self) -> Result<(), JobError> {
        fsync(&self.dirfd).map_err(|e| self.io_err("syncing the directory of", e))
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn rename_noreplace(dir: &OwnedFd, from: &str, to: &str) -> nix::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags};
    renameat2(dir, from, dir, to, RenameFlags::RENAME_NOREPLACE)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn rename_noreplace(_: &OwnedFd, _: &str, _: &str) -> nix::Result<()> {
    Err(Errno::ENOSYS)
}

/// Parses `<run>.<16 hex>`, the part of a partial's name after its prefix.
fn parse_partial(rest: &str) -> Option<RunId> {
    let (run, random) = rest.split_once('.')?;
    let hex = |c: u8| matches!(c, b'0'..=b'9' | b'a'..=b'f');
    (random.len() == 16 && random.bytes().all(hex))
        .then(|| RunId::parse(run))
        .flatten()
}

/// How long ago a Unix time was (zero for the future).
fn age(mtime: i64) -> Duration {
    let then = UNIX_EPOCH + Duration::from_secs(mtime.max(0) as u64);
    SystemTime::now().duration_since(then).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names() {
        let d = tempfile::tempdir().unwrap();
        let dest = Dest::open(&d.path().join("out.tar")).unwrap();
        let n = dest.partial_name();
        let rest = n.strip_prefix(".out.tar.offbox-partial.").unwrap();
        assert_eq!(parse_partial(rest), Some(RunId::current()));
        for bad in [
            "",
            "4711-a880fd02",
            "4711-a880fd02.0123",
            "x.0123456789abcdef",
        ] {
            assert_eq!(parse_partial(bad), None, "{bad}");
        }
        assert!(Dest::open(Path::new("/")).is_err());
    }

    #[test]
    fn named_fallback_publishes_without_replacing() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let dest = Dest::open(&out).unwrap();
        let name = dest.partial_name();
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
        let fd = openat(
            &dest.dirfd,
            name.as_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        );
        let tmp = dest.temp(fd.unwrap(), Some(name.clone()));
        (&tmp.file).write_all(b"new").unwrap();
        fs::write(&out, b"old").unwrap();
        assert!(dest.publish(tmp, false).is_err());
        assert_eq!(fs::read(&out).unwrap(), b"old", "kept");
        assert!(
            !d.path().join(&name).exists(),
            "the refused temporary is removed"
        );
        fs::remove_file(&out).unwrap();
        let fd = openat(
            &dest.dirfd,
            name.as_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        );
        let tmp = dest.temp(fd.unwrap(), Some(name));
        (&tmp.file).write_all(b"new").unwrap();
        dest.publish(tmp, false).unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"new");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
