//! Lasting conditions (target lost, capacity low, stale): which are raised, since when, and
//! when they were last sent. Kept in `STATE_DIR/notify-conditions.json`, written atomically,
//! so that a run or a watch notifies on transitions only, whatever process noticed them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::notifier::RaisedCondition;
use super::store::write_atomic;
use super::{Event, EventKind};

/// The state file under the state directory.
pub(crate) const CONDITIONS_FILE: &str = "notify-conditions.json";

/// What a call to [`Conditions::step`] decided to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Nothing (no change, or no reminder due yet).
    None,
    /// The condition started: send the raising event.
    Raised,
    /// It lasts and a reminder is due; it was raised at `since`.
    Reminder {
        /// Unix seconds when it was raised.
        since: i64,
    },
    /// It ended: send the clearing event.
    Cleared,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    event: EventKind,
    since: i64,
    last_sent: i64,
    message: String,
}

/// The raised conditions, by key.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Conditions {
    raised: BTreeMap<String, State>,
}

impl Conditions {
    /// Reads the state; a missing file means nothing is raised. An unreadable one is
    /// reported and treated as empty (at worst one event is repeated).
    pub fn load(state_dir: &Path) -> Conditions {
        let path = state_dir.join(CONDITIONS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                eprintln!("offbox: warning: {} is unreadable ({e}); raised conditions are forgotten and may be notified again", path.display());
                Conditions::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Conditions::default(),
            Err(e) => {
                eprintln!("offbox: warning: cannot read {} ({e}); check the state directory's owner and mode", path.display());
                Conditions::default()
            }
        }
    }

    /// Writes the state atomically.
    pub(crate) fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        write_atomic(
            &state_dir.join(CONDITIONS_FILE),
            &serde_json::to_vec_pretty(self)?,
        )
    }

    /// Records that `key` is `active` at `now` and says what to send. `remind_secs` is the
    /// reminder interval (0: none).
    pub fn step(
        &mut self,
        key: &str,
        active: bool,
        raised: &Event,
        now: i64,
        remind_secs: i64,
    ) -> Transition {
        match (active, self.raised.get_mut(key)) {
            (true, None) => {
                self.raised.insert(
                    key.to_string(),
                    State {
                        event: raised.kind,
                        since: now,
                        last_sent: now,
                        message: raised.message.clone(),
                    },
                );
                Transition::Raised
            }
            (true, Some(s)) if remind_secs > 0 && now - s.last_sent >= remind_secs => {
                s.last_sent = now;
                Transition::Reminder { since: s.since }
            }
            (true, Some(_)) | (false, None) => Transition::None,
            (false, Some(_)) => {
                self.raised.remove(key);
                Transition::Cleared
            }
        }
    }

    /// The raised conditions, oldest first.
    pub fn raised(&self) -> Vec<RaisedCondition> {
        let mut v: Vec<RaisedCondition> = self
            .raised
            .iter()
            .map(|(k, s)| RaisedCondition {
                key: k.clone(),
                event: s.event.id(),
                since: s.since,
                last_sent: s.last_sent,
                message: s.message.clone(),
            })
            .collect();
        v.sort_by_key(|c| (c.since, c.key.clone()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind) -> Event {
        Event {
            kind,
            at: 0,
            backup_kind: None,
            target: Some("backup".into()),
            archive: None,
            error_kind: Some("target.unreachable".into()),
            retry: Some("temporary".into()),
            message: "the target backup is unreachable".into(),
        }
    }

    #[test]
    fn transitions_raise_remind_clear() {
        let dir = tempfile::tempdir().unwrap();
        let lost = ev(EventKind::TargetLost);
        let k = "target:backup:lost";
        let step = |now, active| {
            let mut c = Conditions::load(dir.path());
            let t = c.step(k, active, &lost, now, 3600);
            c.save(dir.path()).unwrap();
            t
        };
        assert_eq!(step(0, false), Transition::None);
        assert_eq!(step(10, true), Transition::Raised);
        assert_eq!(step(20, true), Transition::None);
        assert_eq!(step(3609, true), Transition::None);
        assert_eq!(step(3610, true), Transition::Reminder { since: 10 });
        assert_eq!(step(3700, true), Transition::None);
        assert_eq!(step(7210, true), Transition::Reminder { since: 10 });
        let raised = Conditions::load(dir.path()).raised();
        assert_eq!(raised.len(), 1);
        assert_eq!((raised[0].since, raised[0].last_sent), (10, 7210));
        assert_eq!(raised[0].event, "target_lost");
        assert_eq!(step(7300, false), Transition::Cleared);
        assert_eq!(step(7400, false), Transition::None);
        assert!(Conditions::load(dir.path()).raised().is_empty());
    }

    #[test]
    fn no_reminders_when_interval_is_zero() {
        let mut c = Conditions::default();
        let lost = ev(EventKind::TargetLost);
        assert_eq!(c.step("k", true, &lost, 0, 0), Transition::Raised);
        assert_eq!(c.step("k", true, &lost, 1_000_000, 0), Transition::None);
    }

    #[test]
    fn corrupt_state_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONDITIONS_FILE), "][").unwrap();
        assert!(Conditions::load(dir.path()).raised().is_empty());
    }
}
