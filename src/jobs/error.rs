//! The error of a job, and the process exit code it maps to: offbox's error policy.
//!
//! Every failure keeps its type from where it happens up to the exit code, so that a
//! scheduler or a notifier knows **what kind of failure happened and whether a retry helps**.
//! The message always says what is wrong and what to do; `--json` adds the same as data
//! (`error.kind`, `error.retry`, `error.hint`, and for HSM/TPM calls the function and return
//! code).
//!
//! | variant | kind | exit | retry | what the operator does |
//! |---|---|---|---|---|
//! | `Config` | `config` | 1 | no | fix the named key in the config |
//! | `Refused`, `NeedsConfirmation`, `WrongKind`, `NoSources`, `NoRecoveryKey`, `CeremonyNeedsSigningKey` | `usage` (with the policy) | 1 | no | change the command line or run the named ceremony |
//! | `Pack`, `Unpack`, `Export`, `Io` | `io` | 1 | no | fix the named path, file or command |
//! | `Integrity`, `Signature`, `Key(SlotMoved)` | `integrity`, `signature` | 3 | no | do not trust the file; use another copy |
//! | `Key`, `DeviceSignature` | `key` | 4 | no | check the HSM/TPM, PIN, key versions; or use the recovery shares |
//! | `Target` unreachable, timeout, temporary I/O | `target.*` | 75 (EX_TEMPFAIL) | yes | retry later; check network and server |
//! | `Busy` | `busy` | 75 (EX_TEMPFAIL) | yes | retry later, or `--wait SECS` |
//! | `Target` full, credentials, host key, permission, self-target, not found, no directory, exists | `target.*` | 69 (EX_UNAVAILABLE) | no | fix the target (space, credentials, host key pin, rights, address, directory) |
//! | (a command line that does not parse: clap, before any job) | `usage` | 2 | no | fix the command line |
//! | `Target` invalid URL or table, transport not built | `target.invalid` | 1 | no | fix the URL or `[targets.NAME]` |
//! | `Partial` (`run`, `watch`: some kinds or targets failed) | the most severe failure's | its | its | read each failure; `offbox status` |

use thiserror::Error;

use crate::config::ConfigError;
use crate::format::FormatError;
use crate::keys::KeyError;
use crate::payload::pack::PackError;
use crate::payload::unpack::UnpackError;
use crate::targets::{Retry, TargetError};

/// Exit code of a target failure that a retry can fix (sysexits EX_TEMPFAIL), and of a run
/// that found the run lock taken.
pub(crate) const EXIT_TEMPFAIL: i32 = 75;
/// Exit code of a target failure that a retry cannot fix (sysexits EX_UNAVAILABLE): full,
/// credentials refused, host key not pinned, self-target.
pub(crate) const EXIT_TARGET: i32 = 69;

/// What a refusal by policy is about: the operator asked for something that offbox does
/// not do as asked. The message says how to ask for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// A destructive command without `--yes`.
    NeedsConfirmation,
    /// An archive to a local file (it would die with the appliance).
    LocalOutput,
    /// An archive or plaintext to a terminal.
    TerminalOutput,
    /// An output file that exists (no `--replace`).
    OutputExists,
    /// A ceremony that would replace a configured key.
    AlreadyConfigured,
    /// A ceremony into a directory that holds files.
    DirectoryNotEmpty,
    /// Typed shares with the archive on standard input.
    SharesNeedFiles,
    /// A host key fingerprint that does not match the one presented.
    FingerprintMismatch,
    /// Another invalid combination of arguments.
    Usage,
}

/// Why a job failed. The message says what to do; [`JobError::exit_code`] classifies it.
#[derive(Debug, Error)]
pub enum JobError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key could not be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The archive is malformed, truncated or tampered with.
    #[error(transparent)]
    Integrity(#[from] FormatError),
    /// The sources could not be packed.
    #[error(transparent)]
    Pack(PackError),
    /// The restore destination is unusable.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// A target (off-box storage) operation failed; [`TargetError::retry`] says whether a
    /// retry helps.
    #[error("{what} failed: {err}")]
    Target {
        /// What was being done.
        what: String,
        /// The target's error (boxed: it is large, and errors travel in every `Result`).
        err: Box<TargetError>,
    },
    /// A refusal by policy: see [`Policy`].
    #[error("{what} failed: {detail}")]
    Refused {
        /// What was asked.
        what: String,
        /// Which policy refused it.
        policy: Policy,
        /// Why, and how to ask for it.
        detail: String,
    },
    /// An I/O operation failed.
    #[error("{what} failed: {err}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        err: std::io::Error,
    },
    /// The archive holds another kind of payload than the command expects.
    #[error("{0}")]
    WrongKind(String),
    /// The backup would have no recovery slot.
    #[error("refusing to back up without a recovery slot: no recovery public key is configured, and an archive whose key is wrapped only by this appliance's HSM or TPM dies with the appliance. Run `offbox recovery init` (a key ceremony, see docs/ceremonies.md), or set recovery.allow_without_recovery = true to accept that risk explicitly")]
    NoRecoveryKey,
    /// Nothing to back up.
    #[error("no sources to back up: set backup.sources in the config or pass --source PATH")]
    NoSources,
    /// The secrets export failed or was empty. The text says what to check.
    #[error("the secrets export failed: {0}")]
    Export(String),
    /// A destructive command needs an explicit confirmation; the text says what it would do.
    #[error("{0}")]
    NeedsConfirmation(String),
    /// A recovery ceremony needs the appliance's signing keys.
    #[error("the recovery ceremony records this appliance's signing keys in the shares, so that break the glass can tell its archives from forged ones, but the HSM or TPM gave none ({0}); run `offbox keys init` first (docs/ceremonies.md: the order of the ceremonies)")]
    CeremonyNeedsSigningKey(String),
    /// The device produced a signature that does not verify under its own public key.
    #[error("the HSM or TPM produced a bad archive signature ({0}); the archive was not published. Check the signing key with `offbox keys status`, and recreate it with `offbox keys init --replace --yes` if it is damaged")]
    DeviceSignature(String),
    /// The archive's signature is missing, wrong, or made by an untrusted key.
    #[error(transparent)]
    Signature(#[from] crate::format::signature::SignatureError),
    /// `notify test`: a notification channel did not deliver; the text names each failed
    /// channel and what to check (exit code 1: a setting or the server is wrong).
    #[error("{0}")]
    Notify(String),
    /// `run` or `watch`: some kinds or targets failed (each was reported). The exit code,
    /// kind and retry class are those of the most severe failure
    /// (`jobs::run::exit_code`).
    #[error("{summary}")]
    Partial {
        /// Which failed, and where to read more.
        summary: String,
        /// The most severe failure's exit code.
        code: i32,
        /// Its kind (`JobError::kind()`).
        kind: String,
        /// Its retry class.
        retry: Retry,
    },
    /// Another offbox run of this appliance holds the run lock (exit code 75, EX_TEMPFAIL).
    #[error("busy; another offbox run holds the lock {lock} ({holder}){waited}; retry later, or pass --wait SECS to wait for it")]
    Busy {
        /// The lock file.
        lock: String,
        /// Who holds it: `pid N`, or `pid unknown`.
        holder: String,
        /// How long this run waited, for the message (empty when it did not wait).
        waited: String,
    },
}

impl JobError {
    /// The process exit code (see the module doc).
    pub fn exit_code(&self) -> i32 {
        match self {
            JobError::Integrity(_) | JobError::Signature(_) => 3,
            // A slot copied from another archive is a forgery, not a key problem.
            JobError::Key(KeyError::SlotMoved { .. }) => 3,
            JobError::Key(_) | JobError::DeviceSignature(_) => 4,
            JobError::Busy { .. } => EXIT_TEMPFAIL,
            JobError::Partial { code, .. } => *code,
            JobError::Target { err, .. } => match err.as_ref() {
                TargetError::Invalid { .. } | TargetError::NotBuilt { .. } => 1,
                e if e.retry() == Retry::Temporary => EXIT_TEMPFAIL,
                _ => EXIT_TARGET,
            },
            _ => 1,
        }
    }

    /// Whether running the same command again, unchanged, can succeed.
    pub fn retry(&self) -> Retry {
        match self {
            JobError::Target { err, .. } => err.retry(),
            JobError::Busy { .. } => Retry::Temporary,
            JobError::Partial { retry, .. } => *retry,
            _ => Retry::Permanent,
        }
    }

    /// A machine-readable kind: `config`, `usage`, `io`, `integrity`, `signature`, `key`,
    /// `busy`, or `target.<what>` (see [`super::error_kind`]).
    pub fn kind(&self) -> String {
        super::error_kind::kind(self)
    }

    /// What the operator should do, in one sentence.
    pub fn hint(&self) -> &'static str {
        super::error_kind::hint(self)
    }

    /// Wraps an I/O error, keeping an archive integrity failure and a target failure as such.
    pub fn io(what: impl Into<String>, err: std::io::Error) -> JobError {
        if let Some(f) = find_format_error(&err) {
            return JobError::Integrity(f.clone());
        }
        if TargetError::find(&err).is_some() {
            let inner = err
                .into_inner()
                .and_then(|b| b.downcast::<TargetError>().ok())
                .expect("checked above");
            return JobError::Target {
                what: what.into(),
                err: inner,
            };
        }
        JobError::Io {
            what: what.into(),
            err,
        }
    }

    /// A target failure while doing `what`.
    pub fn target(what: impl Into<String>, err: TargetError) -> JobError {
        JobError::Target {
            what: what.into(),
            err: Box::new(err),
        }
    }

    /// A refusal by `policy` of `what`, saying why and how to ask for it.
    pub fn refused(what: impl Into<String>, policy: Policy, detail: impl Into<String>) -> JobError {
        JobError::Refused {
            what: what.into(),
            policy,
            detail: detail.into(),
        }
    }
}

/// A packing failure; a failed write of the archive keeps its cause (a full or lost target,
/// a closed pipe) as [`JobError::io`] classifies it, so its exit code and retry class hold.
impl From<PackError> for JobError {
    fn from(e: PackError) -> JobError {
        match e {
            PackError::Write(err) => JobError::io("writing the archive", err),
            other => JobError::Pack(other),
        }
    }
}

/// Finds a [`FormatError`] anywhere in an error's source chain (tar and zstd wrap ours).
pub(crate) fn find_format_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a FormatError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(f) = err.downcast_ref::<FormatError>() {
            return Some(f);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(f) = find_format_error(inner) {
                    return Some(f);
                }
            }
        }
        cur = err.source();
    }
    None
}
