//! `smb://[domain;]user@host[:port]/share/path` (also `cifs://`).

use std::fmt;

use super::{bracket, host_port, invalid, user, Parts};
use crate::targets::TargetError;

/// An `smb://` target: a directory in an SMB2/3 share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmbUrl {
    /// Windows domain, if any.
    pub domain: Option<String>,
    /// User.
    pub user: String,
    /// Host.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Share name.
    pub share: String,
    /// Directory inside the share ("" for its root).
    pub path: String,
}

impl SmbUrl {
    pub(super) fn parse(p: &Parts) -> Result<SmbUrl, TargetError> {
        if p.query.is_some() {
            return Err(invalid(p.url, "smb URLs take no ?options"));
        }
        let raw =
            user(p)?.ok_or_else(|| invalid(p.url, "write smb://[domain;]user@host/share/path"))?;
        let (domain, user) = match raw.split_once(';') {
            Some((d, u)) => (Some(d.to_string()), u.to_string()),
            None => (None, raw),
        };
        let (host, port) = host_port(p.url, p.hostport, 445)?;
        let mut parts = p.path.trim_matches('/').splitn(2, '/');
        let share = parts.next().unwrap_or("").to_string();
        if share.is_empty() {
            return Err(invalid(p.url, "no share: smb://user@host/share/path"));
        }
        let path = parts.next().unwrap_or("").trim_matches('/').to_string();
        Ok(SmbUrl {
            domain,
            user,
            host,
            port,
            share,
            path,
        })
    }
}

impl fmt::Display for SmbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self
            .domain
            .as_ref()
            .map(|d| format!("{d};"))
            .unwrap_or_default();
        let p = if self.path.is_empty() {
            String::new()
        } else {
            format!("/{}", self.path)
        };
        let (user, host, port) = (&self.user, bracket(&self.host), self.port);
        write!(f, "smb://{d}{user}@{host}:{port}/{}{p}", self.share)
    }
}
