//! The error of a job, and the process exit code it maps to.

use thiserror::Error;

use crate::config::ConfigError;
use crate::format::FormatError;
use crate::keys::KeyError;
use crate::payload::pack::PackError;
use crate::payload::unpack::UnpackError;

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
    Pack(#[from] PackError),
    /// The restore destination is unusable.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
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
    /// Exit code: 3 for integrity failures, 4 for key failures, 75 (EX_TEMPFAIL) when
    /// another run holds the run lock, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            JobError::Integrity(_) | JobError::Signature(_) => 3,
            JobError::DeviceSignature(_) => 4,
            // A slot copied from another archive is a forgery, not a key problem.
            JobError::Key(KeyError::SlotMoved { .. }) => 3,
            JobError::Key(_) => 4,
            JobError::Busy { .. } => 75,
            _ => 1,
        }
    }

    /// Wraps an I/O error, keeping an archive integrity failure as such.
    pub fn io(what: impl Into<String>, err: std::io::Error) -> JobError {
        if let Some(f) = find_format_error(&err) {
            return JobError::Integrity(f.clone());
        }
        JobError::Io {
            what: what.into(),
            err,
        }
    }
}

/// Finds a [`FormatError`] anywhere in an error's source chain (tar and zstd wrap ours).
pub fn find_format_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a FormatError> {
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
