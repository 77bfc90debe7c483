//! NFS and RPC failures mapped to [`TargetError`]s: `NFS3ERR_NOSPC`/`DQUOT`/`FBIG` → the
//! target is full, `ACCES`/`PERM`/`ROFS` → permission, AUTH_SYS rejected → credentials, a
//! lost connection or a timeout → temporary.

use std::io;

use nfs3_client::nfs3_types::nfs3::nfsstat3;
use nfs3_client::RpcError;

use crate::targets::{Retry, TargetError};

/// Maps an RPC-level failure of `op`.
pub(super) fn map_rpc(url: &str, op: &str, e: &RpcError) -> TargetError {
    let target = url.to_string();
    match e {
        RpcError::Io(io) => match io.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => TargetError::Timeout {
                target,
                op: op.to_string(),
                secs: 0,
            },
            _ => TargetError::Unreachable {
                target,
                detail: format!("{op}: connection lost ({io})"),
            },
        },
        RpcError::Auth(stat) => TargetError::Auth {
            target,
            user: format!("uid {}", nix::unistd::getuid()),
            detail: format!("{op}: the server rejected the AUTH_SYS credentials ({stat})"),
            hint: "the export must accept AUTH_SYS (sec=sys) from this appliance and unprivileged source ports (knfsd: `insecure`; Ganesha: `PrivilegedPort = false`)".into(),
        },
        RpcError::ProgUnavail | RpcError::ProgMismatch { .. } | RpcError::ProcUnavail => {
            TargetError::Invalid {
                target,
                why: format!(
                    "{op}: the server does not speak NFSv3/MOUNTv3 on that port ({e}); check the port and ?mountport= in the URL"
                ),
            }
        }
        _ => TargetError::Io {
            target,
            op: op.to_string(),
            detail: format!("RPC error: {e}"),
            retry: Retry::Temporary,
        },
    }
}

/// Maps an NFS status of `op` on `what`.
pub(super) fn map_stat(url: &str, op: &str, what: &str, stat: nfsstat3) -> TargetError {
    let target = url.to_string();
    let detail = format!("{op}: {stat}");
    match stat {
        nfsstat3::NFS3ERR_NOSPC | nfsstat3::NFS3ERR_DQUOT | nfsstat3::NFS3ERR_FBIG => {
            TargetError::NoSpace { target, detail }
        }
        nfsstat3::NFS3ERR_ACCES | nfsstat3::NFS3ERR_PERM => TargetError::Permission {
            target,
            op: op.to_string(),
            detail: format!("{stat}; the server maps uid {} to a user without access, or squashes root", nix::unistd::getuid()),
        },
        nfsstat3::NFS3ERR_ROFS => TargetError::Permission {
            target,
            op: op.to_string(),
            detail: format!("{stat}: the export is read-only; export it read-write (rw)"),
        },
        nfsstat3::NFS3ERR_NOENT => TargetError::NotFound {
            target,
            what: what.to_string(),
        },
        nfsstat3::NFS3ERR_EXIST => TargetError::Exists {
            target,
            name: what.to_string(),
        },
        nfsstat3::NFS3ERR_NOTDIR => TargetError::Invalid {
            target,
            why: format!("{what} is not a directory"),
        },
        nfsstat3::NFS3ERR_NAMETOOLONG | nfsstat3::NFS3ERR_INVAL | nfsstat3::NFS3ERR_NOTSUPP => {
            TargetError::Io {
                target,
                op: op.to_string(),
                detail: format!("{stat}: the server refused the request for {what}"),
                retry: Retry::Permanent,
            }
        }
        nfsstat3::NFS3ERR_STALE | nfsstat3::NFS3ERR_BADHANDLE => TargetError::Io {
            target,
            op: op.to_string(),
            detail: format!(
                "{stat}: the file handle is no longer valid (the export was changed or its directory replaced); retry"
            ),
            retry: Retry::Temporary,
        },
        _ => TargetError::Io {
            target,
            op: op.to_string(),
            detail: format!("{stat} (server-side failure; retry)"),
            retry: Retry::Temporary,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_say_what_to_do() {
        let u = "nfs://h:2049/e";
        let full = map_stat(u, "writing", "x", nfsstat3::NFS3ERR_NOSPC);
        assert!(matches!(full, TargetError::NoSpace { .. }));
        assert!(full.to_string().contains("the target is full"));
        assert_eq!(full.retry(), Retry::Permanent);
        let q = map_stat(u, "writing", "x", nfsstat3::NFS3ERR_DQUOT);
        assert!(matches!(q, TargetError::NoSpace { .. }));
        let ro = map_stat(u, "writing", "x", nfsstat3::NFS3ERR_ROFS);
        assert!(ro.to_string().contains("read-only"));
        let gone = map_stat(u, "x", "x", nfsstat3::NFS3ERR_NOENT);
        assert!(matches!(gone, TargetError::NotFound { .. }));
        let io = map_stat(u, "x", "x", nfsstat3::NFS3ERR_IO);
        assert_eq!(io.retry(), Retry::Temporary);
        let lost = map_rpc(
            u,
            "WRITE",
            &RpcError::Io(io::Error::from(io::ErrorKind::ConnectionReset)),
        );
        assert!(matches!(lost, TargetError::Unreachable { .. }));
        assert_eq!(lost.retry(), Retry::Temporary);
    }
}
