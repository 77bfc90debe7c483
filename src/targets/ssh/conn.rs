//! The libssh2 handshake (no authentication) that reads the host key a server presents,
//! with the self-host-key check: for `accept-host-key`, and to say which key `ssh` refused;
//! the check for the appliance's key before connecting; libssh2 errors mapped to
//! [`TargetError`]s.

use std::time::Duration;

use ssh2::{ErrorCode, Session};

use super::host_key::{check_pinned, host_pattern, HostKey};
use crate::guard::SelfIdentity;
use crate::targets::{net, Retry, SshUrl, TargetError, TargetSpec};

// SFTP status codes (draft-ietf-secsh-filexfer-02 and later).
const FX_NO_SUCH_FILE: i32 = 2;
const FX_PERMISSION_DENIED: i32 = 3;
const FX_FILE_ALREADY_EXISTS: i32 = 11;
const FX_NO_SPACE: i32 = 14;
const FX_QUOTA_EXCEEDED: i32 = 15;
const FX_NO_SUCH_PATH: i32 = 10;
// libssh2 session errors.
const ERR_TIMEOUT: i32 = -9;
const ERR_SOCKET_SEND: i32 = -7;
const ERR_SOCKET_DISCONNECT: i32 = -13;
const ERR_SOCKET_RECV: i32 = -43;

/// Maps a libssh2 error of `op`.
pub(super) fn map_err(url: &str, op: &str, e: &ssh2::Error) -> TargetError {
    let target = url.to_string();
    let detail = e.message().to_string();
    match e.code() {
        ErrorCode::SFTP(FX_NO_SUCH_FILE) | ErrorCode::SFTP(FX_NO_SUCH_PATH) => {
            TargetError::NotFound {
                target,
                what: op.to_string(),
            }
        }
        ErrorCode::SFTP(FX_PERMISSION_DENIED) => TargetError::Permission {
            target,
            op: op.to_string(),
            detail,
        },
        ErrorCode::SFTP(FX_FILE_ALREADY_EXISTS) => TargetError::Exists {
            target,
            name: op.to_string(),
        },
        ErrorCode::SFTP(FX_NO_SPACE) | ErrorCode::SFTP(FX_QUOTA_EXCEEDED) => {
            TargetError::NoSpace { target, detail }
        }
        ErrorCode::Session(ERR_TIMEOUT) => TargetError::Timeout {
            target,
            op: op.to_string(),
            secs: 0,
        },
        ErrorCode::Session(ERR_SOCKET_SEND | ERR_SOCKET_DISCONNECT | ERR_SOCKET_RECV) => {
            TargetError::Unreachable {
                target,
                detail: format!("{op}: connection lost ({detail})"),
            }
        }
        _ => TargetError::Io {
            target,
            op: op.to_string(),
            detail: format!("{detail} ({})", e.code()),
            retry: Retry::Temporary,
        },
    }
}

/// Transport ciphers in order of preference (libssh2 ignores the ones it lacks).
const CIPHERS: &str = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes256-ctr,chacha20-poly1305@openssh.com";

/// Connects through the guard ([`net::connect`]), handshakes, and checks the host key
/// against this appliance's own.
pub(super) fn handshake(
    spec: &TargetSpec,
    target: &SshUrl,
    me: &SelfIdentity,
) -> Result<(Session, HostKey), TargetError> {
    let url = spec.url.to_string();
    let (host, port) = (target.host.as_str(), target.port);
    let timeout = Duration::from_secs(spec.timeout_secs);
    let tcp = net::connect(me, &url, host, port, timeout)?;
    let mut sess = Session::new().map_err(|e| map_err(&url, "starting libssh2", &e))?;
    sess.set_tcp_stream(tcp);
    sess.set_timeout((spec.timeout_secs * 1000).min(u32::MAX as u64) as u32);
    // Prefer ciphers with hardware support (AES-NI): the archive is already encrypted and
    // authenticated, so the transport cipher only has to be fast and sound.
    for (kind, prefs) in [
        (ssh2::MethodType::CryptCs, CIPHERS),
        (ssh2::MethodType::CryptSc, CIPHERS),
    ] {
        let _ = sess.method_pref(kind, prefs);
    }
    sess.handshake()
        .map_err(|e| map_err(&url, "SSH handshake", &e))?;
    let blob = sess
        .host_key()
        .map(|(b, _)| b.to_vec())
        .ok_or_else(|| TargetError::Io {
            target: url.clone(),
            op: "SSH handshake".into(),
            detail: "no host key".into(),
            retry: Retry::Temporary,
        })?;
    me.check_host_key(&url, &blob)?;
    Ok((
        sess,
        HostKey {
            pattern: host_pattern(host, port),
            blob,
        },
    ))
}

/// Connects and returns the server's host key without authenticating (for
/// `accept-host-key`).
pub fn probe_host_key(
    spec: &TargetSpec,
    target: &SshUrl,
    me: &SelfIdentity,
) -> Result<HostKey, TargetError> {
    handshake(spec, target, me).map(|(_, k)| k)
}

/// Refuses to start without the appliance's key, saying how to make one.
pub(super) fn check_identity(spec: &TargetSpec, url: &str, user: &str) -> Result<(), TargetError> {
    let id = &spec.ssh_identity;
    if id.exists() {
        return Ok(());
    }
    Err(TargetError::Credentials {
        target: url.to_string(),
        detail: format!(
            "no SSH key at {}; run `offbox target ssh-key` and add the printed key to ~{user}/.ssh/authorized_keys on the server",
            id.display()
        ),
    })
}

/// The error of a connection `ssh` refused for its host key, made precise: the key the
/// server presents (a handshake, no authentication) is unknown, changed, or this
/// appliance's own. Other errors pass unchanged.
pub(super) fn explain(
    spec: &TargetSpec,
    target: &SshUrl,
    me: &SelfIdentity,
    e: TargetError,
) -> TargetError {
    if !super::openssh::is_host_key_refusal(&e) {
        return e;
    }
    match handshake(spec, target, me) {
        Ok((_, key)) => match check_pinned(&spec.url.to_string(), &spec.known_hosts, &key) {
            Err(precise) => precise,
            Ok(()) => e,
        },
        Err(probe) => probe,
    }
}
