//! The service state: what `run` and `watch` saw, for the next run (is a kind due? how big
//! was its last archive?) and for `offbox status`.
//!
//! One JSON file, `service-state.json` in the state directory, written atomically (a
//! temporary file with mode 0600, synced, renamed over the old one). Every writer does its
//! read-modify-write under an `flock(2)` on `service-state.lock`, so that a `watch` during
//! a long `run` loses nothing (the run lock is not taken by `watch`). A file that does not
//! parse is reported, kept beside as `service-state.json.corrupt`, and replaced by a fresh
//! state: never a crash.
//!
//! ```json
//! {"version":1,
//!  "kinds":{"system":{"dr-site":{"first_seen":…,"last_attempt":…,"failures_in_a_row":0,
//!     "last_success":{"at":…,"archive":"offbox-…obx","bytes":…,"duration_secs":…},
//!     "last_failure":{"at":…,"error_kind":"target.full","retry":"permanent","message":"…"}}}},
//!  "targets":{"dr-site":{"reachable":true,"since":…,"checked_at":…,"error":null,
//!     "capacity":{…}}},
//!  "measured":{"path":"/var","bytes":…,"at":…}}
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::capacity::{Capacity, Measured};
use super::JobError;

/// The state file's name in the state directory.
pub(crate) const STATE_FILE: &str = "service-state.json";
/// The lock file serializing its writers.
pub(crate) const STATE_LOCK: &str = "service-state.lock";
/// The current layout version.
pub(crate) const STATE_VERSION: u32 = 1;

/// The whole state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Layout version.
    #[serde(default)]
    pub version: u32,
    /// Per kind, per target name.
    #[serde(default)]
    pub kinds: BTreeMap<String, BTreeMap<String, KindState>>,
    /// Per target name.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetState>,
    /// The last measurement of the capacity rule's path.
    #[serde(default)]
    pub measured: Option<Measured>,
    /// Problems met reading the file (corrupt, unreadable), for the caller to report.
    #[serde(skip)]
    pub notes: Vec<String>,
}

/// One kind on one target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KindState {
    /// Unix seconds when this kind and target were first scheduled (the start of the
    /// stale clock before a first success).
    pub first_seen: i64,
    /// Unix seconds of the last attempt.
    pub last_attempt: Option<i64>,
    /// The last success.
    pub last_success: Option<Success>,
    /// The last failure (kept after a later success, for the record).
    pub last_failure: Option<Failure>,
    /// Failed attempts since the last success (0: the last attempt succeeded).
    #[serde(default)]
    pub failures_in_a_row: u32,
}

impl KindState {
    /// Whether the last attempt failed.
    pub fn failing(&self) -> bool {
        self.failures_in_a_row > 0
    }

    /// Records a success.
    pub fn succeeded(&mut self, attempt: i64, success: Success) {
        self.last_attempt = Some(attempt);
        self.last_success = Some(success);
        self.failures_in_a_row = 0;
    }

    /// Records a failure.
    pub fn failed(&mut self, attempt: i64, failure: Failure) {
        self.last_attempt = Some(attempt);
        self.last_failure = Some(failure);
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
    }
}

/// A successful backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Success {
    /// Unix seconds when it finished.
    pub at: i64,
    /// The archive name published.
    pub archive: String,
    /// Archive bytes written.
    pub bytes: u64,
    /// Wall time in seconds.
    pub duration_secs: f64,
}

/// A failed backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// Unix seconds when it failed.
    pub at: i64,
    /// `JobError::kind()`: `target.full`, `key`, …
    pub error_kind: String,
    /// `temporary` or `permanent`.
    pub retry: String,
    /// The message, which says what to do.
    pub message: String,
}

/// What was last seen of a target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetState {
    /// Whether the last check reached it (connect, and for `watch` the write probe).
    pub reachable: bool,
    /// Unix seconds since it has been in this state (reachable since / lost since).
    pub since: i64,
    /// Unix seconds of the last check.
    pub checked_at: i64,
    /// Why it was not reachable.
    pub error: Option<String>,
    /// The last capacity figures.
    pub capacity: Option<Capacity>,
}

impl State {
    fn noted(note: String) -> State {
        State {
            notes: vec![note],
            ..State::default()
        }
    }

    /// Records that `target` was (or was not) reached at `now`.
    pub(crate) fn target_seen(
        &mut self,
        target: &str,
        reachable: bool,
        error: Option<String>,
        now: i64,
    ) {
        let t = self.targets.entry(target.to_string()).or_default();
        if t.checked_at == 0 || t.reachable != reachable {
            t.since = now;
        }
        t.reachable = reachable;
        t.checked_at = now;
        t.error = error;
    }

    /// The state of `kind` on `target`, created (first seen `now`) when missing.
    pub(crate) fn kind_mut(&mut self, kind: &str, target: &str, now: i64) -> &mut KindState {
        self.kinds
            .entry(kind.to_string())
            .or_default()
            .entry(target.to_string())
            .or_insert_with(|| KindState {
                first_seen: now,
                ..KindState::default()
            })
    }

    /// The state of `kind` on `target`, if any.
    pub fn kind(&self, kind: &str, target: &str) -> Option<&KindState> {
        self.kinds.get(kind)?.get(target)
    }
}

/// The state file of a state directory.
#[derive(Debug, Clone)]
pub(crate) struct StateFile {
    dir: PathBuf,
}

impl StateFile {
    /// The state file in `state_dir`.
    pub fn new(state_dir: &Path) -> StateFile {
        StateFile {
            dir: state_dir.to_path_buf(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Reads the state without locking (for `status`). A missing file is an empty state; a
    /// corrupt one is read as empty, with a note in [`State::notes`] (the next writer
    /// replaces it).
    pub fn read(&self) -> State {
        self.load(false)
    }

    /// Read-modify-write under the state lock: `f` changes the state, which is then written
    /// atomically. Returns what `f` returned.
    pub fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, JobError> {
        let _held = self.lock()?;
        let mut state = self.load(true);
        let out = f(&mut state);
        state.version = STATE_VERSION;
        self.write(&state).map_err(|err| JobError::Io {
            what: format!("writing the service state {}", self.path().display()),
            err,
        })?;
        Ok(out)
    }

    fn lock(&self) -> Result<Flock<File>, JobError> {
        let io_err = |what: &str, err: io::Error| {
            JobError::Io {
            what: format!("{what} {}", self.dir.display()),
            err: io::Error::new(err.kind(), format!("{err}; set [service] state_dir (or OFFBOX_STATE_DIR) to a directory the offbox user may write")),
        }
        };
        if !self.dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .map_err(|e| io_err("creating the state directory", e))?;
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(self.dir.join(STATE_LOCK))
            .map_err(|e| io_err("opening the state lock in", e))?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err("locking the state in", io::Error::from(e)))
    }

    fn load(&self, keep_corrupt: bool) -> State {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return State::default(),
            Err(e) => {
                return State::noted(format!(
                    "cannot read the service state {} ({e}); starting from an empty state",
                    path.display()
                ))
            }
        };
        match serde_json::from_str::<State>(&text) {
            Ok(s) => s,
            Err(e) => {
                let aside = self.dir.join(format!("{STATE_FILE}.corrupt"));
                if keep_corrupt {
                    let _ = fs::rename(&path, &aside);
                }
                State::noted(format!(
                    "the service state {} is corrupt ({e}); it is replaced by a fresh state{}: the last successes are forgotten, so every kind is due",
                    path.display(),
                    if keep_corrupt { format!(" and kept as {}", aside.display()) } else { String::new() }
                ))
            }
        }
    }

    fn write(&self, state: &State) -> io::Result<()> {
        let tmp = self
            .dir
            .join(format!(".{STATE_FILE}.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&tmp)?;
        let text = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        let done = f
            .write_all(&text)
            .and_then(|()| f.sync_all())
            .and_then(|()| fs::rename(&tmp, self.path()));
        if done.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        done?;
        // The rename is durable once the directory is synced.
        File::open(&self.dir).and_then(|d| d.sync_all())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn updates_are_atomic_private_and_survive_corruption() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("state");
        let sf = StateFile::new(&dir);
        assert_eq!(sf.read(), State::default());
        sf.update(|s| {
            s.kind_mut("system", "nas", 10).last_attempt = Some(11);
            s.target_seen("nas", true, None, 11);
        })
        .unwrap();
        let mode = fs::metadata(sf.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let s = sf.read();
        assert_eq!(s.version, STATE_VERSION);
        assert_eq!(s.kind("system", "nas").unwrap().first_seen, 10);
        assert_eq!(s.targets["nas"].since, 11);
        // Same state again: "since" keeps the start of the state.
        sf.update(|s| s.target_seen("nas", true, None, 20)).unwrap();
        assert_eq!(sf.read().targets["nas"].since, 11);
        sf.update(|s| s.target_seen("nas", false, Some("down".into()), 30))
            .unwrap();
        assert_eq!(sf.read().targets["nas"].since, 30);
        fs::write(sf.path(), b"{not json").unwrap();
        let s = sf.read();
        assert!(s.kinds.is_empty(), "read as empty, not a crash");
        assert!(s.notes[0].contains("is corrupt"), "{:?}", s.notes);
        let notes = sf
            .update(|s| {
                s.target_seen("nas", true, None, 40);
                s.notes.clone()
            })
            .unwrap();
        assert!(notes[0].contains("kept as"), "{notes:?}");
        assert_eq!(sf.read().targets["nas"].since, 40);
        assert_eq!(
            fs::read(dir.join(format!("{STATE_FILE}.corrupt"))).unwrap(),
            b"{not json"
        );
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "no temporary left");
    }

    #[test]
    fn failing_means_the_last_attempt_failed() {
        let f = |at| Failure {
            at,
            error_kind: "key".into(),
            retry: "permanent".into(),
            message: String::new(),
        };
        let s = |at| Success {
            at,
            archive: String::new(),
            bytes: 0,
            duration_secs: 0.0,
        };
        let mut k = KindState::default();
        assert!(!k.failing());
        k.failed(5, f(5));
        k.failed(5, f(5));
        assert_eq!((k.failing(), k.failures_in_a_row), (true, 2));
        k.succeeded(5, s(5));
        assert!(!k.failing(), "in the same second as the failure");
        k.failed(7, f(7));
        assert!(k.failing());
        assert_eq!(k.last_success, Some(s(5)));
    }
}
