//! `nfs://host[:port]/export[/dir...][?mountport=N]`: NFSv3 over TCP with the userspace
//! client `nfs3_client` (no kernel mount, no CAP_SYS_ADMIN; a dead server is a timeout,
//! not a process hung in D state).
//!
//! - Connection: [`crate::targets::net`] resolves the host and refuses this appliance;
//!   offbox connects to
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
//! The tokio runtime is a current-thread runtime owned by the target
//! ([`crate::targets::runtime::Blocking`]); every RPC runs on it with the target's timeout,
//! so callers see plain `Write`/`Read`. After a timeout or a lost connection the connection
//! is not reused: later calls fail at once.
//!
//! Files: `mod.rs` the [`Target`], `conn.rs` the connection, `mount.rs` the MOUNT step,
//! `status.rs` the error mapping, `upload.rs` and `download.rs` the streams.

mod conn;
mod download;
mod mount;
mod status;
mod upload;

use std::io::{BufReader, Read};
use std::sync::{Arc, Mutex};

use nfs3_client::nfs3_types::nfs3::{
    createhow3, ftype3, nfs_fh3, nfsstat3, sattr3, set_mode3, CREATE3args, FSSTAT3args, Nfs3Option,
    Nfs3Result, READDIRPLUS3args,
};

use super::{check_plain, temp_name, Entry, NfsUrl, Target, TargetError, TargetSpec, Upload};
use crate::guard::SelfIdentity;
use conn::{call, diropargs, lookup, remove, Conn, Sizes};
use download::NfsReader;
use status::map_stat;
use upload::NfsUpload;

/// A connected NFSv3 target directory.
pub(crate) struct NfsTarget {
    conn: Arc<Mutex<Conn>>,
    dir: nfs_fh3,
    sizes: Sizes,
    url: String,
}

impl NfsTarget {
    /// Guard, connect to MOUNT and NFS (guarding both peers), mount, and enter the
    /// directory.
    pub fn connect(
        spec: &TargetSpec,
        target: &NfsUrl,
        me: &SelfIdentity,
    ) -> Result<NfsTarget, TargetError> {
        let (conn, dir, sizes) = conn::connect(spec, target, me)?;
        Ok(NfsTarget {
            conn: Arc::new(Mutex::new(conn)),
            dir,
            sizes,
            url: spec.url.to_string(),
        })
    }

    fn lookup(&self, name: &str) -> Result<Result<nfs_fh3, nfsstat3>, TargetError> {
        lookup(&self.conn, &self.dir, name)
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
        let r = call(&self.conn, &format!("CREATE {temp}"), async |c| {
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
            done: false,
        }))
    }

    fn list(&mut self) -> Result<Vec<Entry>, TargetError> {
        let mut out = Vec::new();
        let mut cookie = 0;
        let mut verf = Default::default();
        loop {
            let dir = &self.dir;
            let r = call(&self.conn, "READDIRPLUS", async |c| {
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
        self.open_at(name, 0)
    }

    fn open_at(&mut self, name: &str, offset: u64) -> Result<Box<dyn Read + Send>, TargetError> {
        check_plain(&self.url, name)?;
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
                offset,
                max: self.sizes.read,
                eof: false,
            },
        )))
    }

    fn delete(&mut self, name: &str) -> Result<(), TargetError> {
        check_plain(&self.url, name)?;
        remove(&self.conn, &self.url, &self.dir, name)
    }

    fn free_space(&mut self) -> Result<Option<u64>, TargetError> {
        let dir = &self.dir;
        let r = call(&self.conn, "FSSTAT", async |c| {
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
