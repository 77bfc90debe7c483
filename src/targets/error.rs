//! The error of a target operation: what went wrong, what to do, and whether a retry helps.
//!
//! Policy: every variant names the target (its URL without secrets) and ends with an action
//! for the operator. [`TargetError::retry`] classifies it, like rustic's error status:
//! a `Temporary` failure (network, timeout, a server that went away) may pass on a retry; a
//! `Permanent` one (wrong credentials, unpinned host key, self-target, full target) will not
//! until someone changes something.

use std::io;

use thiserror::Error;

use crate::guard::Refusal;

/// Whether retrying the same operation can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Retry {
    /// Retry later: the cause is transient (network, timeout, server restart).
    Temporary,
    /// Do not retry before fixing the cause named in the message.
    Permanent,
}

/// Why a target operation failed.
#[derive(Debug, Error)]
pub enum TargetError {
    /// The URL or the `[targets.NAME]` table is not usable.
    #[error("invalid target {target}: {why}")]
    Invalid {
        /// The URL or name as given.
        target: String,
        /// What is wrong and how to write it.
        why: String,
    },
    /// The self-target guard refused the target.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The target kind is not compiled into this build.
    #[error("{target}: this build has no {scheme}:// support (cargo feature {feature}); rebuild with it")]
    NotBuilt {
        /// The URL.
        target: String,
        /// The URL scheme.
        scheme: String,
        /// The cargo feature.
        feature: &'static str,
    },
    /// The host could not be reached or resolved.
    #[error("cannot reach {target} ({detail}); check the address, the port, the network and that the server runs, then retry")]
    Unreachable {
        /// The URL.
        target: String,
        /// What failed.
        detail: String,
    },
    /// The server did not answer in time.
    #[error(
        "{target}: {op} timed out after {secs}s; check the network and the server load, then retry"
    )]
    Timeout {
        /// The URL.
        target: String,
        /// What was being done.
        op: String,
        /// The timeout.
        secs: u64,
    },
    /// The server refused the credentials.
    #[error("{target}: authentication as {user} failed ({detail}); {hint}")]
    Auth {
        /// The URL.
        target: String,
        /// The user name.
        user: String,
        /// What the server or library said.
        detail: String,
        /// What to check.
        hint: String,
    },
    /// The credentials could not be read on this appliance.
    #[error("{target}: cannot read the credentials: {detail}")]
    Credentials {
        /// The URL.
        target: String,
        /// What is missing.
        detail: String,
    },
    /// The SSH host key is not pinned yet.
    #[error("{target}: the host key of {host} is not pinned (first use). Its fingerprint is {fingerprint} ({key_type}). Compare it with the server's `ssh-keygen -lf /etc/ssh/ssh_host_{short}_key.pub`, then run `offbox target accept-host-key {target} --fingerprint {fingerprint}`")]
    HostKeyUnknown {
        /// The URL.
        target: String,
        /// `host` or `[host]:port`.
        host: String,
        /// SHA256 fingerprint.
        fingerprint: String,
        /// e.g. ssh-ed25519.
        key_type: String,
        /// e.g. ed25519.
        short: String,
    },
    /// The SSH host key differs from the pinned one.
    #[error("{target}: the host key of {host} CHANGED: the server presented {fingerprint} ({key_type}) but {known_hosts} pins another key. This may be an attack. If the server was reinstalled, remove its line from {known_hosts} and accept the new key with `offbox target accept-host-key`")]
    HostKeyMismatch {
        /// The URL.
        target: String,
        /// `host` or `[host]:port`.
        host: String,
        /// SHA256 fingerprint presented.
        fingerprint: String,
        /// Key type presented.
        key_type: String,
        /// The known_hosts file.
        known_hosts: String,
    },
    /// The target has no room left.
    #[error("{target}: the target is full ({detail}); free space on it or run `offbox prune`, then retry")]
    NoSpace {
        /// The URL.
        target: String,
        /// What the server said and the free space seen.
        detail: String,
    },
    /// Permission denied on the target.
    #[error("{target}: permission denied {op} ({detail}); give the backup user write access to the target directory")]
    Permission {
        /// The URL.
        target: String,
        /// What was being done.
        op: String,
        /// What the server said.
        detail: String,
    },
    /// No such archive or directory.
    #[error(
        "{target}: {what} not found; run `offbox backup list --to {target}` to see the archives"
    )]
    NotFound {
        /// The URL.
        target: String,
        /// The missing thing.
        what: String,
    },
    /// The target directory itself does not exist (an archive that is missing is
    /// [`TargetError::NotFound`]).
    #[error("{target}: the directory {dir} does not exist on the target; {create}, or correct the path in the target's URL")]
    NoDirectory {
        /// The URL.
        target: String,
        /// The missing directory, as the target's protocol names it.
        dir: String,
        /// How to create it, for this kind of target.
        create: String,
    },
    /// The final archive name is taken.
    #[error("{target}: an archive named {name} already exists; nothing was overwritten")]
    Exists {
        /// The URL.
        target: String,
        /// The name.
        name: String,
    },
    /// The archive is under Object Lock retention (S3): it cannot be deleted yet.
    #[error("{target}: {name} is locked until {until} (Object Lock); it is kept, and can be deleted after that date")]
    Locked {
        /// The URL.
        target: String,
        /// The archive.
        name: String,
        /// The retain-until date as the server gave it.
        until: String,
    },
    /// Any other I/O or protocol failure.
    #[error("{target}: {op} failed: {detail}")]
    Io {
        /// The URL.
        target: String,
        /// What was being done.
        op: String,
        /// The error.
        detail: String,
        /// Whether a retry may help.
        retry: Retry,
    },
}

impl TargetError {
    /// Whether a retry can help.
    pub fn retry(&self) -> Retry {
        match self {
            TargetError::Unreachable { .. } | TargetError::Timeout { .. } => Retry::Temporary,
            TargetError::Io { retry, .. } => *retry,
            _ => Retry::Permanent,
        }
    }

    /// Classifies an I/O error of operation `op` on `target`.
    pub(crate) fn from_io(target: &str, op: &str, err: &io::Error) -> TargetError {
        let target = target.to_string();
        let detail = err.to_string();
        match err.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                TargetError::NoSpace { target, detail }
            }
            io::ErrorKind::PermissionDenied => TargetError::Permission {
                target,
                op: op.to_string(),
                detail,
            },
            io::ErrorKind::NotFound => TargetError::NotFound {
                target,
                what: format!("{op}: {detail}"),
            },
            io::ErrorKind::AlreadyExists => TargetError::Exists {
                target,
                name: detail,
            },
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => TargetError::Timeout {
                target,
                op: op.to_string(),
                secs: 0,
            },
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NotConnected
            | io::ErrorKind::UnexpectedEof => TargetError::Unreachable {
                target,
                detail: format!("{op}: {detail}"),
            },
            _ => TargetError::Io {
                target,
                op: op.to_string(),
                detail,
                retry: Retry::Temporary,
            },
        }
    }

    /// Wraps this error into an `io::Error` (for `Write`/`Read` implementations), keeping it
    /// recoverable with [`TargetError::find`].
    pub(crate) fn into_io(self) -> io::Error {
        let kind = match &self {
            TargetError::NoSpace { .. } => io::ErrorKind::StorageFull,
            TargetError::Permission { .. } => io::ErrorKind::PermissionDenied,
            TargetError::Timeout { .. } => io::ErrorKind::TimedOut,
            TargetError::Unreachable { .. } => io::ErrorKind::ConnectionAborted,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, self)
    }

    /// Finds a `TargetError` inside an `io::Error` made by [`TargetError::into_io`].
    pub fn find(err: &io::Error) -> Option<&TargetError> {
        err.get_ref()?.downcast_ref::<TargetError>()
    }
}
