//! The machine-readable side of [`JobError`]: its kind, a one-sentence hint, and for HSM and
//! TPM calls the failing function and return code, as `--json` prints them for schedulers
//! and notifiers. The policy itself is in the module doc of [`super::error`].

use serde::Serialize;

use super::error::{JobError, Policy};
use crate::keys::KeyError;
use crate::targets::{Retry, TargetError};

/// The `error` object of a failing command's `--json` output.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorReport {
    /// What kind of failure: see [`kind`].
    pub kind: String,
    /// `temporary` when running the command again, unchanged, may succeed; else `permanent`.
    pub retry: Retry,
    /// What to do, in one sentence.
    pub hint: &'static str,
    /// The full message (also on the error line).
    pub message: String,
    /// The process exit code.
    pub exit_code: i32,
    /// For a refusal by policy: which policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// For a failing HSM or TPM call: the function (`C_Login`, `TPM2_Unseal`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// For a failing HSM or TPM call: the return code (`CKR_PIN_INCORRECT`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_code: Option<String>,
}

impl ErrorReport {
    /// The report of `e`.
    pub fn of(e: &JobError) -> ErrorReport {
        let call = match e {
            JobError::Key(k) => k.call(),
            _ => None,
        };
        let (function, return_code) = call.map_or((None, None), |(f, r)| (Some(f), Some(r)));
        ErrorReport {
            kind: kind(e),
            retry: e.retry(),
            hint: hint(e),
            message: e.to_string(),
            exit_code: e.exit_code(),
            policy: match e {
                JobError::Refused { policy, .. } => Some(*policy),
                JobError::NeedsConfirmation(_) => Some(Policy::NeedsConfirmation),
                _ => None,
            },
            function,
            return_code,
        }
    }
}

/// `config`, `usage`, `io`, `integrity`, `signature`, `key`, `busy`, `notify`, or
/// `target.<what>`.
pub fn kind(e: &JobError) -> String {
    match e {
        JobError::Config(_) => "config",
        JobError::Refused { .. }
        | JobError::NeedsConfirmation(_)
        | JobError::WrongKind(_)
        | JobError::NoSources
        | JobError::NoRecoveryKey
        | JobError::CeremonyNeedsSigningKey(_) => "usage",
        JobError::Pack(_) | JobError::Unpack(_) | JobError::Export(_) | JobError::Io { .. } => "io",
        JobError::Integrity(_) | JobError::Key(KeyError::SlotMoved { .. }) => "integrity",
        JobError::Signature(_) => "signature",
        JobError::Key(_) | JobError::DeviceSignature(_) => "key",
        JobError::Busy { .. } => "busy",
        JobError::Notify(_) => "notify",
        JobError::Partial { kind, .. } => return kind.clone(),
        JobError::Target { err, .. } => return format!("target.{}", target_kind(err)),
    }
    .to_string()
}

fn target_kind(e: &TargetError) -> &'static str {
    match e {
        TargetError::Invalid { .. } | TargetError::NotBuilt { .. } => "invalid",
        TargetError::Refused(_) => "self_target",
        TargetError::Unreachable { .. } => "unreachable",
        TargetError::Timeout { .. } => "timeout",
        TargetError::Auth { .. } | TargetError::Credentials { .. } => "credentials",
        TargetError::HostKeyUnknown { .. } | TargetError::HostKeyMismatch { .. } => "host_key",
        TargetError::NoSpace { .. } => "full",
        TargetError::Permission { .. } => "permission",
        TargetError::NotFound { .. } => "not_found",
        TargetError::NoDirectory { .. } => "no_directory",
        TargetError::Exists { .. } => "exists",
        TargetError::Locked { .. } => "locked",
        TargetError::Io { .. } => "io",
    }
}

/// What to do, in one sentence.
pub fn hint(e: &JobError) -> &'static str {
    match e {
        JobError::Config(_) => "fix the named key in the config file",
        JobError::Refused { .. } | JobError::NeedsConfirmation(_) => {
            "read the message: it says how to ask for this explicitly"
        }
        JobError::WrongKind(_) | JobError::NoSources => "change the command line",
        JobError::NoRecoveryKey | JobError::CeremonyNeedsSigningKey(_) => {
            "run the key ceremonies in order (docs/ceremonies.md)"
        }
        JobError::Pack(_) | JobError::Unpack(_) | JobError::Export(_) | JobError::Io { .. } => {
            "fix the named path, file or command"
        }
        JobError::Integrity(_) | JobError::Key(KeyError::SlotMoved { .. }) => {
            "do not trust this file; restore from another copy"
        }
        JobError::Signature(_) => {
            "do not trust this archive; trust another appliance's key only with --public-key FILE or its custodians' shares"
        }
        JobError::Key(_) | JobError::DeviceSignature(_) => {
            "check the HSM or TPM, the PIN file and `offbox keys status`; archives also open with the recovery shares"
        }
        JobError::Busy { .. } => "retry later, or pass --wait SECS",
        JobError::Partial { .. } => {
            "read each failure above (or `offbox status`): each says what to do"
        }
        JobError::Notify(_) => {
            "fix the [notify] setting the message names, or start the server; then run `offbox notify test` again"
        }
        JobError::Target { err, .. } => target_hint(err),
    }
}

fn target_hint(e: &TargetError) -> &'static str {
    match e {
        TargetError::Invalid { .. } | TargetError::NotBuilt { .. } => {
            "fix the target URL or its [targets.NAME] table"
        }
        TargetError::Refused(_) => "choose a target that is not on this appliance",
        TargetError::Unreachable { .. } | TargetError::Timeout { .. } => {
            "retry later; check the network and that the server runs"
        }
        TargetError::Auth { .. } | TargetError::Credentials { .. } => {
            "fix the target's credentials (user, key or password file)"
        }
        TargetError::HostKeyUnknown { .. } | TargetError::HostKeyMismatch { .. } => {
            "check the server's host key and pin it with `offbox target accept-host-key`"
        }
        TargetError::NoSpace { .. } => "free space on the target or run `offbox prune`",
        TargetError::Permission { .. } => "give the backup user write access on the target",
        TargetError::NotFound { .. } => "check the name with `offbox backup list --to TARGET`",
        TargetError::NoDirectory { .. } => {
            "create the target directory on the server (the message says how), or fix the URL"
        }
        TargetError::Exists { .. } => "nothing was overwritten; run the backup again",
        TargetError::Locked { .. } => {
            "the archive is under Object Lock; it can be deleted after the date named"
        }
        TargetError::Io { retry, .. } => match retry {
            Retry::Temporary => "retry later; check the server's logs if it persists",
            Retry::Permanent => "check the server's logs and the target's configuration",
        },
    }
}
