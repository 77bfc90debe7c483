//! `nfs://host[:port]/export[?mountport=N]`.

use std::fmt;

use super::{bracket, host_port, invalid, Parts};
use crate::targets::TargetError;

/// An `nfs://` target: an NFSv3 export (or a directory inside one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsUrl {
    /// Host.
    pub host: String,
    /// NFS port.
    pub port: u16,
    /// MOUNT protocol port (defaults to the NFS port).
    pub mount_port: u16,
    /// The export path, which is also the target directory.
    pub export: String,
}

impl NfsUrl {
    pub(super) fn parse(p: &Parts) -> Result<NfsUrl, TargetError> {
        let url = p.url;
        if p.userinfo.is_some() {
            return Err(invalid(url, "nfs URLs take no user"));
        }
        let (host, port) = host_port(url, p.hostport, 2049)?;
        let mut mount_port = port;
        for opt in p.query.unwrap_or("").split('&').filter(|o| !o.is_empty()) {
            match opt.split_once('=') {
                Some(("mountport", v)) => {
                    mount_port = v
                        .parse()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| invalid(url, "bad mountport"))?
                }
                _ => return Err(invalid(url, format!("unknown option {opt:?}"))),
            }
        }
        let export = p.path.trim_end_matches('/').to_string();
        if export.is_empty() {
            return Err(invalid(url, "no export: nfs://host/export"));
        }
        Ok(NfsUrl {
            host,
            port,
            mount_port,
            export,
        })
    }
}

impl fmt::Display for NfsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (host, port) = (bracket(&self.host), self.port);
        write!(f, "nfs://{host}:{port}{}", self.export)?;
        if self.mount_port != port {
            write!(f, "?mountport={}", self.mount_port)?;
        }
        Ok(())
    }
}
