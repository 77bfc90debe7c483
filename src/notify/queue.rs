//! The queue of undelivered notifications: `STATE_DIR/notify-queue/`, one JSON file per
//! message per channel, written atomically with mode 0600. File names start with the time
//! they were queued, so listing them sorted gives the order to retry them in.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::notifier::PendingMessage;
use super::store::{ordered_name, write_atomic};
use super::Event;

/// The queue directory under the state directory.
pub const QUEUE_DIR: &str = "notify-queue";

/// One queued message: an event waiting for one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueuedMessage {
    /// The channel id (`email`, `syslog+tcp://HOST:PORT`).
    pub channel: String,
    /// The event, rendered again when it is sent (with its original time).
    pub event: Event,
    /// Whether it is a reminder.
    pub reminder: bool,
    /// Unix seconds when it was queued.
    pub queued_at: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last error.
    pub last_error: String,
}

impl QueuedMessage {
    /// A message that failed once with `err`.
    pub fn new(channel: &str, event: &Event, reminder: bool, now: i64, err: &str) -> Self {
        QueuedMessage {
            channel: channel.to_string(),
            event: event.clone(),
            reminder,
            queued_at: now,
            attempts: 1,
            last_error: err.to_string(),
        }
    }

    /// Its line in [`super::Pending`].
    pub fn pending(&self) -> PendingMessage {
        PendingMessage {
            channel: self.channel.clone(),
            event: self.event.kind.id(),
            at: self.event.at,
            queued_at: self.queued_at,
            attempts: self.attempts,
            last_error: self.last_error.clone(),
        }
    }
}

/// The queue directory of one state directory.
pub(crate) struct Queue {
    dir: PathBuf,
}

impl Queue {
    /// The queue in `state_dir` (created on the first push).
    pub fn new(state_dir: &Path) -> Queue {
        Queue {
            dir: state_dir.join(QUEUE_DIR),
        }
    }

    /// Adds a message.
    pub fn push(&self, msg: &QueuedMessage) -> std::io::Result<()> {
        let path = self.dir.join(format!("{}.json", ordered_name()));
        write_atomic(&path, &serde_json::to_vec_pretty(msg)?)
    }

    /// Rewrites a message in place (after another failed attempt).
    pub fn update(&self, path: &Path, msg: &QueuedMessage) -> std::io::Result<()> {
        write_atomic(path, &serde_json::to_vec_pretty(msg)?)
    }

    /// Removes a delivered (or dropped) message.
    pub fn remove(&self, path: &Path) {
        if let Err(e) = fs::remove_file(path) {
            eprintln!(
                "offbox: warning: could not remove {} from the notification queue ({e}); it may be sent twice",
                path.display()
            );
        }
    }

    /// The messages, oldest first. A file that cannot be read is skipped with a warning
    /// (and left for an operator to look at).
    pub fn list(&self) -> Vec<(PathBuf, QueuedMessage)> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        paths.sort();
        paths
            .into_iter()
            .filter_map(|p| {
                match fs::read(&p)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                {
                    Ok(m) => Some((p, m)),
                    Err(e) => {
                        eprintln!(
                            "offbox: warning: skipping the unreadable queued notification {}: {e}; delete it if it is not needed",
                            p.display()
                        );
                        None
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::EventKind;
    use std::os::unix::fs::PermissionsExt;

    fn event(n: i64) -> Event {
        Event {
            kind: EventKind::BackupFailed,
            at: n,
            backup_kind: Some("system".into()),
            target: Some("dr-site".into()),
            archive: None,
            error_kind: Some("target.unreachable".into()),
            retry: Some("temporary".into()),
            message: format!("message {n}"),
        }
    }

    #[test]
    fn push_list_update_remove_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::new(dir.path());
        assert!(q.list().is_empty(), "a missing queue is empty");
        for n in 0..5 {
            q.push(&QueuedMessage::new(
                "email",
                &event(n),
                false,
                100 + n,
                "refused",
            ))
            .unwrap();
        }
        let listed = q.list();
        let ats: Vec<i64> = listed.iter().map(|(_, m)| m.event.at).collect();
        assert_eq!(ats, vec![0, 1, 2, 3, 4], "oldest first");
        for (p, _) in &listed {
            let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let qdir = fs::metadata(dir.path().join(QUEUE_DIR)).unwrap();
        assert_eq!(qdir.permissions().mode() & 0o777, 0o700);

        let (p, mut m) = listed[1].clone();
        m.attempts += 1;
        m.last_error = "timeout".into();
        q.update(&p, &m).unwrap();
        assert_eq!(q.list()[1].1.attempts, 2);
        assert_eq!(q.list()[1].1.pending().last_error, "timeout");

        q.remove(&listed[0].0);
        let ats: Vec<i64> = q.list().iter().map(|(_, m)| m.event.at).collect();
        assert_eq!(ats, vec![1, 2, 3, 4]);
        // No temporary files are left behind.
        let names: Vec<String> = fs::read_dir(dir.path().join(QUEUE_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n.ends_with(".json") && !n.starts_with('.')),
            "{names:?}"
        );
    }

    #[test]
    fn unreadable_file_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::new(dir.path());
        q.push(&QueuedMessage::new("email", &event(1), true, 1, "x"))
            .unwrap();
        fs::write(
            dir.path().join(QUEUE_DIR).join("0-garbage.json"),
            "{not json",
        )
        .unwrap();
        let l = q.list();
        assert_eq!(l.len(), 1);
        assert!(l[0].1.reminder);
    }
}
