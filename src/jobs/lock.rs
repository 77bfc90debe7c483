//! The appliance's run lock: one `backup create` or `prune` at a time on this appliance.
//!
//! The lock is an `flock(2)` on `run.lock` in the state directory (`service.state_dir`,
//! `$OFFBOX_STATE_DIR`; created with mode 0700 when missing). The kernel releases it when the
//! holder exits, however it exits, so a killed run never leaves a stale lock behind. The file
//! holds the holder's process id, for the message of a run that finds the lock taken.
//!
//! A [`RunLock`] is also the proof that the leftovers of this appliance's earlier uploads
//! are stale: while it is held no other backup or prune of this appliance runs, so
//! `jobs::target` removes temporaries only with a `&RunLock` in hand.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};

use super::JobError;

/// The lock file's name in the state directory.
pub(crate) const LOCK_FILE: &str = "run.lock";

/// How often a waiting run tries again.
const POLL: Duration = Duration::from_millis(200);

/// The held run lock; released when dropped (or when the process ends).
pub struct RunLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl std::fmt::Debug for RunLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLock").field("path", &self.path).finish()
    }
}

impl RunLock {
    /// Takes the lock in `state_dir`, waiting up to `wait` for another run to finish; after
    /// that, [`JobError::Busy`] (exit code 75). `on_wait` is called once, with the holder's
    /// process id, when the lock is taken and `wait` is not zero.
    pub(crate) fn acquire(
        state_dir: &Path,
        wait: Duration,
        on_wait: impl FnOnce(Option<u32>),
    ) -> Result<RunLock, JobError> {
        let path = state_dir.join(LOCK_FILE);
        let mut file = open_lock_file(state_dir, &path)?;
        let deadline = Instant::now() + wait;
        let mut on_wait = Some(on_wait);
        let mut locked = loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => break l,
                Err((f, Errno::EWOULDBLOCK)) => file = f,
                Err((_, e)) => {
                    return Err(JobError::Io {
                        what: format!("locking {}", path.display()),
                        err: io::Error::from(e),
                    })
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(busy(&path, wait));
            }
            if let Some(f) = on_wait.take() {
                f(holder(&path));
            }
            std::thread::sleep(POLL.min(deadline - now));
        };
        let mark = |f: &mut File| -> io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            writeln!(f, "{}", std::process::id())
        };
        mark(&mut locked).map_err(|err| JobError::Io {
            what: format!("writing {}", path.display()),
            err,
        })?;
        Ok(RunLock {
            _file: locked,
            path,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates the state directory (0700) if missing, and opens the lock file without
/// following a symlink.
fn open_lock_file(state_dir: &Path, path: &Path) -> Result<File, JobError> {
    let hint = "set [service] state_dir in the config (or OFFBOX_STATE_DIR) to a directory the offbox user may write, or create this one with mode 0700";
    if !state_dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|err| JobError::Io {
                what: format!("creating the state directory {}", state_dir.display()),
                err: io::Error::new(err.kind(), format!("{err}; {hint}")),
            })?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(path)
        .map_err(|err| JobError::Io {
            what: format!("opening the run lock {}", path.display()),
            err: io::Error::new(err.kind(), format!("{err}; {hint}")),
        })
}

/// The holder's process id, as it wrote it into the lock file.
fn holder(path: &Path) -> Option<u32> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn busy(path: &Path, waited: Duration) -> JobError {
    JobError::Busy {
        lock: path.display().to_string(),
        holder: holder(path).map_or("pid unknown".into(), |p| format!("pid {p}")),
        waited: if waited.is_zero() {
            String::new()
        } else {
            format!(" and did not release it within {} s", waited.as_secs())
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn second_holder_is_busy_until_the_first_drops() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state/offbox");
        let first = RunLock::acquire(&state, Duration::ZERO, |_| {}).unwrap();
        let mode = fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the state directory is private");
        // flock(2) locks belong to the open file description: a second open conflicts even
        // within one process, as it does between processes.
        let e = RunLock::acquire(&state, Duration::ZERO, |_| panic!("must not wait")).unwrap_err();
        assert_eq!(e.exit_code(), 75);
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("retry later"), "{msg}");
        let mut waited = None;
        let e = RunLock::acquire(&state, Duration::from_millis(300), |p| waited = Some(p));
        assert_eq!(e.unwrap_err().exit_code(), 75);
        assert_eq!(
            waited,
            Some(Some(std::process::id())),
            "told whom it waits for"
        );
        drop(first);
        let again = RunLock::acquire(&state, Duration::ZERO, |_| {}).unwrap();
        assert_eq!(again.path(), state.join(LOCK_FILE));
    }

    #[test]
    fn a_symlinked_lock_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join(LOCK_FILE)).unwrap();
        assert!(RunLock::acquire(d.path(), Duration::ZERO, |_| {}).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
    }
}
