//! Run ids: who wrote a temporary file. offbox puts the id of the run (its process id and
//! the machine's boot id) into the name of every temporary it leaves while it works, so that
//! a later run can tell the leftovers of a dead run from the files of one still in progress.
//!
//! A run is alive when it ran on this boot and its process still exists. A process id that
//! the kernel reused for an unrelated process makes a dead run look alive: callers treat
//! "alive" as "keep", never as "delete", so that error only delays a cleanup.

use std::fmt;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Where the kernel publishes the id of the current boot.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// Hex digits of the boot id kept in names (enough to tell boots apart).
const BOOT_LEN: usize = 8;

/// The id of one run: `<pid>-<boot>`, for example `4711-a880fd02`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunId {
    /// The process id.
    pub pid: u32,
    /// The first hex digits of the boot id (`00000000` when unknown).
    pub boot: String,
}

impl RunId {
    /// This process's run id.
    pub fn current() -> RunId {
        RunId {
            pid: std::process::id(),
            boot: boot_id(),
        }
    }

    /// Parses `<pid>-<boot>`; `None` for anything else.
    pub fn parse(s: &str) -> Option<RunId> {
        let (pid, boot) = s.split_once('-')?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit());
        let hex = |t: &str| t.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        if !digits(pid) || pid.starts_with('0') || boot.len() != BOOT_LEN || !hex(boot) {
            return None;
        }
        Some(RunId {
            pid: pid.parse().ok()?,
            boot: boot.to_string(),
        })
    }

    /// Whether this run may still be in progress: same boot, and its process exists.
    pub(crate) fn is_alive(&self) -> bool {
        let now = boot_id();
        let unknown = "0".repeat(BOOT_LEN);
        if self.boot != now && self.boot != unknown && now != unknown {
            return false;
        }
        pid_alive(self.pid)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.pid, self.boot)
    }
}

/// Whether a process with this id exists (a process we may not signal exists too).
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    !matches!(kill(Pid::from_raw(raw), None), Err(Errno::ESRCH))
}

/// The first hex digits of this boot's id, or zeros where the kernel does not tell it.
fn boot_id() -> String {
    let text = std::fs::read_to_string(BOOT_ID).unwrap_or_default();
    let hex: String = text
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .take(BOOT_LEN)
        .collect();
    if hex.len() == BOOT_LEN {
        hex
    } else {
        "0".repeat(BOOT_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_liveness() {
        let me = RunId::current();
        assert_eq!(RunId::parse(&me.to_string()), Some(me.clone()));
        assert!(me.is_alive(), "this process is alive");
        let other_boot = RunId {
            pid: me.pid,
            boot: if me.boot == "ffffffff" {
                "fffffffe".into()
            } else {
                "ffffffff".into()
            },
        };
        assert!(!other_boot.is_alive(), "a run of another boot is dead");
        for bad in [
            "",
            "12",
            "12-",
            "-a880fd02",
            "012-a880fd02",
            "12-A880FD02",
            "12-a880fd0",
        ] {
            assert_eq!(RunId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn dead_process_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        // Reaped: the id is free (until the kernel reuses it, which takes a while).
        assert!(!pid_alive(pid));
        assert!(!pid_alive(0));
    }
}
