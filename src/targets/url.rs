//! Target URLs: `ssh://user@host[:port]/path`, `smb://[domain;]user@host[:port]/share/path`,
//! `nfs://host[:port]/export[?mountport=N]` and `file:///path`. Parsing only; no I/O.
//!
//! Passwords never appear in a URL: `user:password@` is refused with a pointer to
//! `password_file` / `password_env`.

use std::fmt;

use super::TargetError;

/// A parsed target URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetUrl {
    /// A directory mounted by other means (NFS, CIFS, sshfs).
    File {
        /// Absolute path.
        path: String,
    },
    /// SFTP over SSH.
    Ssh {
        /// Remote user.
        user: String,
        /// Host name or address literal (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
        /// Remote directory (absolute, or relative to the login directory when it does not
        /// start with `/~`... see [`TargetUrl::parse`]).
        path: String,
    },
    /// SMB2/3.
    Smb {
        /// Windows domain, if any.
        domain: Option<String>,
        /// User.
        user: String,
        /// Host.
        host: String,
        /// TCP port.
        port: u16,
        /// Share name.
        share: String,
        /// Directory inside the share ("" for its root).
        path: String,
    },
    /// NFSv3.
    Nfs {
        /// Host.
        host: String,
        /// NFS port.
        port: u16,
        /// MOUNT protocol port (defaults to the NFS port).
        mount_port: u16,
        /// The export path, which is also the target directory.
        export: String,
    },
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
            if !rest.starts_with('/') {
                return Err(invalid(url, "write file:///absolute/path (three slashes)"));
            }
            let path = percent_decode(url, rest)?;
            return Ok(TargetUrl::File { path });
        }
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
        if let Some(u) = userinfo {
            if u.contains(':') {
                return Err(invalid(
                    url,
                    "no password in the URL: put it in a file named by password_file (or the variable named by password_env) of [targets.NAME], or in $OFFBOX_TARGET_PASSWORD_FILE",
                ));
            }
        }
        let path = percent_decode(url, path)?;
        if path.split('/').any(|c| c == "..") {
            return Err(invalid(url, "no .. in the path"));
        }
        match scheme {
            "ssh" | "sftp" => {
                if query.is_some() {
                    return Err(invalid(url, "ssh URLs take no ?options"));
                }
                let user = userinfo
                    .map(|u| percent_decode(url, u))
                    .transpose()?
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| invalid(url, "write ssh://user@host/path"))?;
                let (host, port) = host_port(url, hostport, 22)?;
                let path = match path.strip_prefix("/~/") {
                    Some(rel) => rel,
                    None => &path,
                };
                // Checked after trimming, so that `ssh://u@h//` is no empty path.
                let path = path.trim_end_matches('/').to_string();
                if path.is_empty() {
                    return Err(invalid(url, "give a directory: ssh://user@host/srv/offbox"));
                }
                Ok(TargetUrl::Ssh {
                    user,
                    host,
                    port,
                    path,
                })
            }
            "smb" | "cifs" => {
                if query.is_some() {
                    return Err(invalid(url, "smb URLs take no ?options"));
                }
                let raw = userinfo
                    .map(|u| percent_decode(url, u))
                    .transpose()?
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| invalid(url, "write smb://[domain;]user@host/share/path"))?;
                let (domain, user) = match raw.split_once(';') {
                    Some((d, u)) => (Some(d.to_string()), u.to_string()),
                    None => (None, raw),
                };
                let (host, port) = host_port(url, hostport, 445)?;
                let mut parts = path.trim_matches('/').splitn(2, '/');
                let share = parts.next().unwrap_or("").to_string();
                if share.is_empty() {
                    return Err(invalid(url, "no share: smb://user@host/share/path"));
                }
                let path = parts.next().unwrap_or("").trim_matches('/').to_string();
                Ok(TargetUrl::Smb {
                    domain,
                    user,
                    host,
                    port,
                    share,
                    path,
                })
            }
            "nfs" => {
                if userinfo.is_some() {
                    return Err(invalid(url, "nfs URLs take no user"));
                }
                let (host, port) = host_port(url, hostport, 2049)?;
                let mut mount_port = port;
                for opt in query.unwrap_or("").split('&').filter(|o| !o.is_empty()) {
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
                let export = path.trim_end_matches('/').to_string();
                if export.is_empty() {
                    return Err(invalid(url, "no export: nfs://host/export"));
                }
                Ok(TargetUrl::Nfs {
                    host,
                    port,
                    mount_port,
                    export,
                })
            }
            other => Err(invalid(
                url,
                format!("unknown scheme {other}: use ssh://, smb://, nfs:// or file://"),
            )),
        }
    }

    /// The host to guard and connect to, if any.
    pub fn host(&self) -> Option<&str> {
        match self {
            TargetUrl::File { .. } => None,
            TargetUrl::Ssh { host, .. }
            | TargetUrl::Smb { host, .. }
            | TargetUrl::Nfs { host, .. } => Some(host),
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
            TargetUrl::File { path } => write!(f, "file://{path}"),
            TargetUrl::Ssh {
                user,
                host,
                port,
                path,
            } => {
                let p = if path.starts_with('/') {
                    path.clone()
                } else {
                    format!("/~/{path}")
                };
                if *port == 22 {
                    write!(f, "ssh://{user}@{}{p}", bracket(host))
                } else {
                    write!(f, "ssh://{user}@{}:{port}{p}", bracket(host))
                }
            }
            TargetUrl::Smb {
                domain,
                user,
                host,
                port,
                share,
                path,
            } => {
                let d = domain.as_ref().map(|d| format!("{d};")).unwrap_or_default();
                let p = if path.is_empty() {
                    String::new()
                } else {
                    format!("/{path}")
                };
                write!(f, "smb://{d}{user}@{}:{port}/{share}{p}", bracket(host))
            }
            TargetUrl::Nfs {
                host,
                port,
                mount_port,
                export,
            } => {
                write!(f, "nfs://{}:{port}{export}", bracket(host))?;
                if mount_port != port {
                    write!(f, "?mountport={mount_port}")?;
                }
                Ok(())
            }
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
                TargetUrl::Ssh {
                    user: "backup".into(),
                    host: "10.1.2.3".into(),
                    port: 2222,
                    path: "/srv/offbox".into(),
                },
            ),
            (
                "ssh://b@[2001:db8::5]/~/backups",
                TargetUrl::Ssh {
                    user: "b".into(),
                    host: "2001:db8::5".into(),
                    port: 22,
                    path: "backups".into(),
                },
            ),
            (
                "smb://CORP;svc@nas:4445/backup/pam/a",
                TargetUrl::Smb {
                    domain: Some("CORP".into()),
                    user: "svc".into(),
                    host: "nas".into(),
                    port: 4445,
                    share: "backup".into(),
                    path: "pam/a".into(),
                },
            ),
            (
                "nfs://nas:2049/export/offbox?mountport=20048",
                TargetUrl::Nfs {
                    host: "nas".into(),
                    port: 2049,
                    mount_port: 20048,
                    export: "/export/offbox".into(),
                },
            ),
            (
                "file:///mnt/backup%20x",
                TargetUrl::File {
                    path: "/mnt/backup x".into(),
                },
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
