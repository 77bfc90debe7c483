//! `ssh://user@host[:port]/path` (also `sftp://`). A path that starts with `/~/` is
//! relative to the login directory.

use std::fmt;

use super::{bracket, host_port, invalid, user, Parts};
use crate::targets::TargetError;

/// An `ssh://` target: SFTP over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshUrl {
    /// Remote user.
    pub user: String,
    /// Host name or address literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Remote directory: absolute, or relative to the login directory (written `/~/dir`
    /// in the URL).
    pub path: String,
}

impl SshUrl {
    pub(super) fn parse(p: &Parts) -> Result<SshUrl, TargetError> {
        if p.query.is_some() {
            return Err(invalid(p.url, "ssh URLs take no ?options"));
        }
        let user = user(p)?.ok_or_else(|| invalid(p.url, "write ssh://user@host/path"))?;
        let (host, port) = host_port(p.url, p.hostport, 22)?;
        let path = match p.path.strip_prefix("/~/") {
            // `/~//srv` would print back as the relative `/~/srv`: which one was meant?
            Some(rel) if rel.starts_with('/') => return Err(invalid(
                p.url,
                "write /~/dir for a directory in the login directory, or /dir for an absolute one",
            )),
            Some(rel) => rel,
            None => &p.path,
        };
        // Checked after trimming, so that `ssh://u@h//` is no empty path.
        let path = path.trim_end_matches('/').to_string();
        if path.is_empty() {
            return Err(invalid(
                p.url,
                "give a directory: ssh://user@host/srv/offbox",
            ));
        }
        Ok(SshUrl {
            user,
            host,
            port,
            path,
        })
    }
}

impl fmt::Display for SshUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = if self.path.starts_with('/') {
            self.path.clone()
        } else {
            format!("/~/{}", self.path)
        };
        let (user, host) = (&self.user, bracket(&self.host));
        if self.port == 22 {
            write!(f, "ssh://{user}@{host}{p}")
        } else {
            write!(f, "ssh://{user}@{host}:{}{p}", self.port)
        }
    }
}
