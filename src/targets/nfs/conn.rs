//! The NFS connection: dialled through the guard ([`net::connect_async`] to the MOUNT port,
//! then [`net::dial_async`] to the NFS port of the same address), mounted, and driven by
//! the target's own runtime ([`Blocking`]). After a timeout or a lost connection the
//! connection is not reused: later calls fail at once.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use nfs3_client::nfs3_types::nfs3::{
    diropargs3, filename3, ftype3, nfs_fh3, nfsstat3, FSINFO3args, GETATTR3args, LOOKUP3args,
    Nfs3Result, REMOVE3args,
};
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::TokioIo;
use nfs3_client::{MountClient, Nfs3Client, RpcError};
use tokio::net::TcpStream;

use super::mount::mount;
use super::status::{map_rpc, map_stat};
use crate::guard::SelfIdentity;
use crate::targets::runtime::Blocking;
use crate::targets::{net, NfsUrl, TargetError, TargetSpec};

/// The RPC transport.
pub(super) type Io = TokioIo<TcpStream>;

/// Largest READ/WRITE offbox sends, whatever the server allows.
const MAX_IO: u32 = 1 << 20;

/// What the server says it supports, read with FSINFO.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sizes {
    /// Bytes per READ.
    pub(super) read: u32,
    /// Bytes per WRITE.
    pub(super) write: u32,
}

/// The NFS connection and the runtime that drives it.
pub(super) struct Conn {
    rt: Blocking,
    nfs: Nfs3Client<Io>,
    /// Why the connection is unusable, once a call timed out or the socket failed.
    broken: Option<String>,
}

impl Conn {
    /// Runs one RPC with the timeout; marks the connection broken when its state is
    /// unknown afterwards.
    pub(super) fn call<T, F>(&mut self, op: &str, f: F) -> Result<T, TargetError>
    where
        F: AsyncFnOnce(&mut Nfs3Client<Io>) -> Result<T, RpcError>,
    {
        if let Some(why) = &self.broken {
            return Err(TargetError::Unreachable {
                target: self.rt.url().to_string(),
                detail: format!("{op}: the connection was lost earlier ({why})"),
            });
        }
        let nfs = &mut self.nfs;
        match self.rt.run(op, async { Ok(f(nfs).await) }) {
            Err(timeout) => {
                self.broken = Some(format!("{op} timed out"));
                Err(timeout)
            }
            Ok(Err(e)) => {
                if !e.is_connection_reusable() {
                    self.broken = Some(format!("{op}: {e}"));
                }
                Err(map_rpc(self.rt.url(), op, &e))
            }
            Ok(Ok(v)) => Ok(v),
        }
    }
}

/// Runs one RPC on a connection shared by a target and its uploads and readers (see
/// [`Conn::call`]).
pub(super) fn call<T, F>(conn: &Mutex<Conn>, op: &str, f: F) -> Result<T, TargetError>
where
    F: AsyncFnOnce(&mut Nfs3Client<Io>) -> Result<T, RpcError>,
{
    conn.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .call(op, f)
}

/// An NFS file name.
fn fname(name: &str) -> filename3<'_> {
    filename3(Opaque::borrowed(name.as_bytes()))
}

/// `name` in the directory `dir`.
pub(super) fn diropargs<'a>(dir: &nfs_fh3, name: &'a str) -> diropargs3<'a> {
    diropargs3 {
        dir: dir.clone(),
        name: fname(name),
    }
}

/// The AUTH_SYS credentials: this process's ids and host name.
fn credential() -> opaque_auth<'static> {
    let mut host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    host.truncate(255);
    let mut gids: Vec<u32> = nix::unistd::getgroups()
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    gids.truncate(16);
    let stamp = u32::from_le_bytes(crate::secret::random_bytes::<4>());
    opaque_auth::auth_unix(&auth_unix {
        stamp,
        machinename: Opaque::owned(host.into_bytes()),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        gids,
    })
}

/// Guard, connect to MOUNT and NFS (guarding both peers), mount, and enter the directory.
/// Returns the connection, the directory's handle and the transfer sizes.
pub(super) fn connect(
    spec: &TargetSpec,
    target: &NfsUrl,
    me: &SelfIdentity,
) -> Result<(Conn, nfs_fh3, Sizes), TargetError> {
    let url = spec.url.to_string();
    let timeout = Duration::from_secs(spec.timeout_secs.max(1));
    let rt = Blocking::new(&url, "NFS", timeout)?;
    let cred = credential();
    // Guarded resolution; the MOUNT connection picks the address, NFS uses the same.
    let msock = rt.block_on(net::connect_async(
        me,
        &url,
        &target.host,
        target.mount_port,
        timeout,
    ))?;
    let ip = msock
        .peer_addr()
        .map_err(|e| TargetError::from_io(&url, "connecting", &e))?
        .ip();
    let mut mc =
        MountClient::new_with_auth(TokioIo::new(msock), cred.clone(), opaque_auth::default());
    let (root, rest) = mount(&rt, &mut mc, &target.export)?;
    drop(mc); // NFSv3 is stateless: the MOUNT connection is not needed any more.

    let nsock = rt.block_on(net::dial_async(
        me,
        &url,
        SocketAddr::new(ip, target.port),
        timeout,
    ))?;
    let nfs = Nfs3Client::new_with_auth(TokioIo::new(nsock), cred, opaque_auth::default());
    let mut conn = Conn {
        rt,
        nfs,
        broken: None,
    };
    let sizes = sizes(&mut conn, &root)?;
    let dir = enter(&mut conn, root, &rest, &target.export)?;
    check_is_dir(&mut conn, &dir, &target.export)?;
    Ok((conn, dir, sizes))
}

/// The READ and WRITE sizes the server prefers (FSINFO), within 4 KiB and [`MAX_IO`].
fn sizes(conn: &mut Conn, root: &nfs_fh3) -> Result<Sizes, TargetError> {
    conn.call("FSINFO", async |c| {
        c.fsinfo(&FSINFO3args {
            fsroot: root.clone(),
        })
        .await
    })
    .map(|r| match r {
        Nfs3Result::Ok(ok) => Sizes {
            read: ok.rtmax.clamp(4096, MAX_IO),
            write: ok.wtmax.clamp(4096, MAX_IO),
        },
        Nfs3Result::Err(_) => Sizes {
            read: 64 << 10,
            write: 64 << 10,
        },
    })
}

/// LOOKUPs the components `rest` below the mounted `root`.
fn enter(
    conn: &mut Conn,
    root: nfs_fh3,
    rest: &[String],
    export: &str,
) -> Result<nfs_fh3, TargetError> {
    let mut dir = root;
    for comp in rest {
        let r = conn.call(&format!("LOOKUP {comp}"), async |c| {
            c.lookup(&LOOKUP3args {
                what: diropargs(&dir, comp),
            })
            .await
        })?;
        dir = match r {
            Nfs3Result::Ok(ok) => ok.object,
            Nfs3Result::Err((nfsstat3::NFS3ERR_NOENT, _)) => {
                return Err(TargetError::NoDirectory {
                    target: conn.rt.url().to_string(),
                    dir: format!("{comp} (in {export})"),
                    create: "create it in the export on the NFS server, writable by the user offbox runs as (uid and gid as the server maps them)".into(),
                })
            }
            Nfs3Result::Err((s, _)) => {
                return Err(map_stat(conn.rt.url(), "entering the directory", export, s))
            }
        };
    }
    Ok(dir)
}

/// Checks (GETATTR) that `dir` is a directory.
fn check_is_dir(conn: &mut Conn, dir: &nfs_fh3, export: &str) -> Result<(), TargetError> {
    let attr = conn.call("GETATTR", async |c| {
        c.getattr(&GETATTR3args {
            object: dir.clone(),
        })
        .await
    })?;
    let url = conn.rt.url();
    match attr {
        Nfs3Result::Ok(ok) if ok.obj_attributes.type_ == ftype3::NF3DIR => Ok(()),
        Nfs3Result::Ok(_) => Err(TargetError::Invalid {
            target: url.to_string(),
            why: format!("{export} is not a directory"),
        }),
        Nfs3Result::Err((s, _)) => Err(map_stat(url, "GETATTR", export, s)),
    }
}

/// LOOKUPs `name` in `dir`: its handle, or the server's status (NFS3ERR_NOENT if absent).
pub(super) fn lookup(
    conn: &Mutex<Conn>,
    dir: &nfs_fh3,
    name: &str,
) -> Result<Result<nfs_fh3, nfsstat3>, TargetError> {
    let r = call(conn, &format!("LOOKUP {name}"), async |c| {
        c.lookup(&LOOKUP3args {
            what: diropargs(dir, name),
        })
        .await
    })?;
    Ok(match r {
        Nfs3Result::Ok(ok) => Ok(ok.object),
        Nfs3Result::Err((s, _)) => Err(s),
    })
}

/// REMOVEs `name` in `dir`.
pub(super) fn remove(
    conn: &Mutex<Conn>,
    url: &str,
    dir: &nfs_fh3,
    name: &str,
) -> Result<(), TargetError> {
    let r = call(conn, &format!("REMOVE {name}"), async |c| {
        c.remove(&REMOVE3args {
            object: diropargs(dir, name),
        })
        .await
    })?;
    match r {
        Nfs3Result::Ok(_) => Ok(()),
        Nfs3Result::Err((s, _)) => Err(map_stat(url, &format!("deleting {name}"), name, s)),
    }
}
