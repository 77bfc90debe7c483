//! `nfs://host[:port]/export[/dir...][?mountport=N]`: NFSv3 over TCP with the userspace
//! client `nfs3_client` (no kernel mount, no CAP_SYS_ADMIN; a dead server is a timeout,
//! not a process hung in D state).
//!
//! - Connection: the guard resolves the host and refuses this appliance; offbox connects to
//!   the MOUNT port (`?mountport=N`, default: the NFS port) and the NFS port (default 2049)
//!   directly, without asking a portmapper, from an unprivileged source port (the export
//!   must allow it: knfsd `insecure`, Ganesha `PrivilegedPort = false`); each connected
//!   socket's peer is guarded again. Credentials are AUTH_SYS with this process's uid, gid
//!   and host name.
//! - Directory: the URL path is MNT'ed; if the server refuses it, the longest exported
//!   prefix is mounted (from the server's export list) and the rest is LOOKUP'ed, so the
//!   target may be a subdirectory of an export.
//! - Uploads: GUARDED CREATE of the temporary name (never an existing file), UNSTABLE
//!   WRITEs of up to `wtmax` (at most 1 MiB), COMMIT (a changed write verifier means the
//!   server restarted and may have lost data: the upload fails and can be retried), then a
//!   LOOKUP that the final name is free and a RENAME. A dropped upload REMOVEs its
//!   temporary.
//! - Free space: FSSTAT `abytes` (the bytes available to this user).
//!
//! The tokio runtime is a current-thread runtime owned by the target; every RPC runs on it
//! through `block_on` with the target's timeout, so callers see plain `Write`/`Read`. After
//! a timeout or a lost connection the connection is not reused: later calls fail at once.

use std::future::Future;
use std::io::{self, BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nfs3_client::nfs3_types::mount::{dirpath, mountstat3};
use nfs3_client::nfs3_types::nfs3::{
    createhow3, diropargs3, filename3, ftype3, nfs_fh3, nfsstat3, sattr3, set_mode3, stable_how,
    writeverf3, COMMIT3args, CREATE3args, FSINFO3args, FSSTAT3args, GETATTR3args, LOOKUP3args,
    Nfs3Option, Nfs3Result, READ3args, READDIRPLUS3args, REMOVE3args, RENAME3args, WRITE3args,
};
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::TokioIo;
use nfs3_client::{MountClient, MountError, Nfs3Client, RpcError};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

use super::{temp_name, Entry, Retry, Target, TargetError, TargetSpec, TargetUrl, Upload};
use crate::guard::SelfIdentity;

type Io = TokioIo<TcpStream>;

/// Largest READ/WRITE offbox sends, whatever the server allows.
const MAX_IO: u32 = 1 << 20;

/// What the server says it supports, read with FSINFO.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    read: u32,
    write: u32,
}

/// The NFS connection and the runtime that drives it.
struct Conn {
    rt: Runtime,
    nfs: Nfs3Client<Io>,
    url: String,
    secs: u64,
    /// Why the connection is unusable, once a call timed out or the socket failed.
    broken: Option<String>,
}

impl Conn {
    /// Runs one RPC with the timeout; marks the connection broken when its state is
    /// unknown afterwards.
    fn call<T, F>(&mut self, op: &str, f: F) -> Result<T, TargetError>
    where
        F: AsyncFnOnce(&mut Nfs3Client<Io>) -> Result<T, RpcError>,
    {
        if let Some(why) = &self.broken {
            return Err(TargetError::Unreachable {
                target: self.url.clone(),
                detail: format!("{op}: the connection was lost earlier ({why})"),
            });
        }
        let d = Duration::from_secs(self.secs);
        let nfs = &mut self.nfs;
        let r = within(&self.rt, d, f(nfs));
        match r {
            Err(_) => {
                self.broken = Some(format!("{op} timed out"));
                Err(TargetError::Timeout {
                    target: self.url.clone(),
                    op: op.to_string(),
                    secs: self.secs,
                })
            }
            Ok(Err(e)) => {
                if !e.is_connection_reusable() {
                    self.broken = Some(format!("{op}: {e}"));
                }
                Err(map_rpc(&self.url, op, &e))
            }
            Ok(Ok(v)) => Ok(v),
        }
    }
}

/// Runs `fut` on the target's runtime, for at most `d` (the timer is created inside the
/// runtime).
fn within<T>(
    rt: &Runtime,
    d: Duration,
    fut: impl Future<Output = T>,
) -> Result<T, tokio::time::error::Elapsed> {
    rt.block_on(async { tokio::time::timeout(d, fut).await })
}

/// Maps an RPC-level failure of `op`.
fn map_rpc(url: &str, op: &str, e: &RpcError) -> TargetError {
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
fn map_stat(url: &str, op: &str, what: &str, stat: nfsstat3) -> TargetError {
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

fn fname(name: &str) -> filename3<'_> {
    filename3(Opaque::borrowed(name.as_bytes()))
}

fn diropargs<'a>(dir: &nfs_fh3, name: &'a str) -> diropargs3<'a> {
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

/// Connects to `addr` within the timeout and guards the connected peer.
fn connect_guarded(
    rt: &Runtime,
    me: &SelfIdentity,
    url: &str,
    addr: SocketAddr,
    secs: u64,
) -> Result<TcpStream, TargetError> {
    let d = Duration::from_secs(secs);
    let s = match within(rt, d, TcpStream::connect(addr)) {
        Err(_) => {
            return Err(TargetError::Timeout {
                target: url.to_string(),
                op: format!("connecting to {addr}"),
                secs,
            })
        }
        Ok(Err(e)) => {
            return Err(TargetError::Unreachable {
                target: url.to_string(),
                detail: format!("connecting to {addr}: {e}"),
            })
        }
        Ok(Ok(s)) => s,
    };
    let peer = s
        .peer_addr()
        .map_err(|e| TargetError::from_io(url, "connecting", &e))?;
    me.check_peer(url, peer)?;
    s.set_nodelay(true).ok();
    Ok(s)
}

/// Runs a MOUNT call with the timeout.
fn mount_call<T>(
    rt: &Runtime,
    url: &str,
    secs: u64,
    op: &str,
    fut: impl Future<Output = Result<T, MountError>>,
) -> Result<Result<T, mountstat3>, TargetError> {
    match within(rt, Duration::from_secs(secs), fut) {
        Err(_) => Err(TargetError::Timeout {
            target: url.to_string(),
            op: op.to_string(),
            secs,
        }),
        Ok(Err(MountError::Rpc(e))) => Err(map_rpc(url, op, &e)),
        Ok(Err(MountError::Denied(s))) => Ok(Err(s)),
        Ok(Ok(v)) => Ok(Ok(v)),
    }
}

/// Whether `prefix` is `path` or a parent of it, component-wise.
fn is_path_prefix(prefix: &str, path: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    p.is_empty() || path == p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/'))
}

/// Mounts `export`, or the longest exported prefix of it; returns the handle and the
/// components left to LOOKUP.
fn mount(
    rt: &Runtime,
    mc: &mut MountClient<Io>,
    url: &str,
    secs: u64,
    export: &str,
) -> Result<(nfs_fh3, Vec<String>), TargetError> {
    let mnt = |mc: &mut MountClient<Io>, path: &str| {
        let p = path.to_string();
        mount_call(rt, url, secs, &format!("MNT {p}"), async move {
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
    let listed: Vec<String> = mount_call(rt, url, secs, "EXPORT", async {
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

/// A connected NFSv3 target directory.
pub struct NfsTarget {
    conn: Arc<Mutex<Conn>>,
    dir: nfs_fh3,
    sizes: Sizes,
    url: String,
}

fn parts(spec: &TargetSpec) -> (&str, u16, u16, &str) {
    let TargetUrl::Nfs {
        host,
        port,
        mount_port,
        export,
    } = &spec.url
    else {
        unreachable!("NfsTarget for an nfs:// URL");
    };
    (host, *port, *mount_port, export)
}

impl NfsTarget {
    /// Guard, connect to MOUNT and NFS (guarding both peers), mount, and enter the
    /// directory.
    pub fn connect(spec: &TargetSpec, me: &SelfIdentity) -> Result<NfsTarget, TargetError> {
        let url = spec.url.to_string();
        let (host, port, mount_port, export) = parts(spec);
        let secs = spec.timeout_secs.max(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| TargetError::Io {
                target: url.clone(),
                op: "starting the NFS client runtime".into(),
                detail: e.to_string(),
                retry: Retry::Temporary,
            })?;
        let cred = credential();
        // Guarded resolution; the MOUNT connection picks the address, NFS uses the same.
        let addrs = me.resolve(&url, host, mount_port)?;
        let mut last = None;
        let mut mount_sock = None;
        for a in addrs {
            match connect_guarded(&rt, me, &url, a, secs) {
                Ok(s) => {
                    mount_sock = Some((a, s));
                    break;
                }
                Err(e @ TargetError::Refused(_)) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        let Some((addr, msock)) = mount_sock else {
            return Err(last.expect("resolve returns at least one address"));
        };
        let mut mc =
            MountClient::new_with_auth(TokioIo::new(msock), cred.clone(), opaque_auth::default());
        let (root, rest) = mount(&rt, &mut mc, &url, secs, export)?;
        drop(mc); // NFSv3 is stateless: the MOUNT connection is not needed any more.

        let nsock = connect_guarded(&rt, me, &url, SocketAddr::new(addr.ip(), port), secs)?;
        let nfs = Nfs3Client::new_with_auth(TokioIo::new(nsock), cred, opaque_auth::default());
        let mut conn = Conn {
            rt,
            nfs,
            url: url.clone(),
            secs,
            broken: None,
        };
        let sizes = conn
            .call("FSINFO", async |c| {
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
            })?;
        let mut dir = root;
        for comp in &rest {
            let r = conn.call(&format!("LOOKUP {comp}"), async |c| {
                c.lookup(&LOOKUP3args {
                    what: diropargs(&dir, comp),
                })
                .await
            })?;
            dir = match r {
                Nfs3Result::Ok(ok) => ok.object,
                Nfs3Result::Err((nfsstat3::NFS3ERR_NOENT, _)) => {
                    return Err(TargetError::Invalid {
                        target: url,
                        why: format!(
                            "the directory {comp} of {export} does not exist on the server; create it there"
                        ),
                    })
                }
                Nfs3Result::Err((s, _)) => {
                    return Err(map_stat(&url, "entering the directory", export, s))
                }
            };
        }
        let attr = conn.call("GETATTR", async |c| {
            c.getattr(&GETATTR3args {
                object: dir.clone(),
            })
            .await
        })?;
        match attr {
            Nfs3Result::Ok(ok) if ok.obj_attributes.type_ == ftype3::NF3DIR => {}
            Nfs3Result::Ok(_) => {
                return Err(TargetError::Invalid {
                    target: url,
                    why: format!("{export} is not a directory"),
                })
            }
            Nfs3Result::Err((s, _)) => return Err(map_stat(&url, "GETATTR", export, s)),
        }
        Ok(NfsTarget {
            conn: Arc::new(Mutex::new(conn)),
            dir,
            sizes,
            url,
        })
    }

    fn lookup(&self, name: &str) -> Result<Result<nfs_fh3, nfsstat3>, TargetError> {
        lookup(&self.conn, &self.dir, name)
    }
}

/// LOOKUPs `name` in `dir`: its handle, or the server's status (NFS3ERR_NOENT if absent).
fn lookup(
    conn: &Mutex<Conn>,
    dir: &nfs_fh3,
    name: &str,
) -> Result<Result<nfs_fh3, nfsstat3>, TargetError> {
    let r = conn.lock().unwrap_or_else(PoisonError::into_inner).call(
        &format!("LOOKUP {name}"),
        async |c| {
            c.lookup(&LOOKUP3args {
                what: diropargs(dir, name),
            })
            .await
        },
    )?;
    Ok(match r {
        Nfs3Result::Ok(ok) => Ok(ok.object),
        Nfs3Result::Err((s, _)) => Err(s),
    })
}

/// REMOVEs `name` in `dir`.
fn remove(conn: &Mutex<Conn>, url: &str, dir: &nfs_fh3, name: &str) -> Result<(), TargetError> {
    let r = conn.lock().unwrap_or_else(PoisonError::into_inner).call(
        &format!("REMOVE {name}"),
        async |c| {
            c.remove(&REMOVE3args {
                object: diropargs(dir, name),
            })
            .await
        },
    )?;
    match r {
        Nfs3Result::Ok(_) => Ok(()),
        Nfs3Result::Err((s, _)) => Err(map_stat(url, &format!("deleting {name}"), name, s)),
    }
}

struct NfsUpload {
    conn: Arc<Mutex<Conn>>,
    dir: nfs_fh3,
    file: nfs_fh3,
    temp: String,
    url: String,
    chunk: usize,
    buf: Vec<u8>,
    offset: u64,
    /// The write verifier of the first UNSTABLE WRITE.
    verf: Option<writeverf3>,
    /// Set after a failed write: the upload takes no more data.
    failed: bool,
    done: bool,
}

impl NfsUpload {
    /// WRITEs `data` at the current offset (all of it, across short writes).
    fn send(&mut self, mut data: &[u8]) -> Result<(), TargetError> {
        while !data.is_empty() {
            let n = data.len().min(self.chunk);
            let (file, offset) = (&self.file, self.offset);
            let piece = &data[..n];
            let r = self
                .conn
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .call("WRITE", async |c| {
                    c.write(&WRITE3args {
                        file: file.clone(),
                        offset,
                        count: piece.len() as u32,
                        stable: stable_how::UNSTABLE,
                        data: Opaque::borrowed(piece),
                    })
                    .await
                })?;
            let ok = match r {
                Nfs3Result::Ok(ok) => ok,
                Nfs3Result::Err((s, _)) => {
                    return Err(map_stat(&self.url, "writing the archive", &self.temp, s))
                }
            };
            self.check_verf(ok.verf)?;
            let written = (ok.count as usize).min(n);
            if written == 0 {
                return Err(TargetError::Io {
                    target: self.url.clone(),
                    op: "writing the archive".into(),
                    detail: "the server wrote 0 bytes".into(),
                    retry: Retry::Temporary,
                });
            }
            self.offset += written as u64;
            data = &data[written..];
        }
        Ok(())
    }

    /// A write verifier that changes means the server restarted and may have dropped
    /// unstable data.
    fn check_verf(&mut self, v: writeverf3) -> Result<(), TargetError> {
        match self.verf {
            None => {
                self.verf = Some(v);
                Ok(())
            }
            Some(old) if old == v => Ok(()),
            Some(_) => Err(TargetError::Io {
                target: self.url.clone(),
                op: "writing the archive".into(),
                detail: "the server restarted during the upload (write verifier changed), so unstable data may be lost; retry".into(),
                retry: Retry::Temporary,
            }),
        }
    }

    fn flush_buf(&mut self) -> Result<(), TargetError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let r = self.send(&buf);
        self.buf = buf;
        self.buf.clear();
        r
    }

    fn publish(&mut self, name: &str) -> Result<(), TargetError> {
        self.flush_buf()?;
        let file = &self.file;
        let r = self
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .call("COMMIT", async |c| {
                c.commit(&COMMIT3args {
                    file: file.clone(),
                    offset: 0,
                    count: 0,
                })
                .await
            })?;
        match r {
            Nfs3Result::Ok(ok) => self.check_verf(ok.verf)?,
            Nfs3Result::Err((s, _)) => {
                return Err(map_stat(&self.url, "committing the upload", &self.temp, s))
            }
        }
        // NFSv3 RENAME replaces an existing target: make sure there is none.
        let dir = &self.dir;
        match lookup(&self.conn, dir, name)? {
            Ok(_) => {
                return Err(TargetError::Exists {
                    target: self.url.clone(),
                    name: name.into(),
                })
            }
            Err(nfsstat3::NFS3ERR_NOENT) => {}
            Err(s) => return Err(map_stat(&self.url, &format!("publishing {name}"), name, s)),
        }
        let temp = self.temp.as_str();
        let r = self
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .call(&format!("RENAME {temp} {name}"), async |c| {
                c.rename(&RENAME3args {
                    from: diropargs(dir, temp),
                    to: diropargs(dir, name),
                })
                .await
            })?;
        match r {
            Nfs3Result::Ok(_) => Ok(()),
            Nfs3Result::Err((s, _)) => {
                Err(map_stat(&self.url, &format!("publishing {name}"), name, s))
            }
        }
    }
}

impl Write for NfsUpload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed || self.done {
            return Err(io::Error::other(
                "the NFS upload failed earlier; it takes no more data",
            ));
        }
        if data.is_empty() {
            return Ok(0);
        }
        let r = if self.buf.is_empty() && data.len() >= self.chunk {
            // Large writes go straight out, a chunk at a time.
            self.send(&data[..self.chunk]).map(|()| self.chunk)
        } else {
            let n = data.len().min(self.chunk - self.buf.len());
            self.buf.extend_from_slice(&data[..n]);
            if self.buf.len() == self.chunk {
                self.flush_buf().map(|()| n)
            } else {
                Ok(n)
            }
        };
        r.map_err(|e| {
            self.failed = true;
            e.into_io()
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        // Data reaches the server in whole chunks; `commit` sends the rest and COMMITs.
        if self.failed {
            return Err(io::Error::other("the NFS upload failed earlier"));
        }
        Ok(())
    }
}

impl Upload for NfsUpload {
    fn commit(mut self: Box<Self>, name: &str) -> Result<(), TargetError> {
        if self.failed {
            return Err(TargetError::Io {
                target: self.url.clone(),
                op: format!("publishing {name}"),
                detail: "the upload failed earlier".into(),
                retry: Retry::Temporary,
            });
        }
        super::check_plain(&self.url, name)?;
        let r = self.publish(name);
        if r.is_ok() {
            self.done = true;
        }
        // On failure, Drop removes the temporary.
        r
    }

    fn temp_name(&self) -> &str {
        &self.temp
    }
}

impl Drop for NfsUpload {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: a lost connection leaves it to the next run's cleanup.
            let _ = remove(&self.conn, &self.url, &self.dir, &self.temp);
        }
    }
}

struct NfsReader {
    conn: Arc<Mutex<Conn>>,
    file: nfs_fh3,
    name: String,
    url: String,
    offset: u64,
    max: u32,
    eof: bool,
}

impl Read for NfsReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.eof || buf.is_empty() {
            return Ok(0);
        }
        let count = (buf.len() as u64).min(u64::from(self.max)) as u32;
        let (file, offset) = (&self.file, self.offset);
        let r = self
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .call("READ", async |c| {
                c.read(&READ3args {
                    file: file.clone(),
                    offset,
                    count,
                })
                .await
            })
            .map_err(TargetError::into_io)?;
        match r {
            Nfs3Result::Ok(ok) => {
                let data = ok.data.as_ref();
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                self.offset += n as u64;
                if ok.eof || n == 0 {
                    self.eof = true;
                }
                Ok(n)
            }
            Nfs3Result::Err((s, _)) => {
                Err(map_stat(&self.url, "reading the archive", &self.name, s).into_io())
            }
        }
    }
}

impl Target for NfsTarget {
    fn url(&self) -> String {
        self.url.clone()
    }

    fn begin(&mut self, appliance: &str) -> Result<Box<dyn Upload>, TargetError> {
        let temp = temp_name(appliance);
        let dir = &self.dir;
        let t = temp.as_str();
        let r = self
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .call(&format!("CREATE {temp}"), async |c| {
                c.create(&CREATE3args {
                    where_: diropargs(dir, t),
                    how: createhow3::GUARDED(sattr3 {
                        mode: set_mode3::Some(0o600),
                        ..sattr3::default()
                    }),
                })
                .await
            })?;
        let file = match r {
            Nfs3Result::Ok(ok) => match ok.obj {
                Nfs3Option::Some(fh) => fh,
                Nfs3Option::None => match self.lookup(&temp)? {
                    Ok(fh) => fh,
                    Err(s) => {
                        return Err(map_stat(&self.url, "creating the upload file", &temp, s))
                    }
                },
            },
            Nfs3Result::Err((s, _)) => {
                return Err(map_stat(&self.url, "creating the upload file", &temp, s))
            }
        };
        Ok(Box::new(NfsUpload {
            conn: self.conn.clone(),
            dir: self.dir.clone(),
            file,
            temp,
            url: self.url.clone(),
            chunk: self.sizes.write as usize,
            buf: Vec::with_capacity(self.sizes.write as usize),
            offset: 0,
            verf: None,
            failed: false,
            done: false,
        }))
    }

    fn list(&mut self) -> Result<Vec<Entry>, TargetError> {
        let mut out = Vec::new();
        let mut cookie = 0;
        let mut verf = Default::default();
        loop {
            let dir = &self.dir;
            let r = self
                .conn
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .call("READDIRPLUS", async |c| {
                    c.readdirplus(&READDIRPLUS3args {
                        dir: dir.clone(),
                        cookie,
                        cookieverf: verf,
                        dircount: 64 << 10,
                        maxcount: 256 << 10,
                    })
                    .await
                })?;
            let ok = match r {
                Nfs3Result::Ok(ok) => ok,
                Nfs3Result::Err((s, _)) => {
                    return Err(map_stat(&self.url, "listing", "the directory", s))
                }
            };
            verf = ok.cookieverf;
            for e in ok.reply.entries.0 {
                cookie = e.cookie;
                let name = String::from_utf8_lossy(e.name.as_ref()).into_owned();
                if name == "." || name == ".." {
                    continue;
                }
                match e.name_attributes {
                    Nfs3Option::Some(a) if a.type_ == ftype3::NF3REG => out.push(Entry {
                        name,
                        size: Some(a.size),
                    }),
                    Nfs3Option::Some(_) => {}
                    // No attributes in the reply: a name the server could not stat now.
                    Nfs3Option::None => out.push(Entry { name, size: None }),
                }
            }
            if ok.reply.eof {
                break;
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open(&mut self, name: &str) -> Result<Box<dyn Read + Send>, TargetError> {
        super::check_plain(&self.url, name)?;
        let file = match self.lookup(name)? {
            Ok(fh) => fh,
            Err(s) => {
                return Err(map_stat(
                    &self.url,
                    &format!("archive {name}"),
                    &format!("archive {name}"),
                    s,
                ))
            }
        };
        Ok(Box::new(BufReader::with_capacity(
            self.sizes.read as usize,
            NfsReader {
                conn: self.conn.clone(),
                file,
                name: name.to_string(),
                url: self.url.clone(),
                offset: 0,
                max: self.sizes.read,
                eof: false,
            },
        )))
    }

    fn delete(&mut self, name: &str) -> Result<(), TargetError> {
        super::check_plain(&self.url, name)?;
        remove(&self.conn, &self.url, &self.dir, name)
    }

    fn free_space(&mut self) -> Result<Option<u64>, TargetError> {
        let dir = &self.dir;
        let r = self
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .call("FSSTAT", async |c| {
                c.fsstat(&FSSTAT3args {
                    fsroot: dir.clone(),
                })
                .await
            })?;
        match r {
            Nfs3Result::Ok(ok) => Ok(Some(ok.abytes)),
            Nfs3Result::Err(_) => Ok(None),
        }
    }
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
