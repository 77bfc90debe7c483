//! NT status codes and errors of the `smb` crate, mapped to [`TargetError`]s:
//! `STATUS_DISK_FULL`/`STATUS_QUOTA_EXCEEDED` → the target is full, `STATUS_LOGON_FAILURE`
//! and friends → wrong credentials (see `conn`), `STATUS_ACCESS_DENIED` → permission, a
//! timeout or a lost connection → temporary.

use std::io;

use smb::transport::TransportError;

use crate::targets::{Retry, TargetError};

// NT status codes (MS-ERREF 2.3.1) that change what the operator must do.
pub(super) const STATUS_ACCESS_DENIED: u32 = 0xC000_0022;
pub(super) const STATUS_OBJECT_NAME_NOT_FOUND: u32 = 0xC000_0034;
pub(super) const STATUS_OBJECT_NAME_COLLISION: u32 = 0xC000_0035;
pub(super) const STATUS_OBJECT_PATH_NOT_FOUND: u32 = 0xC000_003A;
pub(super) const STATUS_QUOTA_EXCEEDED: u32 = 0xC000_0044;
pub(super) const STATUS_LOGON_FAILURE: u32 = 0xC000_006D;
pub(super) const STATUS_ACCOUNT_RESTRICTION: u32 = 0xC000_006E;
pub(super) const STATUS_PASSWORD_EXPIRED: u32 = 0xC000_0071;
pub(super) const STATUS_ACCOUNT_DISABLED: u32 = 0xC000_0072;
pub(super) const STATUS_DISK_FULL: u32 = 0xC000_007F;
pub(super) const STATUS_IO_TIMEOUT: u32 = 0xC000_00B5;
pub(super) const STATUS_NETWORK_NAME_DELETED: u32 = 0xC000_00C9;
pub(super) const STATUS_BAD_NETWORK_NAME: u32 = 0xC000_00CC;
pub(super) const STATUS_USER_SESSION_DELETED: u32 = 0xC000_0203;
pub(super) const STATUS_ACCOUNT_LOCKED_OUT: u32 = 0xC000_0234;
pub(super) const STATUS_NETWORK_SESSION_EXPIRED: u32 = 0xC000_035C;

/// The NT status inside an error of the crate, also when the crate flattened it into the
/// text of an `io::Error` (its read, write and flush calls do).
pub(super) fn nt_status(e: &smb::Error) -> Option<u32> {
    match e {
        smb::Error::ReceivedErrorMessage(s, _) | smb::Error::UnexpectedMessageStatus(s) => Some(*s),
        other => status_in_text(&other.to_string()),
    }
}

/// Parses the code out of `status: Name (0xc000006d).` or `status: 0xc000007f.`, as the
/// crate prints a known or an unknown NT status.
fn status_in_text(text: &str) -> Option<u32> {
    let (_, rest) = text.rsplit_once("status: ")?;
    let (_, hex) = rest.split_once("0x")?;
    let end = hex
        .find(|c: char| !c.is_ascii_hexdigit())
        .unwrap_or(hex.len());
    u32::from_str_radix(&hex[..end], 16).ok()
}

/// The `STATUS_...` name of the codes handled here, for messages.
pub(super) fn status_name(s: u32) -> String {
    let name = match s {
        STATUS_ACCESS_DENIED => "STATUS_ACCESS_DENIED",
        STATUS_OBJECT_NAME_NOT_FOUND => "STATUS_OBJECT_NAME_NOT_FOUND",
        STATUS_OBJECT_NAME_COLLISION => "STATUS_OBJECT_NAME_COLLISION",
        STATUS_OBJECT_PATH_NOT_FOUND => "STATUS_OBJECT_PATH_NOT_FOUND",
        STATUS_QUOTA_EXCEEDED => "STATUS_QUOTA_EXCEEDED",
        STATUS_LOGON_FAILURE => "STATUS_LOGON_FAILURE",
        STATUS_ACCOUNT_RESTRICTION => "STATUS_ACCOUNT_RESTRICTION",
        STATUS_PASSWORD_EXPIRED => "STATUS_PASSWORD_EXPIRED",
        STATUS_ACCOUNT_DISABLED => "STATUS_ACCOUNT_DISABLED",
        STATUS_DISK_FULL => "STATUS_DISK_FULL",
        STATUS_IO_TIMEOUT => "STATUS_IO_TIMEOUT",
        STATUS_NETWORK_NAME_DELETED => "STATUS_NETWORK_NAME_DELETED",
        STATUS_BAD_NETWORK_NAME => "STATUS_BAD_NETWORK_NAME",
        STATUS_USER_SESSION_DELETED => "STATUS_USER_SESSION_DELETED",
        STATUS_ACCOUNT_LOCKED_OUT => "STATUS_ACCOUNT_LOCKED_OUT",
        STATUS_NETWORK_SESSION_EXPIRED => "STATUS_NETWORK_SESSION_EXPIRED",
        other => return format!("NT status {other:#010x}"),
    };
    name.to_string()
}

/// Whether the crate says the connection is gone.
fn connection_lost(e: &smb::Error) -> bool {
    match e {
        smb::Error::ConnectionStopped => true,
        smb::Error::TransportError(TransportError::NotConnected | TransportError::IoError(_)) => {
            true
        }
        smb::Error::IoError(io) => {
            let t = io.to_string();
            t.contains("Client connection is stopped") || t.contains("Not connected")
        }
        smb::Error::MessageProcessingError(_) => true,
        _ => false,
    }
}

/// Maps an error of the crate during `op` on `url`.
pub(super) fn map_err(url: &str, op: &str, e: &smb::Error) -> TargetError {
    let target = url.to_string();
    if let Some(s) = nt_status(e) {
        let detail = format!("{op}: {}", status_name(s));
        return match s {
            STATUS_DISK_FULL | STATUS_QUOTA_EXCEEDED => TargetError::NoSpace { target, detail },
            STATUS_ACCESS_DENIED => TargetError::Permission {
                target,
                op: op.to_string(),
                detail: status_name(s),
            },
            STATUS_OBJECT_NAME_NOT_FOUND | STATUS_OBJECT_PATH_NOT_FOUND => TargetError::NotFound {
                target,
                what: op.to_string(),
            },
            STATUS_BAD_NETWORK_NAME => TargetError::NotFound {
                target,
                what: format!("{op}: the share (STATUS_BAD_NETWORK_NAME)"),
            },
            STATUS_OBJECT_NAME_COLLISION => TargetError::Exists {
                target,
                name: op.to_string(),
            },
            STATUS_IO_TIMEOUT => TargetError::Timeout {
                target,
                op: op.to_string(),
                secs: 0,
            },
            STATUS_NETWORK_NAME_DELETED
            | STATUS_USER_SESSION_DELETED
            | STATUS_NETWORK_SESSION_EXPIRED => TargetError::Unreachable {
                target,
                detail: format!("{op}: the server dropped the session ({})", status_name(s)),
            },
            _ => TargetError::Io {
                target,
                op: op.to_string(),
                detail: status_name(s),
                retry: Retry::Permanent,
            },
        };
    }
    match e {
        smb::Error::OperationTimeout(_, d)
        | smb::Error::TransportError(TransportError::Timeout(d)) => TargetError::Timeout {
            target,
            op: op.to_string(),
            secs: d.as_secs(),
        },
        e if connection_lost(e) => TargetError::Unreachable {
            target,
            detail: format!("{op}: connection lost ({e})"),
        },
        e => TargetError::Io {
            target,
            op: op.to_string(),
            detail: e.to_string(),
            retry: Retry::Temporary,
        },
    }
}

/// Maps an `io::Error` of the crate's file calls (which carry the crate error as text).
pub(super) fn map_io(url: &str, op: &str, e: io::Error) -> TargetError {
    map_err(url, op, &smb::Error::IoError(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn status_from_text() {
        assert_eq!(
            status_in_text("IO Error: Server returned an error message with status: 0xc000007f."),
            Some(STATUS_DISK_FULL)
        );
        assert_eq!(
            status_in_text(
                "Server returned an error message with status: Logon Failure (0xc000006d)."
            ),
            Some(STATUS_LOGON_FAILURE)
        );
        assert_eq!(status_in_text("Client connection is stopped"), None);
    }

    #[test]
    fn statuses_map_to_what_to_do() {
        let e = smb::Error::UnexpectedMessageStatus(STATUS_DISK_FULL);
        let t = map_err("smb://u@h/s", "writing", &e);
        assert!(t.to_string().contains("the target is full"), "{t}");
        assert_eq!(t.retry(), Retry::Permanent);
        let e = smb::Error::IoError(io::Error::other(
            "Server returned an error message with status: 0xc000007f.",
        ));
        assert!(matches!(map_err("u", "w", &e), TargetError::NoSpace { .. }));
        let e = smb::Error::UnexpectedMessageStatus(STATUS_ACCESS_DENIED);
        assert!(matches!(
            map_err("u", "w", &e),
            TargetError::Permission { .. }
        ));
        let e = smb::Error::UnexpectedMessageStatus(STATUS_OBJECT_NAME_COLLISION);
        assert!(matches!(map_err("u", "w", &e), TargetError::Exists { .. }));
        let e = smb::Error::ConnectionStopped;
        let t = map_err("u", "w", &e);
        assert!(matches!(t, TargetError::Unreachable { .. }));
        assert_eq!(t.retry(), Retry::Temporary);
        let e = smb::Error::OperationTimeout(
            smb::error::TimedOutTask::ReceiveNextMessage,
            Duration::from_secs(7),
        );
        let t = map_err("u", "w", &e);
        assert!(t.to_string().contains("timed out after 7s"), "{t}");
        assert_eq!(t.retry(), Retry::Temporary);
    }
}
