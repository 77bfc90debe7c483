//! Target URLs: `ssh://user@host[:port]/path`, `smb://[domain;]user@host[:port]/share/path`,
//! `nfs://host[:port]/export[?mountport=N]`, `s3://bucket[/prefix]` and `file:///path`. Parsing only; no I/O.
//!
//! [`TargetUrl::parse`] splits what every scheme shares (scheme, user, host and port, path,
//! query) and hands it to the scheme's own struct ([`SshUrl`], [`SmbUrl`], [`NfsUrl`],
//! [`PathUrl`]), each in a file of its own here; the transport takes that struct.
//!
//! Passwords never appear in a URL: `user:password@` is refused with a pointer to
//! `password_file` / `password_env`.

mod nfs;
mod path;
mod s3;
mod smb;
mod ssh;

use std::fmt;

pub use nfs::NfsUrl;
pub use path::PathUrl;
pub use s3::{LockMode, S3Options, S3Url};
pub use smb::SmbUrl;
pub use ssh::SshUrl;

use super::TargetError;

/// A parsed target URL: one variant, and one struct, per scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetUrl {
    /// `file://`: a directory mounted by other means (NFS, CIFS, sshfs).
    Path(PathUrl),
    /// `ssh://`: SFTP over SSH.
    Ssh(SshUrl),
    /// `smb://`: SMB2/3.
    Smb(SmbUrl),
    /// `nfs://`: NFSv3.
    Nfs(NfsUrl),
    /// `s3://`: an S3 bucket and prefix (the endpoint is in `[targets.NAME]`).
    S3(S3Url),
}

/// The parts of a `scheme://[userinfo@]host[:port][/path][?query]` URL that every network
/// scheme shares. `path` is %-decoded and has no `..`; a password in `userinfo` is refused.
struct Parts<'a> {
    url: &'a str,
    userinfo: Option<&'a str>,
    hostport: &'a str,
    path: String,
    query: Option<&'a str>,
}

impl<'a> Parts<'a> {
    /// Splits `rest`, what follows `scheme://` in `url`.
    fn split(url: &'a str, rest: &'a str) -> Result<Parts<'a>, TargetError> {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if userinfo.is_some_and(|u| u.contains(':')) {
            return Err(invalid(
                url,
                "no password in the URL: put it in a file named by password_file (or the variable named by password_env) of [targets.NAME], or in $OFFBOX_TARGET_PASSWORD_FILE",
            ));
        }
        let path = percent_decode(url, path)?;
        if path.split('/').any(|c| c == "..") {
            return Err(invalid(url, "no .. in the path"));
        }
        Ok(Parts {
            url,
            userinfo,
            hostport,
            path,
            query,
        })
    }
}

/// The %-decoded user of the URL, if one is given and not empty.
fn user(p: &Parts) -> Result<Option<String>, TargetError> {
    Ok(p.userinfo
        .map(|u| percent_decode(p.url, u))
        .transpose()?
        .filter(|u| !u.is_empty()))
}

fn invalid(url: &str, why: impl Into<String>) -> TargetError {
    TargetError::Invalid {
        target: url.to_string(),
        why: why.into(),
    }
}

fn percent_decode(url: &str, s: &str) -> Result<String, TargetError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(url, "bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid(url, "not UTF-8 after %-decoding"))
}

/// Splits `host[:port]` or `[v6][:port]`.
fn host_port(url: &str, s: &str, default: u16) -> Result<(String, u16), TargetError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| invalid(url, "unclosed [ in the host"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| invalid(url, "junk after ]"))?,
            ),
        };
        (h.to_string(), port)
    } else if s.matches(':').count() > 1 {
        return Err(invalid(
            url,
            "write an IPv6 address in brackets: [2001:db8::5]:22",
        ));
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(invalid(url, "no host"));
    }
    let port = match port {
        None => default,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid(url, format!("bad port {p:?}")))?,
    };
    Ok((host, port))
}

impl TargetUrl {
    /// Whether `s` looks like a URL rather than a configured target name.
    pub fn looks_like_url(s: &str) -> bool {
        s.contains("://")
    }

    /// Parses a target URL.
    pub fn parse(url: &str) -> Result<TargetUrl, TargetError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid(url, "expected scheme://..."))?;
        if scheme == "file" {
            return PathUrl::parse(url, rest).map(TargetUrl::Path);
        }
        let parts = Parts::split(url, rest)?;
        match scheme {
            "ssh" | "sftp" => SshUrl::parse(&parts).map(TargetUrl::Ssh),
            "smb" | "cifs" => SmbUrl::parse(&parts).map(TargetUrl::Smb),
            "nfs" => NfsUrl::parse(&parts).map(TargetUrl::Nfs),
            "s3" => S3Url::parse(&parts).map(TargetUrl::S3),
            other => Err(invalid(
                url,
                format!("unknown scheme {other}: use ssh://, smb://, nfs://, s3:// or file://"),
            )),
        }
    }

    /// The host to guard and connect to, if any (an `s3://` URL names none: its endpoint
    /// is guarded by the transport).
    pub fn host(&self) -> Option<&str> {
        match self {
            TargetUrl::Path(_) | TargetUrl::S3(_) => None,
            TargetUrl::Ssh(u) => Some(&u.host),
            TargetUrl::Smb(u) => Some(&u.host),
            TargetUrl::Nfs(u) => Some(&u.host),
        }
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetUrl::Path(u) => u.fmt(f),
            TargetUrl::Ssh(u) => u.fmt(f),
            TargetUrl::Smb(u) => u.fmt(f),
            TargetUrl::Nfs(u) => u.fmt(f),
            TargetUrl::S3(u) => u.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let table: &[(&str, TargetUrl)] = &[
            (
                "ssh://backup@10.1.2.3:2222/srv/offbox/",
                TargetUrl::Ssh(SshUrl {
                    user: "backup".into(),
                    host: "10.1.2.3".into(),
                    port: 2222,
                    path: "/srv/offbox".into(),
                }),
            ),
            (
                "ssh://b@[2001:db8::5]/~/backups",
                TargetUrl::Ssh(SshUrl {
                    user: "b".into(),
                    host: "2001:db8::5".into(),
                    port: 22,
                    path: "backups".into(),
                }),
            ),
            (
                "smb://CORP;svc@nas:4445/backup/pam/a",
                TargetUrl::Smb(SmbUrl {
                    domain: Some("CORP".into()),
                    user: "svc".into(),
                    host: "nas".into(),
                    port: 4445,
                    share: "backup".into(),
                    path: "pam/a".into(),
                }),
            ),
            (
                "nfs://nas:2049/export/offbox?mountport=20048",
                TargetUrl::Nfs(NfsUrl {
                    host: "nas".into(),
                    port: 2049,
                    mount_port: 20048,
                    export: "/export/offbox".into(),
                }),
            ),
            (
                "file:///mnt/backup%20x",
                TargetUrl::Path(PathUrl {
                    path: "/mnt/backup x".into(),
                }),
            ),
        ];
        for (s, want) in table {
            assert_eq!(&TargetUrl::parse(s).unwrap(), want, "{s}");
            let again = TargetUrl::parse(&want.to_string()).unwrap();
            assert_eq!(&again, want, "display of {s} parses back");
        }
    }

    #[test]
    fn refuses() {
        for s in [
            "ssh://u:pw@h/p",
            "ssh://h/p",
            "ssh://u@h",
            "ssh://u@2001:db8::1/p",
            "ssh://u@h:0/p",
            "ssh://u@h/a/../b",
            "ssh://u@h//",
            "ssh://u@h/~//",
            // Found by the target_url fuzz target: printed back as the relative `/~/bs`.
            "ssh://obfofobfofx@[8]:22/~//~/bs",
            "ssh://u@h/~//srv",
            "smb://u@h",
            "nfs://h",
            "file://relative",
            "ftp://h/p",
            "nfs://h/e?x=1",
        ] {
            assert!(TargetUrl::parse(s).is_err(), "{s} should be refused");
        }
    }
}
