//! `ssh://user@host[:port]/path`: SFTP over SSH, against a stock OpenSSH server.
//!
//! Two sessions, both on connections offbox dials through the guard:
//! - control, with libssh2 (`ssh2` crate): the handshake, where the host key is checked
//!   against this appliance's own and against the pinned one, authentication, listing,
//!   delete, rename;
//! - data, with OpenSSH's own client ([`openssh`], started on the dialled socket with
//!   `ProxyUseFdpass`, [`fdpass`]) and SFTP with many requests in flight ([`channel`]):
//!   uploads and downloads. It starts on the first upload or download, with the same
//!   pinned known_hosts (`StrictHostKeyChecking=yes`) and key, no agent and no ssh config.
//!
//! - Authentication: the appliance's own key pair ([`ensure_key_pair`] creates it), no
//!   passwords.
//! - Host key pinned in a known_hosts file: an unknown key fails with its fingerprint until
//!   the operator runs `offbox target accept-host-key ... --fingerprint FP` ([`pin`]); a
//!   changed key fails loudly. A server presenting this appliance's own host key is refused
//!   by the guard.
//! - Uploads: exclusive create of a temporary name, `fsync@openssh.com`, close, then
//!   rename to a final name that does not exist yet (OpenSSH's SFTP v3 rename never
//!   overwrites).

mod channel;
mod conn;
mod fdpass;
mod host_key;
mod key_pair;
mod openssh;
mod upload;

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ssh2::{FileStat, OpenFlags, OpenType, Session, Sftp};

pub use conn::probe_host_key;
pub use fdpass::relay as fdpass_relay;
pub use host_key::{blob_key_type, host_pattern, lookup, pin, HostKey, Pinned};
pub use key_pair::ensure_key_pair;

use super::{net, temp_name, Entry, SshUrl, Target, TargetError, TargetSpec, Upload};
use crate::guard::SelfIdentity;
use channel::Channel;
use conn::map_err;
use openssh::SshArgs;
use upload::SshUpload;

/// A connected SFTP session in the target directory.
pub(crate) struct SshTarget {
    sftp: Arc<Sftp>,
    _session: Session,
    dir: PathBuf,
    url: String,
    /// What the data session needs, and the data session once started.
    args: SshArgs,
    me: SelfIdentity,
    data: Option<Arc<Channel>>,
}

impl SshTarget {
    /// Guard, connect, guard the peer, check the pinned host key, authenticate with the
    /// appliance key, open SFTP, and check that the directory exists.
    pub fn connect(
        spec: &TargetSpec,
        target: &SshUrl,
        me: &SelfIdentity,
    ) -> Result<SshTarget, TargetError> {
        let url = spec.url.to_string();
        let (sess, key) = conn::handshake(spec, target, me)?;
        host_key::check_pinned(&url, &spec.known_hosts, &key)?;
        conn::authenticate(&sess, spec, &url, &target.user)?;
        let (sftp, dir) = conn::open_dir(&sess, &url, target)?;
        Ok(SshTarget {
            sftp: Arc::new(sftp),
            _session: sess,
            dir,
            url,
            args: SshArgs::new(spec, target),
            me: me.clone(),
            data: None,
        })
    }

    /// The data session, started on first use: a second connection through the guard,
    /// handed to `ssh`.
    fn data(&mut self) -> Result<Arc<Channel>, TargetError> {
        if let Some(c) = &self.data {
            return Ok(c.clone());
        }
        let t = &self.args.target;
        let timeout = Duration::from_secs(self.args.timeout_secs);
        let tcp = net::connect(&self.me, &self.url, &t.host, t.port, timeout)?;
        let c = Channel::open(&self.args, tcp)?;
        self.data = Some(c.clone());
        Ok(c)
    }
}

impl Target for SshTarget {
    fn url(&self) -> String {
        self.url.clone()
    }

    fn begin(&mut self, appliance: &str) -> Result<Box<dyn Upload>, TargetError> {
        let temp = temp_name(appliance);
        let file = self.data()?.create(&self.dir.join(&temp))?;
        Ok(Box::new(SshUpload {
            file: Some(file),
            sftp: self.sftp.clone(),
            dir: self.dir.clone(),
            temp,
            url: self.url.clone(),
        }))
    }

    fn list(&mut self) -> Result<Vec<Entry>, TargetError> {
        let items: Vec<(PathBuf, FileStat)> = self
            .sftp
            .readdir(&self.dir)
            .map_err(|e| map_err(&self.url, "listing", &e))?;
        let mut out: Vec<Entry> = items
            .into_iter()
            .filter(|(_, st)| st.is_file())
            .filter_map(|(p, st)| {
                Some(Entry {
                    name: p.file_name()?.to_string_lossy().into_owned(),
                    size: st.size,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open(&mut self, name: &str) -> Result<Box<dyn Read + Send>, TargetError> {
        super::check_plain(&self.url, name)?;
        let path = self.dir.join(name);
        Ok(Box::new(
            self.data()?.read(&path, &format!("archive {name}"))?,
        ))
    }

    fn delete(&mut self, name: &str) -> Result<(), TargetError> {
        super::check_plain(&self.url, name)?;
        self.sftp
            .unlink(&self.dir.join(name))
            .map_err(|e| map_err(&self.url, &format!("deleting {name}"), &e))
    }

    fn free_space(&mut self) -> Result<Option<u64>, TargetError> {
        // libssh2 has only fstatvfs@openssh.com, on a file handle: use a scratch file.
        let scratch = self.dir.join(temp_name("statvfs"));
        let Ok(mut f) = self.sftp.open_mode(
            &scratch,
            OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
            0o600,
            OpenType::File,
        ) else {
            return Ok(None);
        };
        let v = f.statvfs();
        drop(f);
        let _ = self.sftp.unlink(&scratch);
        Ok(v.ok().map(|v| v.f_bavail.saturating_mul(v.f_frsize)))
    }
}
