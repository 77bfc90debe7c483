//! `ssh://user@host[:port]/path`: SFTP over OpenSSH's own client, against a stock OpenSSH
//! server.
//!
//! - Connection: offbox dials through the guard ([`net::connect`]: the self-target check
//!   before connecting and on the connected peer) and hands the socket to `ssh`
//!   (`ProxyUseFdpass`, [`fdpass`]), started with no ssh config, no agent, the appliance's
//!   key only, and the pinned known_hosts as its only trust ([`openssh`]). SFTP runs over
//!   it with many requests in flight ([`channel`]).
//! - Authentication: the appliance's own key pair ([`ensure_key_pair`] creates it), no
//!   passwords.
//! - Host key pinned in a known_hosts file (`StrictHostKeyChecking=yes`): an unknown key
//!   fails with its fingerprint until the operator runs `offbox target accept-host-key ...
//!   --fingerprint FP` ([`pin`]); a changed key fails loudly. Those errors name the key the
//!   server presents, read by a handshake with libssh2 ([`conn`]) after `ssh` refused it. A
//!   pinned key that is this appliance's own host key is refused by the guard before
//!   connecting (`ssh` accepts no other key, so the server cannot present it either).
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

pub use conn::probe_host_key;
pub use fdpass::relay as fdpass_relay;
pub use host_key::{blob_key_type, host_pattern, lookup, pin, HostKey, Pinned};
pub use key_pair::ensure_key_pair;

use super::{net, temp_name, Entry, SshUrl, Target, TargetError, TargetSpec, Upload};
use crate::guard::SelfIdentity;
use channel::Channel;
use openssh::SshArgs;
use upload::SshUpload;

/// A connected SFTP session in the target directory.
pub(crate) struct SshTarget {
    ch: Arc<Channel>,
    dir: PathBuf,
    url: String,
}

impl SshTarget {
    /// Checks the key and the pinned host keys, connects through the guard, starts `ssh`
    /// and SFTP, and checks that the directory exists.
    pub fn connect(
        spec: &TargetSpec,
        target: &SshUrl,
        me: &SelfIdentity,
    ) -> Result<SshTarget, TargetError> {
        let url = spec.url.to_string();
        conn::check_identity(spec, &url, &target.user)?;
        host_key::check_not_own(&url, &spec.known_hosts, target, me)?;
        let timeout = Duration::from_secs(spec.timeout_secs);
        let tcp = net::connect(me, &url, &target.host, target.port, timeout)?;
        let ch = Channel::open(&SshArgs::new(spec, target), tcp)
            .map_err(|e| conn::explain(spec, target, me, e))?;
        let dir = PathBuf::from(&target.path);
        ch.check_dir(&dir, &target.user)?;
        Ok(SshTarget { ch, dir, url })
    }
}

impl Target for SshTarget {
    fn url(&self) -> String {
        self.url.clone()
    }

    fn begin(&mut self, appliance: &str) -> Result<Box<dyn Upload>, TargetError> {
        let temp = temp_name(appliance);
        let file = self.ch.create(&self.dir.join(&temp))?;
        Ok(Box::new(SshUpload {
            file: Some(file),
            ch: self.ch.clone(),
            dir: self.dir.clone(),
            temp,
            url: self.url.clone(),
        }))
    }

    fn list(&mut self) -> Result<Vec<Entry>, TargetError> {
        let mut out: Vec<Entry> = self
            .ch
            .list(&self.dir)?
            .into_iter()
            .map(|(name, size)| Entry { name, size })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open(&mut self, name: &str) -> Result<Box<dyn Read + Send>, TargetError> {
        super::check_plain(&self.url, name)?;
        let path = self.dir.join(name);
        Ok(Box::new(self.ch.read(
            &path,
            &format!("archive {name}"),
            0,
        )?))
    }

    fn open_at(&mut self, name: &str, offset: u64) -> Result<Box<dyn Read + Send>, TargetError> {
        super::check_plain(&self.url, name)?;
        let path = self.dir.join(name);
        Ok(Box::new(self.ch.read(
            &path,
            &format!("archive {name}"),
            offset,
        )?))
    }

    fn delete(&mut self, name: &str) -> Result<(), TargetError> {
        super::check_plain(&self.url, name)?;
        self.ch
            .remove(&self.dir.join(name), &format!("deleting {name}"))
    }

    fn free_space(&mut self) -> Result<Option<u64>, TargetError> {
        Ok(self.ch.free_space(&self.dir))
    }
}
