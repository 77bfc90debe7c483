//! The MOUNT protocol step: MNT the URL's path, or, when the server refuses it, the longest
//! exported prefix (from the server's export list) and the rest to LOOKUP, so the target may
//! be a subdirectory of an export.

use std::future::Future;

use nfs3_client::nfs3_types::mount::{dirpath, mountstat3};
use nfs3_client::nfs3_types::nfs3::nfs_fh3;
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::{MountClient, MountError};

use super::conn::Io;
use super::status::map_rpc;
use crate::targets::runtime::Blocking;
use crate::targets::{Retry, TargetError};

/// Runs a MOUNT call with the timeout: the server's answer, or the RPC failure.
fn mount_call<T>(
    rt: &Blocking,
    op: &str,
    fut: impl Future<Output = Result<T, MountError>>,
) -> Result<Result<T, mountstat3>, TargetError> {
    match rt.run(op, async { Ok(fut.await) })? {
        Err(MountError::Rpc(e)) => Err(map_rpc(rt.url(), op, &e)),
        Err(MountError::Denied(s)) => Ok(Err(s)),
        Ok(v) => Ok(Ok(v)),
    }
}

/// Whether `prefix` is `path` or a parent of it, component-wise.
fn is_path_prefix(prefix: &str, path: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    p.is_empty() || path == p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/'))
}

/// Mounts `export`, or the longest exported prefix of it; returns the handle and the
/// components left to LOOKUP.
pub(super) fn mount(
    rt: &Blocking,
    mc: &mut MountClient<Io>,
    export: &str,
) -> Result<(nfs_fh3, Vec<String>), TargetError> {
    let url = rt.url();
    let mnt = |mc: &mut MountClient<Io>, path: &str| {
        let p = path.to_string();
        mount_call(rt, &format!("MNT {p}"), async move {
            mc.mnt(dirpath(Opaque::owned(p.into_bytes())))
                .await
                .map(|ok| nfs_fh3 {
                    data: Opaque::owned(ok.fhandle.0.into_owned()),
                })
        })
    };
    let first = match mnt(mc, export)? {
        Ok(fh) => return Ok((fh, Vec::new())),
        Err(s) => s,
    };
    // The path may be a directory inside an export: mount the longest exported prefix.
    let listed: Vec<String> = mount_call(rt, "EXPORT", async {
        mc.export().await.map_err(MountError::Rpc)
    })
    .ok()
    .and_then(Result::ok)
    .map(|l| {
        l.0.into_iter()
            .map(|e| String::from_utf8_lossy(e.ex_dir.0.as_ref()).into_owned())
            .collect()
    })
    .unwrap_or_default();
    let best = listed
        .iter()
        .filter(|e| e.as_str() != export && is_path_prefix(e, export))
        .max_by_key(|e| e.len());
    if let Some(base) = best {
        if let Ok(fh) = mnt(mc, base)? {
            let rest = export[base.trim_end_matches('/').len()..]
                .split('/')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            return Ok((fh, rest));
        }
    }
    let exports = if listed.is_empty() {
        "the server did not list its exports".to_string()
    } else {
        format!("the server lists the exports {}", listed.join(", "))
    };
    Err(match first {
        mountstat3::MNT3ERR_ACCES | mountstat3::MNT3ERR_PERM => TargetError::Auth {
            target: url.to_string(),
            user: "this appliance".into(),
            detail: format!(
                "MNT {export}: {first}: the export does not allow this host, or there is no such export; {exports}"
            ),
            hint: "check the export path, and add this appliance's address to the export's client list (with rw, sec=sys, and insecure ports: knfsd `insecure`, Ganesha `PrivilegedPort = false`)".into(),
        },
        mountstat3::MNT3ERR_NOENT | mountstat3::MNT3ERR_NOTDIR => TargetError::Invalid {
            target: url.to_string(),
            why: format!("MNT {export}: {first}: no such export or directory ({exports})"),
        },
        _ => TargetError::Io {
            target: url.to_string(),
            op: format!("MNT {export}"),
            detail: format!("{first} ({exports})"),
            retry: Retry::Temporary,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefixes() {
        assert!(is_path_prefix("/offbox", "/offbox/pam01"));
        assert!(is_path_prefix("/offbox/", "/offbox/pam01"));
        assert!(is_path_prefix("/", "/offbox"));
        assert!(is_path_prefix("/offbox", "/offbox"));
        assert!(!is_path_prefix("/off", "/offbox/pam01"));
        assert!(!is_path_prefix("/offbox/pam", "/offbox/pam01"));
    }
}
