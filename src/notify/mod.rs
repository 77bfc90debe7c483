//! Notifications: the events an operator must hear about (a lost target, a full target, a
//! failed backup, a key device failure, ...), delivered by email and to a SIEM by syslog, and
//! always to the local journal.
//!
//! Layering: `notify` sits beside `jobs` (it reads the config and the state directory; it
//! never opens a key device or a target). Callers report what they saw:
//! - [`Notifier::emit`] for one-off events (backup failed, target full, integrity failure);
//! - [`Notifier::condition`] for states that last (target lost, capacity low, stale): an
//!   event is sent on the transition into the state, a reminder after
//!   `notify.remind_after_hours` while it lasts, and one "recovered" event when it clears.
//!
//! A channel that cannot deliver never fails the caller: the message is queued in the state
//! directory and retried by the next `run` or `watch` ([`Notifier::flush_queue`]).
//!
//! Channels: `email` (SMTP with STARTTLS or implicit TLS, lettre), `syslog` (RFC 5424 over
//! UDP, TCP with RFC 6587 octet counting, or TLS per RFC 5425; or CEF), and the local journal.

use serde::{Deserialize, Serialize};

mod channels;
mod conditions;
pub mod config;
mod email;
pub mod format;
mod notifier;
mod queue;
mod store;
mod syslog;
mod tls;
mod validate;

pub use config::NotifyConfig;
pub use notifier::{
    ChannelResult, ChannelStatus, Delivery, Notifier, Pending, PendingMessage, RaisedCondition,
};
pub use queue::QUEUE_DIR;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The remote directory became unreachable (connect, auth, missing directory, read-only).
    TargetLost,
    /// Access to the remote directory came back.
    TargetRecovered,
    /// The target's free space is below the capacity rule (150% of /var by default).
    CapacityLow,
    /// The capacity rule holds again.
    CapacityOk,
    /// A run failed for lack of space.
    TargetFull,
    /// A kind's backup failed.
    BackupFailed,
    /// A kind's backup succeeded (syslog only by default).
    BackupSucceeded,
    /// The HSM or TPM is unreachable, a PIN is refused, or a KEK is missing.
    KeyDeviceFailure,
    /// A verification failed.
    IntegrityFailure,
    /// A kind has had no success for longer than its maximum age.
    Stale,
    /// A kind succeeded again after being stale.
    Fresh,
    /// `offbox selfcheck` found a problem that stops backups (config, key device, state
    /// directory, a target a retry cannot fix).
    SelfcheckFailed,
    /// `offbox selfcheck` found offbox degraded: it can back up, but something needs
    /// attention (a target unreachable for now, a stale kind, a loose PIN file mode).
    SelfcheckDegraded,
    /// `offbox notify test`.
    Test,
}

impl EventKind {
    /// The event id in messages and structured data, e.g. `target_lost`.
    pub fn id(self) -> &'static str {
        match self {
            EventKind::TargetLost => "target_lost",
            EventKind::TargetRecovered => "target_recovered",
            EventKind::CapacityLow => "capacity_low",
            EventKind::CapacityOk => "capacity_ok",
            EventKind::TargetFull => "target_full",
            EventKind::BackupFailed => "backup_failed",
            EventKind::BackupSucceeded => "backup_succeeded",
            EventKind::KeyDeviceFailure => "key_device_failure",
            EventKind::IntegrityFailure => "integrity_failure",
            EventKind::Stale => "stale",
            EventKind::Fresh => "fresh",
            EventKind::SelfcheckFailed => "selfcheck_failed",
            EventKind::SelfcheckDegraded => "selfcheck_degraded",
            EventKind::Test => "test",
        }
    }
}

/// One event, with what a SIEM rule or an operator needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// Unix seconds.
    pub at: i64,
    /// The backup kind (`system`, `secrets`, `videos`), when it concerns one.
    pub backup_kind: Option<String>,
    /// The target's name or URL (without secrets), when it concerns one.
    pub target: Option<String>,
    /// The archive name, when it concerns one.
    pub archive: Option<String>,
    /// The error kind (`JobError::kind`, e.g. `target.unreachable`), for failures.
    pub error_kind: Option<String>,
    /// `temporary` or `permanent`, for failures.
    pub retry: Option<String>,
    /// One human sentence: what happened and what to do.
    pub message: String,
}
