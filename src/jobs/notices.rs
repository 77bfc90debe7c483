//! What `run` and `watch` tell the operator, as events: the [`Notices`] sink they report
//! to (the CLI passes a [`Notifier`]; tests pass a recorder), and the mapping of a failed
//! backup to its event.
//!
//! | failure (`JobError::kind()`) | event |
//! |---|---|
//! | `target.full` | `target_full` |
//! | `key` | `key_device_failure` |
//! | `integrity`, `signature` | `integrity_failure` |
//! | any other | `backup_failed` |
//!
//! Lasting states go through [`Notices::condition`], keyed as in [`key`]: one event on
//! the transition in, reminders while it lasts, one on the transition out.

use super::capacity::Capacity;
use super::state::State;
use super::{due, JobError};
use crate::config::Config;
use crate::notify::{Event, EventKind, Notifier};

/// Where events go.
pub trait Notices {
    /// A one-off event.
    fn emit(&mut self, event: Event);
    /// A lasting condition (see [`Notifier::condition`]); whether a message was sent.
    fn condition(&mut self, key: &str, active: bool, raised: Event, cleared: Event) -> bool;
    /// Retries the queued messages; how many were delivered.
    fn flush(&mut self) -> usize;
}

impl Notices for Notifier {
    fn emit(&mut self, event: Event) {
        Notifier::emit(self, event);
    }

    fn condition(&mut self, key: &str, active: bool, raised: Event, cleared: Event) -> bool {
        Notifier::condition(self, key, active, raised, cleared).is_some()
    }

    fn flush(&mut self) -> usize {
        self.flush_queue()
    }
}

/// Condition keys.
pub mod key {
    /// The target cannot be reached or written.
    pub fn lost(target: &str) -> String {
        format!("target:{target}:lost")
    }
    /// The target is below the capacity rule.
    pub fn capacity(target: &str) -> String {
        format!("target:{target}:capacity")
    }
    /// A kind has had no success on a target for longer than its maximum age.
    pub fn stale(kind: &str, target: &str) -> String {
        format!("kind:{kind}:{target}:stale")
    }
}

/// An event about `target` (and `backup_kind`), at `at`.
pub fn event(
    kind: EventKind,
    at: i64,
    backup_kind: Option<&str>,
    target: &str,
    message: String,
) -> Event {
    Event {
        kind,
        at,
        backup_kind: backup_kind.map(str::to_string),
        target: Some(target.to_string()),
        archive: None,
        error_kind: None,
        retry: None,
        message,
    }
}

/// The event of a failed backup of `kind` to `target` (see the module doc).
pub(crate) fn failure_event(e: &JobError, at: i64, kind: &str, target: &str) -> Event {
    let error_kind = e.kind();
    let event_kind = match error_kind.as_str() {
        "target.full" => EventKind::TargetFull,
        "key" => EventKind::KeyDeviceFailure,
        "integrity" | "signature" => EventKind::IntegrityFailure,
        _ => EventKind::BackupFailed,
    };
    Event {
        error_kind: Some(error_kind),
        retry: Some(retry_name(e)),
        ..event(
            event_kind,
            at,
            Some(kind),
            target,
            format!("the {kind} backup to {target} failed: {e}"),
        )
    }
}

/// `temporary` or `permanent`.
pub(crate) fn retry_name(e: &JobError) -> String {
    match e.retry() {
        crate::targets::Retry::Temporary => "temporary",
        crate::targets::Retry::Permanent => "permanent",
    }
    .to_string()
}

/// Whether a failure to connect to a target or to write its probe means that the target's
/// directory cannot be reached or written: the `target_lost` condition (connect, timeout,
/// authentication, host key, missing directory, permission, protocol I/O). Not lost: a
/// full target (it has its own events) and a target the config names wrongly
/// (`target.invalid`: fix the config).
pub(crate) fn is_access_failure(e: &JobError) -> bool {
    let kind = e.kind();
    kind.starts_with("target.") && !matches!(kind.as_str(), "target.full" | "target.invalid")
}

/// Raises or clears the `stale` condition of every scheduled kind on every target.
pub(crate) fn stale_conditions(cfg: &Config, state: &State, notices: &mut dyn Notices, now: i64) {
    for s in due::scheduled(cfg) {
        let kind = s.run_kind.name;
        for t in &s.targets {
            let Some(st) = state.kind(kind, t) else {
                continue;
            };
            let since = due::stale(s.sched, st, now);
            let what = if st.last_success.is_some() {
                "no successful backup"
            } else {
                "no successful backup yet, since it was scheduled"
            };
            let raised = event(
                EventKind::Stale,
                now,
                Some(kind),
                t,
                format!(
                    "the {kind} backup to {t} is stale: {what} for more than {} hours (max_age_hours); see `offbox status` for the last failure",
                    s.sched.max_age_hours()
                ),
            );
            let cleared = event(
                EventKind::Fresh,
                now,
                Some(kind),
                t,
                format!("the {kind} backup to {t} succeeded again"),
            );
            notices.condition(&key::stale(kind, t), since.is_some(), raised, cleared);
        }
    }
}

/// Raises (with `lost`, the failure) or clears the `target_lost` condition of `target`.
pub(crate) fn lost_condition(
    notices: &mut dyn Notices,
    target: &str,
    lost: Option<&JobError>,
    now: i64,
) {
    let mut raised = event(
        EventKind::TargetLost,
        now,
        None,
        target,
        format!(
            "the backup target {target} cannot be reached or written: {}",
            lost.map_or(String::new(), |e| e.to_string())
        ),
    );
    if let Some(e) = lost {
        raised.error_kind = Some(e.kind());
        raised.retry = Some(retry_name(e));
    }
    let cleared = event(
        EventKind::TargetRecovered,
        now,
        None,
        target,
        format!("the backup target {target} is reachable and writable again"),
    );
    notices.condition(&key::lost(target), lost.is_some(), raised, cleared);
}

/// Raises or clears the `capacity_low` condition of `target` (an unknown free space
/// changes nothing).
pub(crate) fn capacity_condition(notices: &mut dyn Notices, target: &str, c: &Capacity, now: i64) {
    let Some(ok) = c.ok else { return };
    let raised = event(
        EventKind::CapacityLow,
        now,
        None,
        target,
        format!(
            "capacity low on {target}: {}",
            c.warning().unwrap_or_default()
        ),
    );
    let cleared = event(
        EventKind::CapacityOk,
        now,
        None,
        target,
        format!(
            "the capacity of {target} meets the rule again: {}",
            c.figures()
        ),
    );
    notices.condition(&key::capacity(target), !ok, raised, cleared);
}
