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
    /// The secrets export failed.
    #[error("the secrets export failed: {0}; check secrets.export_command in the config")]
    Export(String),
    /// The archive's signature is missing or wrong.
    #[error("{0}")]
    Signature(String),
}

impl JobError {
    /// Exit code: 3 for integrity failures, 4 for key failures, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            JobError::Integrity(_) | JobError::Signature(_) => 3,
            JobError::Key(_) => 4,
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
